"""The ledger's tables. Entries, tree nodes and checkpoints are append-only: database triggers refuse UPDATE and
DELETE on them (provenance/triggers.py). The head, the outbox and prompt secrets are ordinary mutable tables."""

import uuid

from django.conf import settings
from django.db import models


class SigningKey(models.Model):
    """An Ed25519 key that signs records and checkpoints for a window of ledger indexes.

    ``valid_until_index`` is exclusive and null while the key is current. The private key lives encrypted in the key
    directory, never in the database; public keys of retired keys are kept forever so old entries still verify.
    """

    key_id = models.CharField(max_length=64, primary_key=True, help_text="hex SHA-256 of the raw public key")
    name = models.CharField(max_length=200, help_text="the signer name in checkpoint notes (the log origin)")
    public_key = models.BinaryField(max_length=32)
    valid_from_index = models.PositiveBigIntegerField()
    valid_until_index = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["valid_from_index"]

    def __str__(self) -> str:
        return f"{self.key_id[:16]} [{self.valid_from_index}, {self.valid_until_index or '...'})"


class LedgerHead(models.Model):
    """The one row that serialises appends: the tree size and its right border ("frontier"), the perfect subtrees
    whose hashes an append or a root computation needs, so that neither reads the node table."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    size = models.PositiveBigIntegerField(default=0)
    frontier = models.JSONField(default=list, help_text="[[level, index, hex hash], ...]")
    key_id = models.CharField(max_length=64, blank=True, help_text="the signing key in force for the next entry")

    def __str__(self) -> str:
        return f"ledger of {self.size} entries"


class LedgerEntry(models.Model):
    # On SQLite the column is declared "integer PRIMARY KEY", the table's row id, by migration 0005: one index fewer
    # for every append to write. (As a row id, an insert without an index would get the next one rather than fail;
    # every append names its index.) A migration that alters this table on SQLite rebuilds it as "bigint", which
    # still works, only slower, and without the append-only triggers: it should put both back, as 0004 and 0005 do.
    index = models.PositiveBigIntegerField(primary_key=True)
    leaf_hash = models.CharField(max_length=64)
    envelope = models.BinaryField()
    subject_digest = models.CharField(max_length=64)
    # What the record is about in the caller's terms (e.g. "cue:<uuid>"): artifacts are shared between cues by
    # digest, so the digest alone cannot tell whose record this is. Not signed; an index for our own look-ups.
    reference = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=20)
    key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["index"]
        verbose_name_plural = "ledger entries"
        # Only the look-up that is made (a cue's records, in order): every append writes each index, and an index on
        # a hash column writes to a random page each time. (A plain index, not db_index, which on PostgreSQL adds a
        # second, pattern-matching index per text column.)
        indexes = [models.Index(fields=["reference", "index"], name="ledger_entry_reference")]

    def __str__(self) -> str:
        return f"#{self.index} {self.kind} {self.subject_digest[:12]}"


class MerkleNode(models.Model):
    """The hash of a perfect subtree: leaves [index * 2**level, (index + 1) * 2**level)."""

    # Keyed by its place in the tree, with no id. On SQLite the table is also WITHOUT ROWID (migration 0005), so the
    # key is the table itself: an append writes one b-tree, not a table, a key index and a counter. A migration that
    # alters this table on SQLite would rebuild it with a row id and without the append-only triggers; it should put
    # both back, as 0005 does.
    pk = models.CompositePrimaryKey("level", "index")
    level = models.PositiveSmallIntegerField()
    index = models.PositiveBigIntegerField()
    hash = models.BinaryField(max_length=32)

    def __str__(self) -> str:
        return f"node {self.level}/{self.index}"


class Checkpoint(models.Model):
    size = models.PositiveBigIntegerField(unique=True)
    root_hash = models.CharField(max_length=64)
    note = models.TextField(help_text="the C2SP signed note")
    key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-size"]

    def __str__(self) -> str:
        return f"checkpoint {self.size}"


class OutboxRecord(models.Model):
    """A record to append, written in the same transaction as the change it describes; appended later by a worker
    and deleted in the transaction that creates its ledger entry."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20)
    reference = models.CharField(max_length=100, blank=True)
    subjects = models.JSONField(help_text="[[name, sha256 hex], ...]")
    predicate = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.kind} record queued at {self.created_at}"


class PromptSecret(models.Model):
    """A prompt's plaintext and salt, readable only by legal and its creator. Erasing empties both; the ledger keeps
    only the commitment SHA-256(salt || prompt), which then proves nothing about the words."""

    commitment = models.CharField(max_length=64, primary_key=True)
    reference = models.CharField(max_length=100, db_index=True, help_text="whose prompt, e.g. cue:<uuid>")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    plaintext = models.TextField(blank=True)
    salt = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"prompt {self.commitment[:12]}{' (erased)' if self.erased_at else ''}"

"""Writes and proofs of the provenance ledger: appending signed records, checkpoints, keys, bundles, prompts.

Appends are serialised on the single LedgerHead row (SELECT ... FOR UPDATE on PostgreSQL; SQLite takes its write
lock at BEGIN IMMEDIATE), so indexes are gapless and the tree cannot fork. The head caches the tree's right border,
the only nodes an append or a root needs, so an append reads no tree nodes at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from provenance.errors import ProvenanceError
from provenance.keys import key_destroy, key_generate, signer_for
from provenance.ledger import (
    Checkpoint as NoteCheckpoint,
)
from provenance.ledger import (
    KeyRing,
    LedgerError,
    LedgerKey,
    MemoryNodeStore,
    MerkleTree,
    b64,
    check_entries,
    leaf_hash,
    make_bundle,
    make_statement,
    note_key_id,
    open_note,
    sign_envelope,
)
from provenance.models import Checkpoint, LedgerEntry, LedgerHead, MerkleNode, OutboxRecord, PromptSecret, SigningKey
from provenance.records import PREDICATE_TYPES, predicate_check

log = logging.getLogger(__name__)
OUTBOX_BATCH = 200


def origin() -> str:
    return settings.CUELEDGER_LEDGER_ORIGIN


# --- The tree over the database ----------------------------------------------------------------------------------


class DbNodeStore:
    """MerkleTree's node store on the MerkleNode table, with known nodes (the head's frontier) held in memory and
    new nodes collected for one bulk insert."""

    def __init__(self, known: dict[tuple[int, int], bytes] | None = None) -> None:
        self.known = dict(known or {})
        self.new: list[MerkleNode] = []

    def get(self, level: int, index: int) -> bytes | None:
        if (level, index) in self.known:
            return self.known[(level, index)]
        value = MerkleNode.objects.filter(level=level, index=index).values_list("hash", flat=True).first()
        if value is not None:
            self.known[(level, index)] = bytes(value)
        return bytes(value) if value is not None else None

    def put(self, level: int, index: int, value: bytes) -> None:
        self.known[(level, index)] = value
        self.new.append(MerkleNode(level=level, index=index, hash=value))


def _frontier(head: LedgerHead) -> dict[tuple[int, int], bytes]:
    return {(level, index): bytes.fromhex(value) for level, index, value in head.frontier}


def frontier_of(store, size: int) -> list[list]:
    """The perfect subtrees along the right border of a tree of ``size`` leaves (one per set bit of ``size``), as
    the head stores them: [[level, index, hex hash], ...]. ``store`` is any NodeStore holding them."""
    return [
        [level, (size >> level) - 1, store.get(level, (size >> level) - 1).hex()]
        for level in range(size.bit_length())
        if size >> level & 1
    ]


def _head_locked() -> LedgerHead:
    head = LedgerHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # a new ledger; a concurrent first writer may win the insert, then we lock theirs
        LedgerHead.objects.get_or_create(pk=1)
        head = LedgerHead.objects.select_for_update().get(pk=1)
    return head


def _tree_at(size: int) -> MerkleTree:
    return MerkleTree(DbNodeStore(), size=size)


# --- Appending ---------------------------------------------------------------------------------------------------


Record = tuple[str, Sequence[Sequence[str]], dict, str]  # kind, subjects, predicate, reference


def ledger_append(
    *, kind: str, subjects: Sequence[tuple[str, str]], predicate: dict, reference: str = ""
) -> LedgerEntry:
    """Sign a record and append it now. Most callers use record_enqueue instead, inside their own transaction.
    ``reference`` says whose record it is in the caller's terms (e.g. ``cue:<uuid>``), for look-ups."""
    _statement_check(kind, subjects, predicate)
    with transaction.atomic():
        return _append(_head_locked(), (kind, subjects, predicate, reference))


def _statement_check(kind: str, subjects: Sequence[Sequence[str]], predicate: dict) -> None:
    """Refuse a record that could not be signed later: its predicate must fit its schema and its statement must
    canonicalise (RFC 8785 has no room for, say, integers beyond 2**53)."""
    predicate_check(kind, predicate)
    try:
        make_statement([(name, digest) for name, digest in subjects], PREDICATE_TYPES[kind], predicate)
    except LedgerError as exc:
        raise ProvenanceError("predicate_invalid", f"{kind} record cannot be signed: {exc.detail}") from None


def _append(head: LedgerHead, record: Record) -> LedgerEntry:
    return _append_all(head, [record])[0]


def _append_all(head: LedgerHead, records: Sequence[Record]) -> list[LedgerEntry]:
    """Sign and append records under the locked head: all the signing and hashing first, in memory, then one bulk
    insert of entries, one of tree nodes and one update of the head, however many records there are."""
    key_id = _current_key_id(head)
    signer = signer_for(key_id)
    store = DbNodeStore(_frontier(head))
    tree = MerkleTree(store, size=head.size)
    now = timezone.now()
    entries = []
    for kind, subjects, predicate, reference in records:
        statement = make_statement([(name, digest) for name, digest in subjects], PREDICATE_TYPES[kind], predicate)
        envelope = sign_envelope(statement, signer)
        leaf = leaf_hash(envelope)
        entries.append(
            LedgerEntry(
                index=tree.size,
                leaf_hash=leaf.hex(),
                envelope=envelope,
                subject_digest=subjects[0][1],
                reference=reference,
                kind=kind,
                key_id=key_id,
                created_at=now,
            )
        )
        tree.append(leaf)
    LedgerEntry.objects.bulk_create(entries)
    MerkleNode.objects.bulk_create(store.new)
    head.size = tree.size
    head.frontier = frontier_of(store, head.size)
    head.save(update_fields=["size", "frontier", "key_id"])
    return entries


def current_key_id() -> str:
    """The id of the signing key in force (making the ledger's first key if it has none)."""
    with transaction.atomic():
        head = _head_locked()
        key_id = _current_key_id(head)
        head.save(update_fields=["key_id"])
        return key_id


def _current_key_id(head: LedgerHead) -> str:
    """The key in force, as the locked head records it; a new ledger makes its first key here."""
    if not head.key_id:
        key = SigningKey.objects.filter(valid_until_index__isnull=True).first()
        if key is None:
            identifier, public = key_generate()
            key = SigningKey.objects.create(
                key_id=identifier, name=origin(), public_key=public, valid_from_index=head.size
            )
        head.key_id = key.key_id
    return head.key_id


def record_enqueue(
    *, kind: str, subjects: Sequence[tuple[str, str]], predicate: dict, reference: str = ""
) -> OutboxRecord:
    """Queue a record in the caller's transaction; it is signed and appended after commit (outbox_drain).

    So a change and its record commit together or not at all, without every writer waiting on the ledger's lock.
    A record that could not be signed is refused here, never left to block the outbox.
    """
    _statement_check(kind, subjects, predicate)
    record = OutboxRecord.objects.create(
        kind=kind, subjects=[list(s) for s in subjects], predicate=predicate, reference=reference
    )
    transaction.on_commit(partial(_drain_later), robust=True)
    return record


def _drain_later() -> None:
    from provenance.tasks import outbox_drain_task

    outbox_drain_task.delay()


def outbox_drain(*, batch: int = OUTBOX_BATCH) -> int:
    """Append every pending outbox record, oldest first, removing each in the transaction that appends it; then
    sign a checkpoint over them. Returns how many were appended. Safe to run in several processes at once."""
    appended = 0
    while True:
        with transaction.atomic():
            head = _head_locked()
            pending = list(OutboxRecord.objects.order_by("created_at", "id")[:batch])
            _append_all(head, [(r.kind, r.subjects, r.predicate, r.reference) for r in pending])
            # Appended records leave the outbox in the same transaction: their entries carry everything they said.
            OutboxRecord.objects.filter(pk__in=[record.pk for record in pending]).delete()
        appended += len(pending)
        if len(pending) < batch:
            break
    if appended:
        checkpoint_create()
    return appended


# --- Checkpoints and proofs --------------------------------------------------------------------------------------


def checkpoint_create() -> Checkpoint:
    """Sign a checkpoint of the whole ledger as it is now, or return the existing one of that size."""
    with transaction.atomic():
        head = _head_locked()
        existing = Checkpoint.objects.filter(size=head.size).first()
        if existing:
            return existing
        root = MerkleTree(DbNodeStore(_frontier(head)), size=head.size).root()
        if root != _tree_at(head.size).root():
            # The head's cached border disagrees with the node table: signing now would make a wrong checkpoint
            # permanent. Stop, loudly; `ledger verify` says where the damage is.
            raise ProvenanceError(
                "ledger_head_corrupt", "The ledger head disagrees with its tree; run `ledger verify`.", http_status=500
            )
        key_id = _current_key_id(head)
        head.save(update_fields=["key_id"])
        body = NoteCheckpoint(origin(), head.size, root).body()
        return Checkpoint.objects.create(
            size=head.size,
            root_hash=root.hex(),
            note=note_sign(body, origin(), signer_for(key_id)),
            key_id=key_id,
            created_at=timezone.now(),
        )


def note_sign(body: str, name: str, signer) -> str:
    """A C2SP signed note made through the Signer interface (so a KMS signer can sign checkpoints too): the body,
    a blank line, and ``— <name> <base64(key id || Ed25519 signature of the body)>``."""
    signature = signer.sign(body.encode("utf-8"))
    return f"{body}\n\u2014 {name} {b64(note_key_id(name, signer.public_key_bytes) + signature)}\n"


def checkpoint_latest() -> Checkpoint:
    """The newest checkpoint, signing one first if entries were appended since."""
    head = LedgerHead.objects.filter(pk=1).first()
    latest = Checkpoint.objects.order_by("-size").first()
    if latest is None or (head and head.size > latest.size):
        return checkpoint_create()
    return latest


def inclusion_proof(index: int, size: int) -> list[bytes]:
    return _tree_at(size).inclusion_proof(index, size)


def consistency_proof(first: int, second: int) -> list[bytes]:
    head = LedgerHead.objects.filter(pk=1).first()
    size = head.size if head else 0
    if not 0 < first <= second <= size:
        raise ProvenanceError(
            "proof_range_invalid", f"Need 0 < first <= second <= {size} (the ledger's size); got {first}, {second}."
        )
    return _tree_at(size).consistency_proof(first, second)


# --- Keys --------------------------------------------------------------------------------------------------------


def keyring() -> KeyRing:
    return KeyRing(key_as_ledger_key(key) for key in SigningKey.objects.all())


def key_as_ledger_key(key: SigningKey) -> LedgerKey:
    return LedgerKey(
        key_id=key.key_id,
        name=key.name,
        public_key=bytes(key.public_key),
        valid_from_index=key.valid_from_index,
        valid_until_index=key.valid_until_index,
    )


def key_rotate() -> SigningKey:
    """Retire the current key and start a new one. The hand-over is itself a record, signed by the old key, and the
    new key signs from the next index on. Old entries keep verifying against the retired key's window."""
    with transaction.atomic():
        head = _head_locked()
        old = SigningKey.objects.get(key_id=_current_key_id(head))
        identifier, public = key_generate()
        starts = head.size + 1
        predicate = {
            "event": "rotation",
            "retired_key_id": old.key_id,
            "new_key": {"key_id": identifier, "public_key": b64(public), "valid_from_index": starts},
        }
        _statement_check("key", [(f"ed25519-public-key:{identifier}", identifier)], predicate)
        _append(head, ("key", [(f"ed25519-public-key:{identifier}", identifier)], predicate, f"key:{identifier}"))
        old.valid_until_index, old.retired_at = starts, timezone.now()
        old.save(update_fields=["valid_until_index", "retired_at"])
        head.key_id = identifier
        head.save(update_fields=["key_id"])
        transaction.on_commit(partial(key_destroy, old.key_id))
        return SigningKey.objects.create(key_id=identifier, name=origin(), public_key=public, valid_from_index=starts)


# --- Verification of the whole ledger ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerReport:
    size: int
    checkpoints: int
    ok: bool
    index: int | None = None
    code: str = ""
    detail: str = ""

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "size": self.size,
            "checkpoints": self.checkpoints,
            "index": self.index,
            "code": self.code or None,
            "detail": self.detail or None,
        }


def ledger_verify() -> LedgerReport:
    """Recompute the ledger from its rows, trusting nothing the mutable tables say about themselves: every entry's
    signature (by a key valid at its index), leaf hash and place (gapless); the signing keys' windows against the
    ledger's own rotation records; every stored tree node, and that none is missing; the head's cached border; and
    every stored checkpoint's root and signature. Reports the first divergence.

    It reads the ledger as of the head's size when it starts, so entries appended meanwhile are not mistaken for
    damage.
    """
    head = LedgerHead.objects.filter(pk=1).first()
    size = head.size if head else 0
    ring = keyring()
    store = MemoryNodeStore()
    tree = MerkleTree(store)
    checkpoints = list(Checkpoint.objects.filter(size__lte=size).order_by("size"))
    rows = (
        LedgerEntry.objects.filter(index__lt=size)
        .order_by("index")
        .values_list("index", "envelope", "leaf_hash")
        .iterator(2000)
    )
    stored_leaves: dict[int, str] = {}
    windows = _KeyWindows()

    def entries() -> Iterable[tuple[int, bytes]]:
        for expected, (index, envelope, stored_leaf) in enumerate(rows):
            if index != expected:
                raise LedgerError("entry_missing", f"entry {expected} is missing (the next is {index})", index=expected)
            stored_leaves[index] = stored_leaf
            yield index, bytes(envelope)

    try:
        count = 0
        for result in check_entries(entries(), ring):
            if result.leaf_hash.hex() != stored_leaves.pop(result.index):
                raise LedgerError(
                    "leaf_hash_mismatch", "the stored leaf hash is not the envelope's", index=result.index
                )
            windows.see(result)
            tree.append(result.leaf_hash)
            count += 1
        if count != size:
            raise LedgerError("size_mismatch", f"the head says {size} entries, the table holds {count}", index=count)
        windows.compare(SigningKey.objects.all())
        _compare_nodes(store, size)
        if head and head.frontier != frontier_of(store, size):
            raise LedgerError("head_frontier_mismatch", "the head's cached tree border is wrong", index=size - 1)
        for checkpoint in checkpoints:
            _verify_checkpoint(checkpoint, tree, ring, size)
    except LedgerError as exc:
        return LedgerReport(size, len(checkpoints), False, exc.index, exc.code, exc.detail)
    finally:
        # Close the streaming query now: on PostgreSQL it is a server-side cursor, and one left to the garbage
        # collector would be closed later inside whatever transaction the connection is running, aborting it.
        rows.close()
    return LedgerReport(size, len(checkpoints), True)


class _KeyWindows:
    """The signing keys' windows as the ledger itself records them: the first key from entry 0, then each `key`
    rotation record (signed by the retiring key) closing one window and opening the next."""

    def __init__(self) -> None:
        self.windows: dict[str, list] = {}  # key id -> [public key b64 or None, from, until]
        self.current: str | None = None

    def see(self, result) -> None:
        if self.current is None:
            self.windows[result.key_id] = [None, result.index, None]
            self.current = result.key_id
        if result.key_id != self.current:
            raise LedgerError(
                "key_not_in_force", "signed by a key the rotation records have not put in force", index=result.index
            )
        if result.predicate_type == PREDICATE_TYPES["key"]:
            predicate = result.statement.get("predicate") or {}
            new = predicate.get("new_key") or {}
            if predicate.get("retired_key_id") != self.current or new.get("valid_from_index") != result.index + 1:
                raise LedgerError(
                    "key_rotation_invalid", "the rotation record does not hand over here", index=result.index
                )
            self.windows[self.current][2] = result.index + 1
            self.windows[new["key_id"]] = [new["public_key"], result.index + 1, None]
            self.current = new["key_id"]

    def compare(self, keys) -> None:
        stored = {key.key_id: key for key in keys}
        for key_id, (public, start, until) in self.windows.items():
            key = stored.pop(key_id, None)
            if (
                key is None
                or key.valid_from_index != start
                or key.valid_until_index != until
                or (public is not None and b64(bytes(key.public_key)) != public)
            ):
                raise LedgerError(
                    "key_window_mismatch", f"key {key_id[:16]} is not stored as the ledger records it", index=start
                )
        for key in stored.values():
            if self.windows or key.valid_from_index == 0 and key.valid_until_index is not None:
                raise LedgerError(
                    "key_unexplained",
                    f"key {key.key_id[:16]} appears in no rotation record",
                    index=key.valid_from_index,
                )


def _compare_nodes(recomputed: MemoryNodeStore, size: int) -> None:
    """Every stored node within the first ``size`` leaves equals the recomputed one, and none is missing."""
    found = 0
    for level, index, value in MerkleNode.objects.order_by("level", "index").values_list("level", "index", "hash"):
        if (index + 1) << level > size:
            continue  # completed by an append after this verification began
        if recomputed.get(level, index) != bytes(value):
            raise LedgerError("tree_node_mismatch", f"stored node {level}/{index} differs", index=index << level)
        found += 1
    expected = sum(size >> level for level in range(size.bit_length()))
    if found != expected:
        raise LedgerError("tree_node_missing", f"{expected - found} tree node(s) are missing", index=size - 1)


def _verify_checkpoint(checkpoint: Checkpoint, tree: MerkleTree, ring: KeyRing, size: int) -> None:
    where = max(checkpoint.size - 1, 0)
    if checkpoint.size > size:
        raise LedgerError("checkpoint_beyond_ledger", f"checkpoint of size {checkpoint.size} > {size}", index=where)
    body, signers = open_note(checkpoint.note, ring.checkpoint_keys())
    parsed = NoteCheckpoint.parse(body)
    for name, note_key in signers:
        ring.key_for_checkpoint(name, note_key, parsed.size)
    root = tree.root(checkpoint.size)
    if parsed.size != checkpoint.size or parsed.root_hash != root or checkpoint.root_hash != root.hex():
        raise LedgerError("checkpoint_root_mismatch", f"checkpoint {checkpoint.size} is not this tree's", index=where)


def origin_record(reference: str) -> dict | None:
    """Where the first ingest or generation record about ``reference`` sits in the ledger: what Content
    Credentials link to."""
    entry = LedgerEntry.objects.filter(reference=reference, kind__in=["ingest", "generation"]).order_by("index").first()
    if entry is None:
        return None
    return {"origin": origin(), "index": entry.index, "envelope_sha256": hashlib.sha256(entry.envelope).hexdigest()}


# --- Evidence bundles --------------------------------------------------------------------------------------------


def bundle_build(*, reference: str, subject: dict, since: int | None = None) -> dict:
    """An evidence bundle of every record about ``reference``, with inclusion proofs to a fresh checkpoint, every
    signing key with its window, and, with ``since``, a consistency proof from that earlier tree size. Records
    still in the outbox are not in it yet: the worker appends them within moments."""
    checkpoint = checkpoint_latest()
    if since is not None and not 0 < since <= checkpoint.size:
        raise ProvenanceError("proof_range_invalid", f"since must be between 1 and {checkpoint.size}; got {since}.")
    tree = _tree_at(checkpoint.size)
    entries = [
        (entry.index, bytes(entry.envelope), tree.inclusion_proof(entry.index, checkpoint.size))
        for entry in LedgerEntry.objects.filter(reference=reference, index__lt=checkpoint.size).order_by("index")
    ]
    proofs = {since: tree.consistency_proof(since, checkpoint.size)} if since else None
    keys = [key_as_ledger_key(key) for key in SigningKey.objects.all()]
    return make_bundle(origin(), checkpoint.note, keys, entries, proofs, subject)


# --- Prompts -----------------------------------------------------------------------------------------------------


def prompt_commit(*, prompt: str, created_by, reference: str) -> dict:
    """Keep a prompt apart from the ledger and return the commitment a generation record carries instead."""
    salt = os.urandom(32)
    value = hashlib.sha256(salt + prompt.encode("utf-8")).hexdigest()
    PromptSecret.objects.create(
        commitment=value, reference=reference, created_by=created_by, plaintext=prompt, salt=salt
    )
    return {"algorithm": "sha256(salt||prompt)", "value": value}


def prompt_erase(*, reference: str) -> int:
    """Destroy the plaintext and salt of every prompt kept for ``reference``; the ledger's commitments stay valid."""
    return PromptSecret.objects.filter(reference=reference, erased_at__isnull=True).update(
        plaintext="", salt=None, erased_at=timezone.now()
    )

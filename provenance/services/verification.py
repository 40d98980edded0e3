"""Recomputing the whole ledger from its rows (`manage.py ledger verify`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

from django.db import connection, transaction

from provenance.ledger import (
    Checkpoint as NoteCheckpoint,
)
from provenance.ledger import (
    KeyRing,
    LedgerError,
    MerkleTree,
    NodeStore,
    b64,
    check_entries,
    open_note,
)
from provenance.models import Checkpoint, LedgerHead, SigningKey
from provenance.records import PREDICATE_TYPES
from provenance.services.rotation import keyring
from provenance.services.tree import frontier_of


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
    signature (by a key valid at its index), leaf hash, stored key id and place (gapless); the signing keys' windows
    against the ledger's own rotation records; every stored tree node, and that none is missing; the head's cached
    border; and every stored checkpoint's root and signature. Reports the first divergence.

    It reads the ledger as of the head's size when it starts, so entries appended meanwhile are not mistaken for
    damage.
    """
    head = LedgerHead.objects.filter(pk=1).first()
    size = head.size if head else 0
    ring = keyring()
    checkpoints = list(Checkpoint.objects.filter(size__lte=size).order_by("size"))
    stored: dict[int, tuple[str, str]] = {}  # index -> the row's leaf hash and key id, until its envelope is checked
    leaves: list[bytes] = []
    windows = _KeyWindows()

    with _streamed(_ENTRIES, [size]) as cursor:

        def entries() -> Iterable[tuple[int, bytes]]:
            expected = 0
            while rows := cursor.fetchmany(2000):
                for index, envelope, stored_leaf, stored_key in rows:
                    if index != expected:
                        raise LedgerError(
                            "entry_missing", f"entry {expected} is missing (the next is {index})", index=expected
                        )
                    stored[index] = (stored_leaf, stored_key)
                    expected += 1
                    yield index, bytes(envelope)

        try:
            with closing(check_entries(entries(), ring)) as results:
                for result in results:
                    stored_leaf, stored_key = stored.pop(result.index)
                    if result.leaf_hash.hex() != stored_leaf:
                        raise LedgerError(
                            "leaf_hash_mismatch", "the stored leaf hash is not the envelope's", index=result.index
                        )
                    if result.key_id != stored_key:
                        raise LedgerError(
                            "entry_key_mismatch", "the stored key id is not the envelope's signer", index=result.index
                        )
                    windows.see(result)
                    leaves.append(result.leaf_hash)
            if len(leaves) != size:
                raise LedgerError(
                    "size_mismatch", f"the head says {size} entries, the table holds {len(leaves)}", index=len(leaves)
                )
            windows.compare(SigningKey.objects.all())
            tree = MerkleTree.from_leaves(leaves)
            _compare_nodes(tree.store, size)
            if head and head.frontier != frontier_of(tree.store, size):
                raise LedgerError("head_frontier_mismatch", "the head's cached tree border is wrong", index=size - 1)
            for checkpoint in checkpoints:
                _verify_checkpoint(checkpoint, tree, ring, size)
        except LedgerError as exc:
            return LedgerReport(size, len(checkpoints), False, exc.index, exc.code, exc.detail)
    return LedgerReport(size, len(checkpoints), True)


@contextmanager
def _streamed(sql: str, params: list) -> Iterator:
    """A cursor streaming the rows of ``sql`` (read with ``fetchmany``) straight from the database, not through
    model instances: at 100,000 entries the ORM's per-row work costs about as much as a second of signature checks.
    On PostgreSQL the rows come in binary, which halves the reading again (no hex text for the envelopes)."""
    if connection.vendor != "postgresql":
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, params)
            yield cursor
        return
    connection.ensure_connection()
    # A server-side cursor lives in a transaction; the name is unique per cursor, as both may be open at once.
    with transaction.atomic(), connection.connection.cursor(name=f"ledger_verify_{id(sql)}", binary=True) as cursor:
        cursor.execute(sql, params)
        yield cursor


_ENTRIES = 'SELECT "index", envelope, leaf_hash, key_id FROM provenance_ledgerentry WHERE "index" < %s ORDER BY "index"'
_NODES = 'SELECT level, "index", hash FROM provenance_merklenode ORDER BY level, "index"'


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


def _compare_nodes(recomputed: NodeStore, size: int) -> None:
    """Every stored node within the first ``size`` leaves equals the recomputed one, and none is missing."""
    found = 0
    with _streamed(_NODES, []) as cursor:
        while rows := cursor.fetchmany(5000):
            for level, index, value in rows:
                if (index + 1) << level > size:
                    continue  # completed by an append after this verification began
                if recomputed.get(level, index) != bytes(value):
                    raise LedgerError(
                        "tree_node_mismatch", f"stored node {level}/{index} differs", index=index << level
                    )
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

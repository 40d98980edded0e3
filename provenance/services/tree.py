"""The Merkle tree over the database, and the head row that serialises every write to it."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction

from provenance.errors import ProvenanceError
from provenance.keys import key_generate
from provenance.ledger import MerkleTree
from provenance.models import LedgerHead, MerkleNode, SigningKey


def origin() -> str:
    return settings.CUELEDGER_LEDGER_ORIGIN


# --- The tree over the database ----------------------------------------------------------------------------------


class DbNodeStore:
    """MerkleTree's node store on the MerkleNode table, with known nodes (the head's frontier) held in memory. The
    append paths write the table; ``put`` only remembers a node, for a tree computed in memory."""

    def __init__(self, known: dict[tuple[int, int], bytes] | None = None) -> None:
        self.known = dict(known or {})

    def get(self, level: int, index: int) -> bytes | None:
        if (level, index) in self.known:
            return self.known[(level, index)]
        value = MerkleNode.objects.filter(level=level, index=index).values_list("hash", flat=True).first()
        if value is not None:
            self.known[(level, index)] = bytes(value)
        return bytes(value) if value is not None else None

    def put(self, level: int, index: int, value: bytes) -> None:
        self.known[(level, index)] = value


def border_loads(stored: str, size: int) -> dict[int, bytes]:
    """border_read on the head's border as the column holds it, JSON text (SQLite appends read it directly)."""
    try:
        frontier = json.loads(stored)
    except (TypeError, ValueError, RecursionError):
        raise _head_corrupt("the head's tree border is not JSON") from None
    return border_read(frontier, size)


def border_read(frontier, size: int) -> dict[int, bytes]:
    """The head's stored border (as frontier_of writes it) as MerkleTree's frontier (level -> hash), provided it
    fits a tree of ``size`` leaves: a list of [level, index, hex hash], lowest level first, one per set bit of
    ``size``, each the last perfect subtree at its level and a 32-byte hash. Otherwise ProvenanceError
    ``ledger_head_corrupt``, as checkpoint_create raises when the border disagrees with the tree."""
    border: dict[int, bytes] = {}
    last = -1
    for node in frontier if type(frontier) is list else [frontier]:
        if not (type(node) is list and len(node) == 3 and type(node[0]) is int and type(node[1]) is int):
            raise _head_corrupt(f"the head's tree border holds {node!r}, not a [level, index, hash] node")
        level, index, value = node
        if not (last < level < 64 and size >> level & 1 and index == (size >> level) - 1):
            raise _head_corrupt(f"the head's tree border has node {level}/{index} out of place for a tree of {size}")
        if type(value) is not str or len(value) != 64 or value.strip("0123456789abcdef"):
            raise _head_corrupt(f"the head's tree border node {level}/{index} is not a hex SHA-256 hash")
        border[level] = bytes.fromhex(value)
        last = level
    if len(border) != size.bit_count():
        raise _head_corrupt(f"the head's tree border misses a node of a tree of {size}")
    return border


def _head_corrupt(detail: str) -> ProvenanceError:
    return ProvenanceError("ledger_head_corrupt", f"{detail}; run `ledger verify`.", http_status=500)


def border_json(border: dict[int, bytes], size: int) -> str:
    """A frontier (level -> hash) of a tree of ``size`` leaves as the head stores it, lowest level first."""
    # The text json.dumps writes for these lists, in half its time (every SQLite append writes the border).
    nodes = (f'[{level}, {(size >> level) - 1}, "{border[level].hex()}"]' for level in sorted(border))
    return f"[{', '.join(nodes)}]"


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


def current_key_id() -> str:
    """The id of the signing key in force (making the ledger's first key if it has none)."""
    with transaction.atomic():
        head = _head_locked()
        return _current_key_id(head)


def _current_key_id(head: LedgerHead) -> str:
    """The key in force, as the locked head records it; a new ledger makes its first key here and records it on the
    head."""
    if not head.key_id:
        key = SigningKey.objects.filter(valid_until_index__isnull=True).first()
        if key is None:
            identifier, public = key_generate()
            key = SigningKey.objects.create(
                key_id=identifier, name=origin(), public_key=public, valid_from_index=head.size
            )
        head.key_id = key.key_id
        head.save(update_fields=["key_id"])
    return head.key_id

"""Signed checkpoints of the ledger, and proofs against them."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from provenance.errors import ProvenanceError
from provenance.keys import signer_for
from provenance.ledger import Checkpoint as NoteCheckpoint
from provenance.ledger import MerkleTree, sign_note
from provenance.models import Checkpoint, LedgerHead
from provenance.services.tree import DbNodeStore, _current_key_id, _head_locked, _tree_at, border_read, origin


def checkpoint_create() -> Checkpoint:
    """Sign a checkpoint of the whole ledger as it is now, or return the existing one of that size."""
    with transaction.atomic():
        head = _head_locked()
        existing = Checkpoint.objects.filter(size=head.size).first()
        if existing:
            return existing
        border = border_read(head.frontier, head.size)
        known = {(level, (head.size >> level) - 1): value for level, value in border.items()}
        root = MerkleTree(DbNodeStore(known), size=head.size).root()
        if root != _tree_at(head.size).root():
            # The head's cached border disagrees with the node table: signing now would make a wrong checkpoint
            # permanent. Stop, loudly; `ledger verify` says where the damage is.
            raise ProvenanceError(
                "ledger_head_corrupt", "The ledger head disagrees with its tree; run `ledger verify`.", http_status=500
            )
        key_id = _current_key_id(head)
        body = NoteCheckpoint(origin(), head.size, root).body()
        return Checkpoint.objects.create(
            size=head.size,
            root_hash=root.hex(),
            note=sign_note(body, origin(), signer_for(key_id)),
            key_id=key_id,
            created_at=timezone.now(),
        )


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

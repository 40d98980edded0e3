"""Appending signed records: directly, or through the outbox in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from django.db import transaction
from django.utils import timezone

from provenance.errors import ProvenanceError
from provenance.keys import signer_for
from provenance.ledger import (
    LedgerError,
    MerkleTree,
    leaf_hash,
    make_statement,
    sign_envelope,
)
from provenance.models import LedgerEntry, LedgerHead, MerkleNode, OutboxRecord
from provenance.records import PREDICATE_TYPES, predicate_check
from provenance.services.checkpoints import checkpoint_create
from provenance.services.tree import DbNodeStore, _current_key_id, _frontier, _head_locked, frontier_of

OUTBOX_BATCH = 200


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

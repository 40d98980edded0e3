"""Appending signed records: directly, or through the outbox in the caller's transaction.

An append signs, canonicalises and hashes before it takes the head's lock (an envelope does not contain its index,
so only the tree nodes depend on the head), and writes through cursors, not the ORM, in as few statements as it can:
on PostgreSQL one statement that updates the head and inserts the entries and their nodes; on SQLite, whose write
lock BEGIN IMMEDIATE already holds, one update and two inserts.

Every head update is guarded by the head the writer built on (size, border and key in force): if the row is not
that head, the update matches nothing and nothing is inserted. That lets a PostgreSQL writer build on the head its
process wrote last without reading the row first; when another writer got there in between, it locks the head,
reads it and writes again, and keeps locking first while other writers are about.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from django.db import connection, transaction
from django.utils import timezone

from provenance.errors import ProvenanceError
from provenance.keys import signer_for
from provenance.ledger import (
    LedgerError,
    MemoryNodeStore,
    MerkleTree,
    leaf_hash,
    make_statement,
    sign_envelope,
)
from provenance.models import LedgerEntry, LedgerHead, OutboxRecord
from provenance.records import PREDICATE_TYPES, predicate_check
from provenance.services.checkpoints import checkpoint_create
from provenance.services.tree import _current_key_id, _head_locked, frontier_of

OUTBOX_BATCH = 200

# Rows a statement inserts into each table, well inside PostgreSQL's 65,535 parameters (entries have 8 columns).
_ROWS_PER_STATEMENT = 2000

Record = tuple[str, Sequence[Sequence[str]], dict, str]  # kind, subjects, predicate, reference


@dataclass(frozen=True)
class _Head:
    """The head row: tree size, right border ([[level, index, hex hash], ...]) and the key in force."""

    size: int
    frontier: list
    key_id: str


@dataclass(frozen=True)
class _Signed:
    kind: str
    subject_digest: str
    reference: str
    envelope: bytes
    leaf: bytes


# The head as this process last wrote it, per database: what the next append builds on without reading the row.
# Never trusted, only tried: the guarded update decides.
_LAST_HEAD: dict[str, _Head] = {}
# Databases where that guess last failed because other processes append too: lock first there.
_CONTENDED: set[str] = set()


def ledger_append(
    *, kind: str, subjects: Sequence[tuple[str, str]], predicate: dict, reference: str = ""
) -> LedgerEntry:
    """Sign a record and append it now. Most callers use record_enqueue instead, inside their own transaction.
    ``reference`` says whose record it is in the caller's terms (e.g. ``cue:<uuid>``), for look-ups."""
    record = (kind, subjects[0][1], reference, _statement_check(kind, subjects, predicate))
    database = _database()
    guess = _LAST_HEAD.get(database)
    signed_by = guess.key_id if guess is not None else None
    signed = _sign_ahead(record, signed_by)
    with transaction.atomic():
        if guess is not None and signed is not None and connection.vendor == "postgresql":
            if database not in _CONTENDED:
                entries = _write(guess, guess.key_id, signed)
                if entries is not None:
                    return entries[0]
                _CONTENDED.add(database)
        head = _head_read_locked()
        if head == guess:
            _CONTENDED.discard(database)
        if signed is None or head.key_id != signed_by:
            signed = _sign([record], head.key_id)
        entries = _write(head, head.key_id, signed)
        if entries is None:
            raise _head_moved()
        return entries[0]


def _statement_check(kind: str, subjects: Sequence[Sequence[str]], predicate: dict) -> bytes:
    """Refuse a record that could not be signed later: its predicate must fit its schema and its statement must
    canonicalise (RFC 8785 has no room for, say, integers beyond 2**53). Returns the statement's bytes."""
    predicate_check(kind, predicate)
    try:
        return make_statement([(name, digest) for name, digest in subjects], PREDICATE_TYPES[kind], predicate)
    except LedgerError as exc:
        raise ProvenanceError("predicate_invalid", f"{kind} record cannot be signed: {exc.detail}") from None


def _append(head: LedgerHead, record: Record) -> LedgerEntry:
    return _append_all(head, [record])[0]


def _append_all(head: LedgerHead, records: Sequence[Record]) -> list[LedgerEntry]:
    """Sign and append records under the head the caller has locked (and bring ``head`` up to date): all the
    signing and hashing first, in memory, then the writes, however many records there are."""
    if not records:
        return []
    stored = _Head(head.size, head.frontier, head.key_id)
    key_id = _current_key_id(head)
    statements = [
        (
            kind,
            subjects[0][1],
            reference,
            make_statement([(name, digest) for name, digest in subjects], PREDICATE_TYPES[kind], predicate),
        )
        for kind, subjects, predicate, reference in records
    ]
    entries = _write(stored, key_id, _sign(statements, key_id))
    if entries is None:
        raise _head_moved()
    new = _LAST_HEAD[_database()]
    head.size, head.frontier, head.key_id = new.size, new.frontier, new.key_id
    return entries


def _sign(statements: Sequence[tuple[str, str, str, bytes]], key_id: str) -> list[_Signed]:
    signer = signer_for(key_id)
    signed = []
    for kind, subject_digest, reference, payload in statements:
        envelope = sign_envelope(payload, signer)
        signed.append(_Signed(kind, subject_digest, reference, envelope, leaf_hash(envelope)))
    return signed


def _sign_ahead(statement: tuple[str, str, str, bytes], key_id: str | None) -> list[_Signed] | None:
    """Sign with the key this process last saw in force, before any lock; None if there is none to use (a key
    retired and destroyed meanwhile is found out under the lock, which signs again with the key in force)."""
    if key_id is None:
        return None
    try:
        return _sign([statement], key_id)
    except ProvenanceError:
        return None


def _head_read_locked() -> _Head:
    """Lock and read the head in the current transaction (SQLite holds its write lock from BEGIN IMMEDIATE); a new
    ledger gets its head row and first key here."""
    with connection.cursor() as cursor:
        cursor.execute(_HEAD_LOCK if connection.vendor == "postgresql" else _HEAD_READ)
        row = cursor.fetchone()
    if row is None or not row[2]:
        head = _head_locked()
        _current_key_id(head)
        head.save(update_fields=["key_id"])
        return _Head(head.size, head.frontier, head.key_id)
    size, frontier, key_id = row
    return _Head(size, json.loads(frontier) if isinstance(frontier, str) else frontier, key_id)


def _write(head: _Head, key_id: str, signed: Sequence[_Signed]) -> list[LedgerEntry] | None:
    """Append ``signed`` (signed by ``key_id``) to the tree of ``head``: the entries, their tree nodes and the new
    head, provided the head row still is ``head``; otherwise write nothing and return None."""
    store = MemoryNodeStore()
    for level, index, value in head.frontier:
        store.put(level, index, bytes.fromhex(value))
    tree = MerkleTree(store, size=head.size)
    now = timezone.now()
    created_at = connection.ops.adapt_datetimefield_value(now)
    entries, entry_rows, node_rows = [], [], []
    for item in signed:
        index, leaf = tree.size, item.leaf.hex()
        entries.append(
            LedgerEntry(
                index=index,
                leaf_hash=leaf,
                envelope=item.envelope,
                subject_digest=item.subject_digest,
                reference=item.reference,
                kind=item.kind,
                key_id=key_id,
                created_at=now,
            )
        )
        entry_rows.append(
            (index, leaf, item.envelope, item.subject_digest, item.reference, item.kind, key_id, created_at)
        )
        node_rows.extend(tree.append(item.leaf))
    new = _Head(tree.size, frontier_of(store, tree.size), key_id)
    guard = [json.dumps(new.frontier), new.size, key_id, head.size, head.key_id, json.dumps(head.frontier)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if not _write_postgresql(cursor, guard, entry_rows, node_rows):
                return None
        else:
            cursor.execute(_HEAD_UPDATE_SQLITE, guard)
            if cursor.rowcount != 1:
                return None
            cursor.executemany(_ENTRY_INSERT + " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", entry_rows)
            cursor.executemany(_NODE_INSERT + " VALUES (%s, %s, %s)", node_rows)
    for entry in entries:
        entry._state.adding, entry._state.db = False, connection.alias
    _LAST_HEAD[_database()] = new
    return entries


_HEAD_READ = "SELECT size, frontier, key_id FROM provenance_ledgerhead WHERE id = 1"
_HEAD_LOCK = _HEAD_READ + " FOR UPDATE"
_HEAD_UPDATE = "UPDATE provenance_ledgerhead SET frontier = %s, size = %s, key_id = %s WHERE id = 1 AND size = %s"
# Compared as JSON values, not as text: the row's text need not be spelt as json.dumps spells it.
_HEAD_UPDATE_SQLITE = _HEAD_UPDATE + " AND key_id = %s AND json(frontier) = json(%s)"
_HEAD_UPDATE_CTE = (
    "WITH head AS (UPDATE provenance_ledgerhead SET frontier = %s::jsonb, size = %s, key_id = %s"
    " WHERE id = 1 AND size = %s AND key_id = %s AND frontier = %s::jsonb RETURNING id),"
)
_ENTRY_INSERT = (
    'INSERT INTO provenance_ledgerentry ("index", leaf_hash, envelope, subject_digest, reference, kind, key_id, '
    "created_at)"
)
_NODE_INSERT = 'INSERT INTO provenance_merklenode (level, "index", hash)'


def _write_postgresql(cursor, guard: list, entry_rows: list, node_rows: list) -> bool:
    """One statement for the head and the first rows: the inserts take their rows only if the guarded update took
    the head, so a writer whose head was stale leaves no trace."""
    entries, nodes = entry_rows[:_ROWS_PER_STATEMENT], node_rows[:_ROWS_PER_STATEMENT]
    # Only placeholders are formatted into the statement; every value goes as a parameter.
    sql = " ".join(
        (
            _HEAD_UPDATE_CTE,
            f"entries AS ({_ENTRY_INSERT} SELECT v.* FROM head, ({_values(entries)}) v),",  # noqa: S608
            f"nodes AS ({_NODE_INSERT} SELECT v.* FROM head, ({_values(nodes)}) v)",  # noqa: S608
            "SELECT count(*) FROM head",
        )
    )
    import psycopg  # only ever needed on PostgreSQL

    # Bound on the server, so that psycopg prepares the statement once a connection has run it a few times: a
    # single append's statement has only a handful of shapes (by its node count), planned once instead of each time.
    with psycopg.Cursor(connection.connection) as server_bound:
        server_bound.execute(sql, [*guard, *_flat(entries), *_flat(nodes)])
        row = server_bound.fetchone()
    if row is None or row[0] != 1:
        return False
    for first in range(_ROWS_PER_STATEMENT, max(len(entry_rows), len(node_rows)), _ROWS_PER_STATEMENT):
        for insert, rows in ((_ENTRY_INSERT, entry_rows), (_NODE_INSERT, node_rows)):
            chunk = rows[first : first + _ROWS_PER_STATEMENT]
            if chunk:
                cursor.execute(f"{insert} {_values(chunk)}", _flat(chunk))
    return True


def _flat(rows: Sequence[Sequence]) -> list:
    return [value for row in rows for value in row]


def _values(rows: Sequence[Sequence]) -> str:
    return "VALUES " + ", ".join(f"({_marks(len(row))})" for row in rows)


def _marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def _database() -> str:
    return f"{connection.alias}:{connection.settings_dict['NAME']}"


def _head_moved() -> ProvenanceError:
    return ProvenanceError(
        "ledger_head_moved", "The ledger head changed under its lock; nothing was appended.", http_status=500
    )


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

"""Appending signed records: directly, or through the outbox in the caller's transaction.

An append signs, canonicalises and hashes before it takes the ledger's lock (an envelope does not contain its
index, so only the tree nodes depend on the head), with the key this process last saw in force. The write checks
that key under the lock: if another key took over meanwhile it writes nothing, and the append signs again with the
key in force, holding the lock.

The write holds the lock as briefly as each database allows:
- PostgreSQL: one call of the database function ``provenance_append`` (migration 0003). It locks the head row,
  computes the new tree nodes with the server's sha256(), inserts the entries and their nodes and moves the head.
  Outside a transaction the call is a transaction of its own, one round trip, so the lock is never held across a
  round trip to this process. When the call had to wait for another writer, its commit also lets go of the lock
  before the log flush, and the append waits for the flush afterwards (_FLUSH).
- SQLite: BEGIN IMMEDIATE takes the database's write lock; the head is read, the nodes are computed here
  (frontier_append, on the head's stored border) and the rows are written through the driver directly. A process
  that wrote the head last need not read it again: it tries the head it wrote, with an update that applies only if
  the head is still exactly that (_HEAD_WRITTEN). Outside a transaction the append begins and commits its own on the
  driver's connection; inside one it is a savepoint of the caller's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from provenance.errors import ProvenanceError
from provenance.keys import signer_for
from provenance.ledger import LedgerError, frontier_append, leaf_hash, make_statement, sign_envelope
from provenance.models import LedgerEntry, LedgerHead, OutboxRecord
from provenance.records import PREDICATE_TYPES, predicate_check
from provenance.services.checkpoints import checkpoint_create
from provenance.services.tree import _current_key_id, _head_locked, border_json, border_loads

OUTBOX_BATCH = 200

logger = logging.getLogger(__name__)

Record = tuple[str, Sequence[Sequence[str]], dict, str]  # kind, subjects, predicate, reference
Statement = tuple[str, str, str, bytes]  # kind, subject digest, reference, the statement's bytes


@dataclass(frozen=True)
class _Signed:
    kind: str
    subject_digest: str
    reference: str
    envelope: bytes
    leaf: bytes


# The key in force as this process last appended with it, per database: what the next append signs with before it
# takes the lock. Never trusted, only tried: the write checks it under the lock.
_KEY_SEEN: dict[str, str] = {}


def ledger_append(
    *, kind: str, subjects: Sequence[tuple[str, str]], predicate: dict, reference: str = ""
) -> LedgerEntry:
    """Sign a record and append it now. Most callers use record_enqueue instead, inside their own transaction.
    ``reference`` says whose record it is in the caller's terms (e.g. ``cue:<uuid>``), for look-ups."""
    statement = (kind, subjects[0][1], reference, _statement_check(kind, subjects, predicate))
    key_id = _KEY_SEEN.get(_database(connections[DEFAULT_DB_ALIAS]))
    signed = _sign_ahead(statement, key_id)
    if key_id is not None and signed is not None:
        entries = _write(key_id, signed)
        if entries is not None:
            return entries[0]
    # A new ledger, a new process or another key in force: sign under the lock, with the key the head names.
    with transaction.atomic():
        key_id = _current_key_id(_head_locked())
        entries = _write(key_id, _sign([statement], key_id))
        if entries is None:
            raise _head_moved()
        return entries[0]


def _statement_check(kind: str, subjects: Sequence[Sequence[str]], predicate: dict) -> bytes:
    """Refuse a record that could not be signed later: its predicate must fit its schema and its statement must
    canonicalise (RFC 8785 has no room for, say, integers beyond 2**53). Returns the statement's bytes."""
    predicate_check(kind, predicate)
    try:
        return _statement_bytes(kind, subjects, predicate)
    except LedgerError as exc:
        raise ProvenanceError("predicate_invalid", f"{kind} record cannot be signed: {exc.detail}") from None


def _statement_bytes(kind: str, subjects: Sequence[Sequence[str]], predicate: dict) -> bytes:
    return make_statement([(name, digest) for name, digest in subjects], PREDICATE_TYPES[kind], predicate)


def _append(head: LedgerHead, record: Record) -> LedgerEntry:
    return _append_all(head, [record])[0]


def _append_all(head: LedgerHead, records: Sequence[Record]) -> list[LedgerEntry]:
    """Sign and append records under the head the caller has locked (and bring ``head`` up to date): all the
    signing and hashing first, in memory, then the writes, however many records there are."""
    if not records:
        return []
    key_id = _current_key_id(head)
    statements = [
        (kind, subjects[0][1], reference, _statement_bytes(kind, subjects, predicate))
        for kind, subjects, predicate, reference in records
    ]
    entries = _write(key_id, _sign(statements, key_id))
    if entries is None:
        raise _head_moved()
    head.refresh_from_db(fields=["size", "frontier"])
    return entries


def _sign(statements: Sequence[Statement], key_id: str) -> list[_Signed]:
    signer = signer_for(key_id)
    signed = []
    for kind, subject_digest, reference, payload in statements:
        envelope = sign_envelope(payload, signer)
        signed.append(_Signed(kind, subject_digest, reference, envelope, leaf_hash(envelope)))
    return signed


def _sign_ahead(statement: Statement, key_id: str | None) -> list[_Signed] | None:
    """Sign with the key this process last saw in force, before any lock; None if there is none to use (a key
    retired and destroyed meanwhile is found out under the lock, which signs again with the key in force)."""
    if key_id is None:
        return None
    try:
        return _sign([statement], key_id)
    except ProvenanceError:
        return None


def _write(key_id: str, signed: Sequence[_Signed]) -> list[LedgerEntry] | None:
    """Append ``signed`` (signed by ``key_id``) at the end of the ledger: the entries, their tree nodes and the new
    head, under the ledger's lock, provided ``key_id`` is the key the head has in force; otherwise write nothing and
    return None."""
    now = timezone.now()
    db = connections[DEFAULT_DB_ALIAS]  # once: every lookup through the `connection` proxy costs a few µs
    # The writes go to the driver directly, past the guard Django's cursors keep: an append inside an atomic block
    # that an error has already doomed must fail now, not appear to succeed and vanish with the rollback.
    db.validate_no_broken_transaction()
    database = _database(db)
    if db.vendor == "postgresql":
        first = _write_postgresql(db, key_id, signed, now)
    else:
        first = _write_sqlite(db, database, key_id, signed, now)
    if first is None:
        return None
    _KEY_SEEN[database] = key_id
    entries = []
    for offset, item in enumerate(signed):
        entry = LedgerEntry(
            index=first + offset,
            leaf_hash=item.leaf.hex(),
            envelope=item.envelope,
            subject_digest=item.subject_digest,
            reference=item.reference,
            kind=item.kind,
            key_id=key_id,
            created_at=now,
        )
        entry._state.adding, entry._state.db = False, db.alias
        entries.append(entry)
    return entries


def _write_postgresql(db: BaseDatabaseWrapper, key_id: str, signed: Sequence[_Signed], now: datetime) -> int | None:
    import psycopg  # only ever needed on PostgreSQL

    autocommit = db.get_autocommit()  # connects if need be
    raw = db.connection
    # Only a call that is a transaction of its own may let go of the head without waiting for the log flush when
    # other writers wait for it (migration 0003), and then wait for the flush itself. Inside a transaction, however it
    # was begun, the caller's commit waits for the flush.
    alone = autocommit and raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if len(signed) == 1:
        item = signed[0]
        sql = "SELECT * FROM provenance_append_entry(%s, %s, %s, %s, %s, %s, %s, %s)"
        params = [key_id, item.envelope, item.leaf, item.subject_digest, item.reference, item.kind, now, alone]
    else:  # arrays cost more to send than one entry's values, so only batches use them
        sql = (
            "SELECT * FROM provenance_append(%s, %s::bytea[], %s::bytea[], %s::text[], %s::text[], %s::text[], %s, %s)"
        )
        params = [
            key_id,
            [item.envelope for item in signed],
            [item.leaf for item in signed],
            [item.subject_digest for item in signed],
            [item.reference for item in signed],
            [item.kind for item in signed],
            now,
            alone,
        ]
    # Bound on the server, so that psycopg prepares each statement once a connection has run it a few times.
    with db.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params)
        first, flush_deferred = cursor.fetchone() or (-1, False)
    if flush_deferred:
        try:
            with db.wrap_database_errors, psycopg.Cursor(raw) as cursor:
                cursor.execute(_FLUSH)
        except DatabaseError as exc:
            # Committed, but perhaps not on disk: a crash now could take it back. Say so rather than "failed",
            # which would invite the caller to append the record a second time.
            raise ProvenanceError(
                "ledger_append_unconfirmed",
                f"Entry {first} was appended, but waiting for it to reach the disk failed ({exc}); check it with"
                " `ledger verify` before relying on it.",
                http_status=503,
            ) from exc
    return None if first < 0 else first


# A transaction that writes to the log and commits synchronously: its flush covers every commit logged before it.
_FLUSH = "SELECT pg_logical_emit_message(true, 'cueledger', 'ledger append flushed')"


def _write_sqlite(
    db: BaseDatabaseWrapper, database: str, key_id: str, signed: Sequence[_Signed], now: datetime
) -> int | None:
    autocommit = db.get_autocommit()  # connects if need be
    raw = db.connection
    if not autocommit or raw.in_transaction:
        # Inside the caller's transaction (atomic, or autocommit turned off): a savepoint, committed with the rest.
        # With autocommit off and nothing written yet, the driver has not begun that transaction, and a savepoint
        # outside one would commit on its release; so it is begun here, for the caller to end. (A transaction begun
        # on the driver behind Django's back is refused by atomic, and nothing is written.)
        if not raw.in_transaction:
            with db.wrap_database_errors:
                raw.execute("BEGIN IMMEDIATE")
        with transaction.atomic(using=db.alias):
            return _write_sqlite_rows(db, database, key_id, signed, now)
    # A transaction of its own, begun and ended on the driver's connection: atomic's bookkeeping would cost more
    # than the statements. BEGIN IMMEDIATE takes the database's write lock, held to the end.
    with db.wrap_database_errors:
        raw.execute("BEGIN IMMEDIATE")
        try:
            first = _write_sqlite_rows(db, database, key_id, signed, now)
            raw.execute("ROLLBACK" if first is None else "COMMIT")
        except BaseException:
            try:
                if raw.in_transaction:
                    raw.rollback()
            except Exception:
                # A connection that could not roll back is not used again; the next append reconnects. The error
                # raised is the append's own.
                logger.exception("Rolling back a failed ledger append failed; closing the database connection.")
                with contextlib.suppress(Exception):
                    db.close()
            raise
    return first


def _write_sqlite_rows(
    db: BaseDatabaseWrapper, database: str, key_id: str, signed: Sequence[_Signed], now: datetime
) -> int | None:
    """The SQLite write under the caller's BEGIN IMMEDIATE; ``database`` names the database for _HEAD_WRITTEN."""
    raw = db.connection  # the driver's own connection: no placeholder rewriting per statement
    created_at = db.ops.adapt_datetimefield_value(now)
    seen = _HEAD_WRITTEN.pop(database, None)
    if seen is not None and seen.key_id == key_id:
        # The head as this process last wrote it, used only if the stored head is still exactly that (its size, its
        # border's text and its key), which the update checks; otherwise the head is read as below.
        head, entry_rows, node_rows = _rows_after(seen, key_id, signed, created_at)
        if raw.execute(_HEAD_UPDATE_IF, (head.size, head.frontier, seen.size, seen.frontier, key_id)).rowcount:
            return _insert(raw, database, seen.size, head, entry_rows, node_rows)
    row = raw.execute(_HEAD_READ).fetchone()
    if row is None or not key_id or row[2] != key_id:
        return None
    stored = _Head(row[0], row[1], key_id, border_loads(row[1], row[0]))
    head, entry_rows, node_rows = _rows_after(stored, key_id, signed, created_at)
    raw.execute(_HEAD_UPDATE, (head.size, head.frontier))
    return _insert(raw, database, stored.size, head, entry_rows, node_rows)


@dataclass(frozen=True)
class _Head:
    size: int
    frontier: str  # the border as the head stores it, JSON text
    key_id: str
    border: dict[int, bytes]


# The head as this process last wrote it on SQLite, per database: the next append there tries it rather than read
# and parse the head again. Never trusted, only tried (the write is conditional on the head being exactly this), so
# a head written elsewhere since, or rolled back, costs the nodes computed in vain and one update that changes
# nothing, before the head is read.
_HEAD_WRITTEN: dict[str, _Head] = {}


def _rows_after(head: _Head, key_id: str, signed: Sequence[_Signed], created_at: str) -> tuple[_Head, list, list]:
    """The head after appending ``signed`` (signed by ``key_id``, which the caller has checked is the head's) to
    ``head``, and the entry and tree node rows to insert."""
    border, size = dict(head.border), head.size
    entry_rows, node_rows = [], []
    for item in signed:
        entry = (item.leaf.hex(), item.envelope, item.subject_digest, item.reference, item.kind, key_id)
        entry_rows.append((size, *entry, created_at))
        node_rows.extend(frontier_append(border, size, item.leaf))
        size += 1
    return _Head(size, border_json(border, size), key_id, border), entry_rows, node_rows


def _insert(raw, database: str, first: int, head: _Head, entry_rows: list, node_rows: list) -> int:
    raw.executemany(_ENTRY_INSERT, entry_rows)
    raw.executemany(_NODE_INSERT, node_rows)
    _HEAD_WRITTEN[database] = head
    return first


_HEAD_READ = "SELECT size, frontier, key_id FROM provenance_ledgerhead WHERE id = 1"
_HEAD_UPDATE = "UPDATE provenance_ledgerhead SET size = ?, frontier = ? WHERE id = 1"
# Every column of the head that an append depends on must be in this condition: a match must mean the very head
# the read path would have read.
_HEAD_UPDATE_IF = (
    "UPDATE provenance_ledgerhead SET size = ?, frontier = ? WHERE id = 1 AND size = ? AND frontier = ? AND key_id = ?"
)
_ENTRY_INSERT = (
    'INSERT INTO provenance_ledgerentry ("index", leaf_hash, envelope, subject_digest, reference, kind, key_id, '
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_NODE_INSERT = 'INSERT INTO provenance_merklenode (level, "index", hash) VALUES (?, ?, ?)'


def _database(db: BaseDatabaseWrapper) -> str:
    return f"{db.alias}:{db.settings_dict['NAME']}"


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

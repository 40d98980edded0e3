"""Appends sign before the lock with the key last seen in force; the write checks it under the lock. On PostgreSQL
the write is one database function, which must build the tree MerkleTree builds, and which lets go of the head
before the log flush only where its caller then waits for the flush."""

import sqlite3
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError

from cueledger.settings import _database
from provenance import services
from provenance.errors import ProvenanceError
from provenance.ledger import MerkleTree
from provenance.models import LedgerEntry, LedgerHead, MerkleNode, OutboxRecord
from provenance.services import appends
from tests.integration.conftest import worker_database_url
from tests.provenance.factories import DIGEST, clearance

pytestmark = pytest.mark.django_db

sqlite_only = pytest.mark.skipif(
    "connection.vendor != 'sqlite'", reason="SQLite appends in Python (PostgreSQL in a database function)"
)
postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="the append function exists on PostgreSQL only (SQLite appends in Python)",
)


def _statement(n: int) -> appends.Statement:
    predicate = {"decision": "cleared", "decided_by": "legal", "reason": f"append {n}"}
    return ("clearance", DIGEST, "cue:append", appends._statement_check("clearance", [(f"a-{n}", DIGEST)], predicate))


def test_a_write_signed_by_a_key_not_in_force_writes_nothing():
    clearance(0)
    retired = LedgerHead.objects.get(pk=1).key_id
    signed = appends._sign([_statement(1)], retired)
    services.key_rotate()
    nodes = MerkleNode.objects.count()
    assert appends._write(retired, signed) is None
    assert appends._write("11" * 32, signed) is None
    assert LedgerEntry.objects.count() == 2 and MerkleNode.objects.count() == nodes
    assert LedgerHead.objects.get(pk=1).size == 2
    assert services.ledger_verify().ok


@pytest.mark.parametrize("guess", ["11" * 32, None], ids=["a key never seen here", "no guess yet"])
def test_an_append_on_a_wrong_guess_of_the_key_signs_again_with_the_key_in_force(guess):
    clearance(0)
    database = appends._database(connection)
    if guess is None:
        appends._KEY_SEEN.pop(database, None)
    else:
        appends._KEY_SEEN[database] = guess
    entry = clearance(1)
    assert entry.index == 1 and entry.key_id == LedgerHead.objects.get(pk=1).key_id
    assert appends._KEY_SEEN[database] == entry.key_id
    assert list(LedgerEntry.objects.values_list("index", flat=True)) == [0, 1]
    services.checkpoint_create()
    assert services.ledger_verify().ok


def test_after_a_rotation_the_next_append_is_signed_by_the_new_key():
    clearance(0)
    new_key = services.key_rotate()
    entry = clearance(1)
    assert entry.index == 2 and entry.key_id == new_key.key_id
    assert LedgerEntry.objects.get(index=2).key_id == new_key.key_id
    services.checkpoint_create()
    assert services.ledger_verify().ok


def test_single_appends_and_batches_build_the_tree_merkle_tree_builds():
    for n in range(11):
        clearance(n)
    for n in range(23):  # the outbox drain appends these as one batch
        services.record_enqueue(
            kind="clearance",
            subjects=[(f"queued-{n}", DIGEST)],
            predicate={"decision": "cleared", "decided_by": "legal", "reason": f"queued {n}"},
        )
    assert services.outbox_drain() == 23 and not OutboxRecord.objects.exists()
    for n in range(100, 130):  # single appends up to 64 entries: the last one completes six subtrees
        clearance(n)
    leaves = [bytes.fromhex(h) for h in LedgerEntry.objects.order_by("index").values_list("leaf_hash", flat=True)]
    assert len(leaves) == 64
    stored = {
        (level, index): bytes(value) for level, index, value in MerkleNode.objects.values_list("level", "index", "hash")
    }
    tree = MerkleTree.from_leaves(leaves)
    assert stored == tree.store.nodes
    assert LedgerHead.objects.get(pk=1).frontier == services.frontier_of(tree.store, 64)


@postgresql_only
def test_the_append_function_refuses_mismatched_arrays():
    key_id = services.current_key_id()
    with pytest.raises(Exception, match="as many envelopes"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM provenance_append(%s, %s::bytea[], %s::bytea[], %s::text[], %s::text[], %s::text[], %s,"
            " false)",
            [key_id, [b"{}", b"{}"], [b"\0" * 32], [DIGEST], [""], ["clearance"], datetime.now(UTC)],
        )
    assert not LedgerEntry.objects.exists()


def _raw_connection() -> psycopg.Connection:
    return psycopg.connect(worker_database_url(), autocommit=True)


def _append_raw(conn: psycopg.Connection, key_id: str, n: int, defer: bool) -> tuple[int, bool]:
    (kind, digest, reference, payload), signer = _statement(n), services.signer_for(key_id)
    envelope = appends.sign_envelope(payload, signer)
    return conn.execute(
        "SELECT * FROM provenance_append_entry(%s, %s, %s, %s, %s, %s, %s, %s)",
        [key_id, envelope, appends.leaf_hash(envelope), digest, reference, kind, datetime.now(UTC), defer],
    ).fetchone()


class _HeadHeld:
    """Another session holds the ledger head's lock from entering until the session ``waiter_pid`` is seen waiting
    for a lock (in pg_stat_activity, not guessed from a timer); the caller makes that session append meanwhile."""

    def __init__(self, waiter_pid: int) -> None:
        self.waiter_pid, self.locked, self.error = waiter_pid, threading.Event(), None
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        try:
            with _raw_connection() as holder, holder.transaction():
                holder.execute("SELECT size FROM provenance_ledgerhead WHERE id = 1 FOR UPDATE")
                self.locked.set()
                deadline = time.monotonic() + 60
                while not holder.execute(_WAITING, [self.waiter_pid]).fetchone()[0]:
                    if time.monotonic() > deadline:
                        raise AssertionError("the writer never waited for the head")
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
            self.error = exc
        finally:
            self.locked.set()

    def __enter__(self) -> "_HeadHeld":
        self.thread.start()
        self.locked.wait(timeout=60)
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=120)
        if self.error is not None:
            raise self.error


_WAITING = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"


@postgresql_only
@pytest.mark.parametrize("defer", [True, False], ids=["caller will flush", "caller's transaction"])
def test_only_a_writer_that_waited_for_the_head_and_may_defer_its_flush_defers_it(transactional_db, defer):
    key_id = services.current_key_id()
    clearance(0)
    writer = _raw_connection()
    try:
        assert _append_raw(writer, key_id, 1, True) == (1, False)  # nobody else about: flushed as it commits
        with _HeadHeld(writer.info.backend_pid):
            result = _append_raw(writer, key_id, 2, defer)
        assert result == (2, defer)
        assert writer.execute("SHOW synchronous_commit").fetchone() == ("on",)  # only that transaction's setting
    finally:
        writer.close()
    assert services.ledger_verify().ok


def _recording_statements(monkeypatch) -> list:
    sent = []
    real_execute = psycopg.Cursor.execute

    def execute(self, query, params=None, **kwargs):
        sent.append(query)
        return real_execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    return sent


@postgresql_only
def test_a_write_whose_flush_was_deferred_waits_for_the_flush(transactional_db, monkeypatch):
    """Whether the log reached the disk cannot be seen from here; what can is that the write sends the statement
    that waits for it, when and only when the function deferred the flush."""
    key_id = services.current_key_id()
    clearance(0)
    sent = _recording_statements(monkeypatch)
    assert appends._write(key_id, appends._sign([_statement(1)], key_id))[0].index == 1
    assert appends._FLUSH not in sent
    signed = appends._sign([_statement(2)], key_id)
    with _HeadHeld(connection.connection.info.backend_pid):
        entries = appends._write(key_id, signed)
    assert [entry.index for entry in entries] == [2]
    assert sent.count(appends._FLUSH) == 1
    assert services.ledger_verify().ok


@postgresql_only
@pytest.mark.parametrize("framing", ["atomic", "autocommit off"])
def test_a_write_inside_a_transaction_never_defers_the_flush(transactional_db, monkeypatch, framing):
    """However the caller's transaction was begun, its commit is what must wait for the disk."""
    key_id = services.current_key_id()
    clearance(0)
    sent = _recording_statements(monkeypatch)
    signed = appends._sign([_statement(2)], key_id)
    if framing == "atomic":
        with transaction.atomic(), _HeadHeld(connection.connection.info.backend_pid):
            entries = appends._write(key_id, signed)
    else:
        transaction.set_autocommit(False)
        try:
            with _HeadHeld(connection.connection.info.backend_pid):
                entries = appends._write(key_id, signed)
            transaction.commit()
        finally:
            transaction.set_autocommit(True)
    assert [entry.index for entry in entries] == [1]
    assert appends._FLUSH not in sent
    assert services.ledger_verify().ok


@postgresql_only
def test_the_append_function_refuses_a_head_whose_border_does_not_fit_its_size(transactional_db):
    key_id = services.current_key_id()
    for n in range(5):
        clearance(n)
    head = LedgerHead.objects.get(pk=1)
    good = head.frontier
    assert [level for level, _, _ in good] == [0, 2]  # size 5
    writer = _raw_connection()
    try:
        for border in ([good[1]], [[0, 999, good[0][2]], good[1]], [*good, [1, 1, good[0][2]]]):
            LedgerHead.objects.filter(pk=1).update(frontier=border)
            with pytest.raises(psycopg.errors.RaiseException, match="border"):
                _append_raw(writer, key_id, 9, True)
    finally:
        writer.close()
        LedgerHead.objects.filter(pk=1).update(frontier=good)
    assert LedgerEntry.objects.count() == 5 and services.ledger_verify().ok


@sqlite_only
def test_an_sqlite_append_refuses_a_head_whose_border_does_not_fit_its_size():
    for n in range(5):
        clearance(n)
    good = LedgerHead.objects.get(pk=1).frontier
    bad_borders = (
        [good[1]],  # a node missing
        [[0, 999, good[0][2]], good[1]],  # at the wrong index
        [*good, [1, 1, good[0][2]]],  # one too many
        [good[0], good[0], good[1]],  # one twice
        [good[1], good[0]],  # out of order
        [[-1, 4, good[0][2]], good[1]],  # a negative level
        [[False, 4, good[0][2]], good[1]],  # a level that is not an integer (False == 0 in Python)
        [good[0], [2, 0.0, good[1][2]]],  # nor an index
        [good[0], [2, 0, "ab"]],  # not a hash
        [good[0], [2, 0, good[1][2].upper()]],  # not as the head writes hashes
        [good[0], [2, 0, None]],
        [good[0], "2, 0"],  # not a node
        [good[0], [2, 0, good[1][2], 1]],
        {"0": good[0]},
        "x",
    )
    for border in bad_borders:
        LedgerHead.objects.filter(pk=1).update(frontier=border)
        with pytest.raises(ProvenanceError) as failure:
            clearance(9)
        assert failure.value.code == "ledger_head_corrupt", border
    LedgerHead.objects.filter(pk=1).update(frontier=good)
    assert LedgerEntry.objects.count() == 5 and services.ledger_verify().ok
    assert clearance(9).index == 5 and services.ledger_verify().ok


@sqlite_only
@pytest.mark.parametrize("border", [{}, "", [["0", 0, "00" * 32]], [[0, 0, "00" * 32]]], ids=repr)
def test_an_sqlite_append_refuses_a_border_an_empty_ledger_cannot_have(border):
    services.current_key_id()  # the head, of size 0
    LedgerHead.objects.filter(pk=1).update(frontier=border)
    with pytest.raises(ProvenanceError) as failure:
        clearance(0)
    assert failure.value.code == "ledger_head_corrupt" and not LedgerEntry.objects.exists()
    LedgerHead.objects.filter(pk=1).update(frontier=[])
    assert clearance(0).index == 0


@sqlite_only
def test_an_sqlite_append_refuses_a_border_python_cannot_read():
    clearance(0)
    with connection.cursor() as cursor:  # valid JSON to SQLite, but past Python's limit on an integer's digits
        cursor.execute("UPDATE provenance_ledgerhead SET frontier = %s", [f'[[0, 1{"0" * 5000}, "{"00" * 32}"]]'])
    with pytest.raises(ProvenanceError) as failure:
        clearance(1)
    assert failure.value.code == "ledger_head_corrupt" and LedgerEntry.objects.count() == 1


def _statements_of(append) -> list[str]:
    statements = []
    connection.ensure_connection()
    connection.connection.set_trace_callback(statements.append)
    try:
        append()
    finally:
        connection.connection.set_trace_callback(None)
    return statements


@sqlite_only
def test_an_sqlite_append_after_this_process_wrote_the_head_does_not_read_it_again():
    clearance(0)
    statements = _statements_of(lambda: clearance(1))
    assert not [sql for sql in statements if sql.startswith("SELECT size, frontier")]
    assert [sql for sql in statements if sql.startswith("UPDATE provenance_ledgerhead")]
    assert services.ledger_verify().ok


@sqlite_only
def test_an_sqlite_append_reads_the_head_when_another_writer_moved_it():
    clearance(0)
    remembered = dict(appends._HEAD_WRITTEN)  # the head after entry 0, as this process wrote it
    clearance(1)  # as another process would, without this process knowing
    appends._HEAD_WRITTEN.update(remembered)
    assert clearance(2).index == 2 and services.ledger_verify().ok


def _append_rolled_back(n: int) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        clearance(n)
        raise RuntimeError("the caller changed its mind")


@sqlite_only
def test_an_sqlite_append_reads_the_head_when_another_writer_replaced_the_one_it_wrote_at_the_same_size():
    clearance(0)
    _append_rolled_back(1)
    remembered = dict(appends._HEAD_WRITTEN)  # size 2, with the rolled-back entry's border
    appends._HEAD_WRITTEN.clear()
    clearance(99)  # another writer: size 2 again, another border
    appends._HEAD_WRITTEN.update(remembered)
    assert clearance(2).index == 2 and services.ledger_verify().ok


@sqlite_only
def test_an_sqlite_append_reads_the_head_when_the_one_it_wrote_was_rolled_back():
    clearance(0)
    _append_rolled_back(1)
    assert clearance(2).index == 1 and services.ledger_verify().ok


def _in_transaction() -> bool:
    raw = connection.connection
    if connection.vendor == "sqlite":
        return raw.in_transaction
    return raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def test_a_write_outside_a_transaction_commits_its_own(transactional_db):
    key_id = services.current_key_id()
    clearance(0)
    entries = appends._write(key_id, appends._sign([_statement(1)], key_id))
    assert [entry.index for entry in entries] == [1]
    assert connection.get_autocommit() and not _in_transaction()
    assert LedgerHead.objects.get(pk=1).size == 2 and services.ledger_verify().ok


def test_a_write_that_fails_outside_a_transaction_leaves_nothing_written(transactional_db):
    """The head moves before the entry is inserted; an entry already at that index (written past the head, as by
    an attacker) must make the whole write fail, the head included, and leave the connection usable."""
    key_id = services.current_key_id()
    clearance(0)
    nodes = MerkleNode.objects.count()
    LedgerEntry.objects.create(
        index=1,
        leaf_hash="00" * 32,
        envelope=b"{}",
        subject_digest=DIGEST,
        kind="clearance",
        key_id=key_id,
        created_at=datetime.now(UTC),
    )
    with pytest.raises(IntegrityError):
        appends._write(key_id, appends._sign([_statement(1)], key_id))
    assert not _in_transaction()
    assert LedgerHead.objects.get(pk=1).size == 1 and MerkleNode.objects.count() == nodes


def test_a_write_with_autocommit_off_is_part_of_the_callers_transaction(transactional_db):
    key_id = services.current_key_id()
    clearance(0)
    signed = appends._sign([_statement(1)], key_id)
    transaction.set_autocommit(False)
    try:
        assert [entry.index for entry in appends._write(key_id, signed)] == [1]
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert LedgerEntry.objects.count() == 1 and LedgerHead.objects.get(pk=1).size == 1
    assert services.ledger_verify().ok


def test_a_write_in_an_atomic_block_an_error_has_doomed_fails():
    """The write goes to the driver directly; it must still refuse a transaction Django knows will roll back."""
    key_id = services.current_key_id()
    clearance(0)
    signed = appends._sign([_statement(1)], key_id)
    with transaction.atomic():
        with pytest.raises(ValueError), transaction.atomic(savepoint=False):
            raise ValueError("an earlier step failed")
        with pytest.raises(TransactionManagementError):
            appends._write(key_id, signed)
    assert LedgerHead.objects.get(pk=1).size == 1


def test_sqlite_connections_flush_every_commit(tmp_path):
    """PostgreSQL waits for the log flush at every commit by default; SQLite must be told to (synchronous=FULL)."""
    config = _database(f"sqlite:///{tmp_path / 'flush.sqlite3'}")
    database = sqlite3.connect(config["NAME"])
    try:
        database.executescript(config["OPTIONS"]["init_command"])
        assert database.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert database.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    finally:
        database.close()

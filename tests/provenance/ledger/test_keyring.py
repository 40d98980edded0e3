"""Ledger keys, validity windows in ledger indexes, and the per-entry check."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading

import pytest

from provenance.ledger import (
    Ed25519Signer,
    KeyRing,
    LedgerKey,
    MalformedError,
    VerificationError,
    b64,
    check_entries,
    check_entry,
    dsse,
    leaf_hash,
    make_statement,
    note_key_id,
    parse_statement,
    sign_envelope,
)
from provenance.ledger import keyring as keyring_module
from tests.integration.conftest import ROOT

from .helpers import ORIGIN, PREDICATE, Ledger, cue_statement, ledger_key, seeded_key


def test_windows():
    key = ledger_key(seeded_key("k"), 10, 20)
    assert [key.valid_for_entry(i) for i in (9, 10, 19, 20)] == [False, True, True, False]
    assert [key.valid_for_tree_size(n) for n in (9, 10, 20, 21)] == [False, True, True, False]
    current = ledger_key(seeded_key("k"), 20, None)
    assert current.valid_for_entry(10**12) and not current.valid_for_entry(19)
    assert current.valid_for_tree_size(20) and current.valid_for_tree_size(10**12)


def test_json_round_trip():
    key = ledger_key(seeded_key("k"), 3, None)
    data = key.to_json()
    assert data == {
        "key_id": key.key_id,
        "name": ORIGIN,
        "algorithm": "ed25519",
        "public_key": b64(key.public_key),
        "valid_from_index": 3,
        "valid_until_index": None,
    }
    assert LedgerKey.from_json(json.loads(json.dumps(data))) == key
    assert LedgerKey.from_json({**data, "created_at": "2025-01-01", "vkey": "ignored"}) == key
    assert key.note_key_id == note_key_id(ORIGIN, key.public_key)


@pytest.mark.parametrize(
    "change",
    [
        {"algorithm": "ecdsa-p256"},
        {"key_id": "00" * 32},
        {"public_key": b64(bytes(31))},
        {"public_key": "not base64"},
        {"valid_from_index": -1},
        {"valid_from_index": "0"},
        {"valid_from_index": True},
        {"valid_until_index": 2},
        {"valid_until_index": 5.0},
        {"name": "has space"},
        {"name": ""},
        {"name": 7},
    ],
)
def test_malformed_keys(change):
    data = {**ledger_key(seeded_key("k"), 3, 10).to_json(), **change}
    with pytest.raises(MalformedError) as raised:
        LedgerKey.from_json(data)
    assert raised.value.code == "key_malformed"


def test_missing_fields_and_non_objects():
    data = ledger_key(seeded_key("k"), 0, None).to_json()
    for field in data:
        with pytest.raises(MalformedError):
            LedgerKey.from_json({k: v for k, v in data.items() if k != field})
    with pytest.raises(MalformedError):
        LedgerKey.from_json([data])


def test_keyring_from_api_shapes():
    keys = [ledger_key(seeded_key("a"), 0, 5), ledger_key(seeded_key("b"), 5, None)]
    as_json = [key.to_json() for key in keys]
    for data in (as_json, {"keys": as_json}, {"count": 2, "next": None, "previous": None, "results": as_json}):
        ring = KeyRing.from_json(data)
        assert list(ring) == keys and len(ring) == 2
    with pytest.raises(MalformedError) as raised:
        KeyRing.from_json({"count": 9, "next": "https://x/api/v1/ledger/keys/?page=2", "results": as_json})
    assert raised.value.code == "keyring_incomplete"
    for bad in ({"items": as_json}, "keys", {"keys": "x"}, [as_json[0], as_json[0]], [{"key_id": "x"}]):
        with pytest.raises(MalformedError):
            KeyRing.from_json(bad)
    assert KeyRing.from_json(KeyRing(keys).to_json()).keys == tuple(keys)


def test_key_lookups():
    old, new = ledger_key(seeded_key("a"), 0, 5), ledger_key(seeded_key("b"), 5, None)
    ring = KeyRing([old, new])
    assert ring.key_for_entry(old.key_id, 4) == old
    with pytest.raises(VerificationError) as raised:
        ring.key_for_entry(old.key_id, 5)
    assert (raised.value.code, raised.value.index) == ("key_not_valid_for_entry", 5)
    assert "entry 5" in str(raised.value)
    with pytest.raises(VerificationError) as raised:
        ring.key_for_entry("ff" * 32, 1)
    assert (raised.value.code, raised.value.index) == ("unknown_key", 1)

    assert ring.checkpoint_keys() == {
        (ORIGIN, old.note_key_id): old.public_key,
        (ORIGIN, new.note_key_id): new.public_key,
    }
    assert ring.key_for_checkpoint(ORIGIN, old.note_key_id, 5) == old  # the rotation point: both may sign
    assert ring.key_for_checkpoint(ORIGIN, new.note_key_id, 5) == new
    with pytest.raises(VerificationError) as raised:
        ring.key_for_checkpoint(ORIGIN, old.note_key_id, 6)
    assert raised.value.code == "checkpoint_key_not_valid"
    with pytest.raises(VerificationError):
        ring.key_for_checkpoint("other.example/log", old.note_key_id, 1)


def test_check_entry():
    ledger = Ledger.with_rotation(entries=6, rotate_at=3)
    ring = KeyRing(ledger.ledger_keys)
    for index, envelope in enumerate(ledger.envelopes):
        result = check_entry(envelope, index, ring)
        assert result.index == index
        assert result.leaf_hash == leaf_hash(envelope)
        assert result.key_id == ledger.keys[0 if index < 3 else 1][1].key_id
        assert result.predicate_type == PREDICATE
        assert result.subjects[0][0] == f"cue-{index}.wav"
        assert result.to_json()["leaf_hash"] == b64(result.leaf_hash)
        assert result.statement == parse_statement(dsse.open_envelope(envelope, ring.public_keys)[0])
    # Entry 2 was signed by the first key; claiming it sits at index 3 puts it outside that key's window.
    with pytest.raises(VerificationError) as raised:
        check_entry(ledger.envelopes[2], 3, ring)
    assert (raised.value.code, raised.value.index) == ("key_not_valid_for_entry", 3)


def test_a_result_crosses_processes_as_the_statements_bytes():
    """check_entries sends results from its workers by pickle: the statement travels as its bytes, and is the same
    statement when parsed at the other end."""
    ledger = Ledger.with_rotation(entries=4, rotate_at=2)
    result = check_entry(ledger.envelopes[0], 0, KeyRing(ledger.ledger_keys))
    sent = pickle.dumps(result)
    assert b"predicateType" in result.payload and pickle.loads(sent) == result
    assert "statement" not in vars(pickle.loads(sent))  # not parsed until asked for
    assert pickle.loads(sent).statement == result.statement


def test_check_entry_errors_name_the_entry():
    signer = Ed25519Signer(seeded_key("ledger-key-1"))
    ring = KeyRing([ledger_key(seeded_key("ledger-key-1"), 0, None)])
    cases = [
        (b"garbage", "envelope_malformed"),
        (sign_envelope(cue_statement(1), Ed25519Signer(seeded_key("stranger"))), "unknown_key"),
        (sign_envelope(b"not a statement", signer), "statement_malformed"),
        (sign_envelope(cue_statement(1), signer, payload_type="application/json"), "payload_type_unsupported"),
    ]
    for envelope, code in cases:
        with pytest.raises((MalformedError, VerificationError)) as raised:
            check_entry(envelope, 7, ring)
        assert (raised.value.code, raised.value.index) == (code, 7)
        assert str(raised.value).startswith("entry 7: ")


def test_check_entries_in_order_and_in_parallel():
    """Whichever way the entries are checked here (the suite may have other threads running, and then nothing
    forks), the results are the same and in order; the forked workers get the same checks in a fresh process below."""
    ledger = Ledger.with_rotation(entries=40, rotate_at=17)
    ring = KeyRing(ledger.ledger_keys)
    pairs = list(enumerate(ledger.envelopes))
    sequential = [check_entry(envelope, index, ring) for index, envelope in pairs]
    for workers in (1, 2, 4):
        assert list(check_entries(iter(pairs), ring, workers=workers, chunk=3)) == sequential
    bad = pairs[:]
    bad[25] = (25, ledger.envelopes[24])  # a swapped-in copy: still signed, but...
    bad[30] = (30, b"garbage")
    # ... the first failure in input order is raised, whatever thread found it.
    bad[20] = (20, ledger.envelopes[3])  # signed by the first key, outside its window at index 20
    with pytest.raises(VerificationError) as raised:
        list(check_entries(bad, ring, workers=3, chunk=2))
    assert (raised.value.code, raised.value.index) == ("key_not_valid_for_entry", 20)


def test_statement_with_multiple_subjects():
    signer = Ed25519Signer(seeded_key("ledger-key-1"))
    ring = KeyRing([ledger_key(seeded_key("ledger-key-1"), 0, None)])
    statement = make_statement([("a.wav", "a" * 64), ("b.mid", "b" * 64)], PREDICATE, {})
    result = check_entry(sign_envelope(statement, signer), 0, ring)
    assert result.subjects == [("a.wav", "a" * 64), ("b.mid", "b" * 64)]


def test_check_entries_reports_input_errors_after_earlier_entries():
    ledger = Ledger.with_rotation(entries=12)
    ring = KeyRing(ledger.ledger_keys)

    def rows(bad_at: int | None):
        for index, envelope in enumerate(ledger.envelopes):
            if index == 9:
                raise LookupError("entry 9 is missing")
            yield index, (b"garbage" if index == bad_at else envelope)

    with pytest.raises(LookupError):
        list(check_entries(rows(None), ring, workers=2, chunk=2))
    # An earlier bad entry wins over the input error read ahead of it.
    with pytest.raises(MalformedError) as raised:
        list(check_entries(rows(1), ring, workers=2, chunk=2))
    assert raised.value.index == 1
    seen = []
    with pytest.raises(LookupError):
        for result in check_entries(rows(None), ring, workers=2, chunk=4):
            seen.append(result.index)
    assert seen == list(range(9))


_FORKING = """
import threading
from provenance.ledger import KeyRing, VerificationError, check_entries, check_entry
from provenance.ledger import keyring as module
from tests.provenance.ledger.helpers import Ledger

assert threading.active_count() == 1
forked = []
real = module._check_in_processes
module._check_in_processes = lambda *args: forked.append(True) or real(*args)
ledger = Ledger.with_rotation(entries=40, rotate_at=17)
ring = KeyRing(ledger.ledger_keys)
pairs = list(enumerate(ledger.envelopes))
sequential = [check_entry(envelope, index, ring) for index, envelope in pairs]
for workers in (2, 4):
    assert list(check_entries(iter(pairs), ring, workers=workers, chunk=3)) == sequential
bad = pairs[:]
bad[25] = (25, ledger.envelopes[24])
bad[30] = (30, b"garbage")
bad[20] = (20, ledger.envelopes[3])
try:
    list(check_entries(bad, ring, workers=3, chunk=2))
    raise SystemExit("no error")
except VerificationError as exc:
    assert (exc.code, exc.index) == ("key_not_valid_for_entry", 20), exc
print(len(forked))
"""


def test_check_entries_forks_its_workers_in_a_single_threaded_process():
    """In a fresh interpreter (one thread, as `manage.py ledger verify` runs): the checks run in forked workers, and
    results and the first error still come back in input order."""
    done = subprocess.run(
        [sys.executable, "-c", _FORKING], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["3"]


def test_check_entries_forks_only_where_it_is_safe(monkeypatch):
    ledger = Ledger.with_rotation(entries=12)
    ring = KeyRing(ledger.ledger_keys)
    pairs = list(enumerate(ledger.envelopes))
    expected = [check_entry(envelope, index, ring) for index, envelope in pairs]
    forked = []
    real = keyring_module._check_in_processes
    monkeypatch.setattr(keyring_module, "_check_in_processes", lambda *args: forked.append(True) or real(*args))
    # Another thread running (it could hold a lock a forked child would inherit): checked here instead.
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert list(check_entries(pairs, ring, workers=2, chunk=4)) == expected
    finally:
        release.set()
        other.join()
    # An input of one chunk or less is not worth a process either.
    assert list(check_entries(pairs, ring, workers=2, chunk=12)) == expected
    assert forked == []

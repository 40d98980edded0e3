"""Evidence bundles: an honest bundle verifies; every kind of tampering is caught and names the entry."""

from __future__ import annotations

import copy
import json

import pytest

from provenance.ledger import (
    BUNDLE_FORMAT,
    Checkpoint,
    KeyRing,
    LedgerError,
    MalformedError,
    VerificationError,
    b64,
    dump_bundle,
    load_bundle,
    make_statement,
    sign_note,
    unb64,
    verify_bundle,
)

from .helpers import ORIGIN, PREDICATE, Ledger, cue_statement, ledger_key, seeded_key


@pytest.fixture
def ledger() -> Ledger:
    return Ledger.with_rotation(entries=5)


@pytest.fixture
def trusted(ledger) -> KeyRing:
    return KeyRing(ledger.ledger_keys)


def fails(bundle, code, index=None, *, error=VerificationError, **kwargs) -> LedgerError:
    with pytest.raises(error) as raised:
        verify_bundle(bundle, **kwargs)
    assert raised.value.code == code, raised.value
    assert raised.value.index == index, raised.value
    if index is not None:
        assert f"entry {index}" in str(raised.value)
    return raised.value


def set_envelope(bundle, position, envelope: bytes):
    bundle["entries"][position]["envelope"] = b64(envelope)


# ---------------------------------------------------------------- honest bundles


def test_honest_bundle_verifies(ledger, trusted):
    bundle = ledger.bundle()
    report = verify_bundle(bundle, trusted_keys=trusted)
    assert report.origin == ORIGIN
    assert report.tree_size == 5
    assert report.root_hash == ledger.tree.root()
    assert [entry.index for entry in report.entries] == [0, 1, 2, 3, 4]
    assert report.entries[2].predicate_type == PREDICATE
    assert report.checkpoint_key_id == ledger.keys[0][1].key_id
    assert report.previous_size is None
    assert report.warnings == []
    assert report.subject == {"cue": "Opening titles"}
    json.dumps(report.to_json())


def test_own_keys_verify_with_a_warning(ledger):
    report = verify_bundle(ledger.bundle())
    assert any("not independently trusted" in warning for warning in report.warnings)


def test_a_subset_of_entries_in_any_order(ledger, trusted):
    report = verify_bundle(ledger.bundle([4, 1]), trusted_keys=trusted)
    assert [entry.index for entry in report.entries] == [4, 1]


def test_empty_bundle_verifies_only_the_checkpoint(ledger, trusted):
    report = verify_bundle(ledger.bundle([]), trusted_keys=trusted)
    assert report.entries == [] and any("no entries" in warning for warning in report.warnings)


def test_file_round_trip(ledger, trusted):
    bundle = ledger.bundle()
    assert load_bundle(dump_bundle(bundle)) == bundle
    assert verify_bundle(load_bundle(dump_bundle(bundle)), trusted_keys=trusted).tree_size == 5


def test_key_rotation(trusted):
    ledger = Ledger.with_rotation(entries=6, rotate_at=3)
    ring = KeyRing(ledger.ledger_keys)
    report = verify_bundle(ledger.bundle(), trusted_keys=ring)
    assert [e.key_id for e in report.entries] == [ledger.keys[0][1].key_id] * 3 + [ledger.keys[1][1].key_id] * 3
    # At the rotation point, either key may sign the checkpoint.
    for private_key, key in ledger.keys:
        bundle = ledger.bundle(size=3)
        bundle["checkpoint"] = ledger.checkpoint(3, private_key)
        assert verify_bundle(bundle, trusted_keys=ring).checkpoint_key_id == key.key_id


# ---------------------------------------------------------------- tampered entries


def test_changed_byte_in_an_envelope(ledger, trusted):
    envelope = ledger.envelopes[2]
    obj = json.loads(envelope)
    payload = unb64(obj["payload"]).replace(b"Cue 2", b"Cue 9")
    obj["payload"] = b64(payload)
    tampered = envelope.replace(json.loads(envelope)["payload"].encode(), obj["payload"].encode())
    bundle = ledger.bundle()
    set_envelope(bundle, 2, tampered)
    fails(bundle, "envelope_signature_invalid", 2, trusted_keys=trusted)


@pytest.mark.parametrize("position", [0, 5, 20, 100, -90, -3, -1])
def test_any_flipped_byte_fails_at_that_entry(ledger, trusted, position):
    envelope = bytearray(ledger.envelopes[3])
    envelope[position] ^= 0x01
    bundle = ledger.bundle()
    set_envelope(bundle, 3, bytes(envelope))
    with pytest.raises(LedgerError) as raised:
        verify_bundle(bundle, trusted_keys=trusted)
    assert raised.value.index == 3


def test_changed_subject_resigned_by_an_unknown_key(ledger, trusted):
    forged = make_statement([("cue-2.wav", "f" * 64)], PREDICATE, {"cue": "Cue 2", "event": "rendered"})
    stranger = Ledger([(seeded_key("stranger"), ledger_key(seeded_key("stranger"), 0, None))])
    envelope = stranger.append(forged)
    bundle = ledger.bundle()
    set_envelope(bundle, 2, envelope)
    fails(bundle, "unknown_key", 2, trusted_keys=trusted)
    # If the forger also slips their key into the bundle, the entry still is not the one in the log.
    bundle["keys"].append(stranger.ledger_keys[0].to_json())
    fails(bundle, "inclusion_proof_invalid", 2)


def test_reordered_entries(ledger, trusted):
    bundle = ledger.bundle()
    first, second = bundle["entries"][1]["envelope"], bundle["entries"][2]["envelope"]
    bundle["entries"][1]["envelope"], bundle["entries"][2]["envelope"] = second, first
    fails(bundle, "inclusion_proof_invalid", 1, trusted_keys=trusted)


def test_truncated_proof(ledger, trusted):
    bundle = ledger.bundle()
    bundle["entries"][3]["inclusion_proof"].pop()
    fails(bundle, "inclusion_proof_invalid", 3, trusted_keys=trusted)


def test_proof_from_another_entry(ledger, trusted):
    bundle = ledger.bundle()
    bundle["entries"][0]["inclusion_proof"] = bundle["entries"][1]["inclusion_proof"]
    fails(bundle, "inclusion_proof_invalid", 0, trusted_keys=trusted)


def test_wrong_index(ledger, trusted):
    bundle = ledger.bundle([1])
    bundle["entries"][0]["index"] = 0
    fails(bundle, "inclusion_proof_invalid", 0, trusted_keys=trusted)
    bundle["entries"][0]["index"] = 5
    fails(bundle, "index_out_of_range", 5, trusted_keys=trusted)


def test_record_signed_by_an_unknown_key(ledger, trusted):
    """The log itself holds a record by a key the verifier does not trust."""
    ledger.append(cue_statement(5), seeded_key("rogue"))
    fails(ledger.bundle(), "unknown_key", 5, trusted_keys=trusted)
    # Entries before it still verify on their own.
    assert verify_bundle(ledger.bundle([0, 1, 2, 3, 4]), trusted_keys=trusted).tree_size == 6


def test_record_signed_by_a_real_key_outside_its_window():
    ledger = Ledger.with_rotation(entries=4, rotate_at=3)
    ledger.append(cue_statement(4), ledger.keys[0][0])  # the retired key signs entry 4
    ring = KeyRing(ledger.ledger_keys)
    fails(ledger.bundle(), "key_not_valid_for_entry", 4, trusted_keys=ring)


def test_entry_deleted_from_the_log(ledger, trusted):
    """The operator drops entry 2 and rebuilds: old proofs fail against the new checkpoint..."""
    rebuilt = Ledger(ledger.keys)
    for index in (0, 1, 3, 4):
        rebuilt.append(cue_statement(index))
    bundle = ledger.bundle()
    bundle["checkpoint"] = rebuilt.checkpoint()
    fails(bundle, "inclusion_proof_invalid", 0, trusted_keys=trusted)
    bundle = ledger.bundle([3])
    bundle["checkpoint"] = rebuilt.checkpoint()
    fails(bundle, "inclusion_proof_invalid", 3, trusted_keys=trusted)
    bundle = ledger.bundle([4])
    bundle["checkpoint"] = rebuilt.checkpoint()
    fails(bundle, "index_out_of_range", 4, trusted_keys=trusted)
    # ...and a rebuilt bundle that is consistent on its own fails against a checkpoint saved before the deletion.
    before = ledger.checkpoint(3)
    fresh = rebuilt.bundle(since=[3])
    assert verify_bundle(fresh, trusted_keys=trusted).tree_size == 4
    fails(fresh, "consistency_proof_invalid", previous_checkpoint=before, trusted_keys=trusted)
    fails(fresh, "previous_checkpoint_newer", previous_checkpoint=ledger.checkpoint(5), trusted_keys=trusted)


# ---------------------------------------------------------------- checkpoints


def test_consistent_previous_checkpoint(ledger, trusted):
    previous = ledger.checkpoint(2)
    report = verify_bundle(ledger.bundle(since=[2]), trusted_keys=trusted, previous_checkpoint=previous)
    assert report.previous_size == 2
    same = verify_bundle(ledger.bundle(), trusted_keys=trusted, previous_checkpoint=ledger.checkpoint())
    assert same.previous_size == 5
    empty = Checkpoint(ORIGIN, 0, Ledger.with_rotation(entries=0).tree.root()).body()
    assert (
        verify_bundle(
            ledger.bundle(), trusted_keys=trusted, previous_checkpoint=sign_note(empty, ORIGIN, ledger.keys[0][0])
        ).previous_size
        == 0
    )


def test_unchecked_consistency_proofs_are_mentioned(ledger, trusted):
    report = verify_bundle(ledger.bundle(since=[2, 4]), trusted_keys=trusted)
    assert any("2, 4" in warning for warning in report.warnings)


def test_checkpoint_from_a_forked_tree(ledger, trusted):
    fork = Ledger(ledger.keys)
    for index in range(3):
        fork.append(cue_statement(index, title="Forked" if index == 2 else None))
    forked_checkpoint = fork.checkpoint(3)
    bundle = ledger.bundle(since=[3])
    error = fails(bundle, "consistency_proof_invalid", previous_checkpoint=forked_checkpoint, trusted_keys=trusted)
    assert "does not extend the previous checkpoint" in error.detail
    # Same size, different root: a split view.
    fork.append(cue_statement(3))
    fork.append(cue_statement(4))
    fails(ledger.bundle(), "consistency_proof_invalid", previous_checkpoint=fork.checkpoint(), trusted_keys=trusted)


def test_missing_consistency_proof(ledger, trusted):
    error = fails(
        ledger.bundle(),
        "consistency_proof_missing",
        error=MalformedError,
        previous_checkpoint=ledger.checkpoint(2),
        trusted_keys=trusted,
    )
    assert "--since 2" in error.detail
    assert "GET /api/v1/ledger/consistency/?first=2&second=5" in error.detail


def test_tampered_checkpoint(ledger, trusted):
    bundle = ledger.bundle()
    body, signature = bundle["checkpoint"].split("\n\n")
    lines = body.split("\n")
    lines[1] = "6"
    bundle["checkpoint"] = "\n".join(lines) + "\n\n" + signature
    fails(bundle, "checkpoint_signature_invalid", trusted_keys=trusted)


def test_checkpoint_signed_by_an_unknown_key(ledger, trusted):
    bundle = ledger.bundle()
    bundle["checkpoint"] = ledger.checkpoint(private_key=seeded_key("stranger"))
    fails(bundle, "checkpoint_signature_invalid", trusted_keys=trusted)


def test_checkpoint_key_outside_its_window():
    ledger = Ledger.with_rotation(entries=5, rotate_at=3)
    bundle = ledger.bundle()
    bundle["checkpoint"] = ledger.checkpoint(private_key=ledger.keys[0][0])  # retired at 3, signs size 5
    fails(bundle, "checkpoint_key_not_valid", trusted_keys=KeyRing(ledger.ledger_keys))


def test_checkpoint_of_another_log(ledger):
    other_origin = "other.example/ledger"
    private_key = seeded_key("other-log")
    other_key = ledger_key(private_key, 0, None, name=other_origin)
    ring = KeyRing([*ledger.ledger_keys, other_key])
    bundle = ledger.bundle()
    body = Checkpoint(other_origin, 5, ledger.tree.root()).body()
    bundle["checkpoint"] = sign_note(body, other_origin, private_key)
    fails(bundle, "origin_mismatch", trusted_keys=ring)
    # A trusted key whose note name is not the checkpoint's origin does not count.
    bundle["checkpoint"] = sign_note(Checkpoint(ORIGIN, 5, ledger.tree.root()).body(), other_origin, private_key)
    fails(bundle, "checkpoint_signature_invalid", trusted_keys=ring)


def test_previous_checkpoint_of_another_log(ledger):
    other_origin = "other.example/ledger"
    private_key = seeded_key("other-log")
    ring = KeyRing([*ledger.ledger_keys, ledger_key(private_key, 0, None, name=other_origin)])
    previous = sign_note(Checkpoint(other_origin, 2, ledger.tree.root(2)).body(), other_origin, private_key)
    fails(ledger.bundle(since=[2]), "origin_mismatch", previous_checkpoint=previous, trusted_keys=ring)


# ---------------------------------------------------------------- malformed bundles


def test_malformed_json():
    for data in (b"", b"{", b"[]", b"\xff\xfe", b'{"format": "x", "format": "y"}'):
        with pytest.raises(MalformedError) as raised:
            load_bundle(data)
        assert raised.value.code == "bundle_malformed"


def _broken(ledger, path, value):
    bundle = copy.deepcopy(ledger.bundle())
    target = bundle
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return bundle


@pytest.mark.parametrize(
    ("path", "value", "names"),
    [
        (("format",), "cueledger-evidence-bundle/2", "format"),
        (("format",), KeyError, "format"),
        (("origin",), "", "origin"),
        (("checkpoint",), 5, "checkpoint"),
        (("keys",), {}, "keys"),
        (("keys", 0, "public_key"), "AAAA", "keys[0]"),
        (("entries",), None, "entries"),
        (("entries", 1), [], "entries[1]"),
        (("entries", 1, "index"), -1, "entries[1].index"),
        (("entries", 1, "index"), "1", "entries[1].index"),
        (("entries", 1, "index"), 0, "entries[1].index"),
        (("entries", 1, "envelope"), None, "entries[1].envelope"),
        (("consistency_proofs",), {}, "consistency_proofs"),
        (("consistency_proofs",), [{"old_size": 1}], "consistency_proofs[0].proof"),
        (("consistency_proofs",), [{"old_size": True, "proof": []}], "consistency_proofs[0].old_size"),
    ],
)
def test_malformed_fields_are_named(ledger, trusted, path, value, names):
    bundle = _broken(ledger, path, value)
    for check in (
        lambda: load_bundle(json.dumps(bundle).encode()),
        lambda: verify_bundle(bundle, trusted_keys=trusted),
    ):
        with pytest.raises(MalformedError) as raised:
            check()
        assert raised.value.code == "bundle_malformed"
        assert names in raised.value.detail


@pytest.mark.parametrize(
    "path, value, code",
    [
        (("entries", 1, "envelope"), "not base64!", "envelope_malformed"),
        (("entries", 1, "inclusion_proof"), "x", "inclusion_proof_invalid"),
        (("entries", 1, "inclusion_proof", 0), b64(b"short"), "inclusion_proof_invalid"),
    ],
)
def test_damage_inside_an_identified_entry_fails_verification_naming_it(ledger, trusted, path, value, code):
    """Once an entry is identified by its index, damage to its signed bytes or its proof is tampering: a failed
    check (exit 1) that names the entry, not a malformed file (exit 2)."""
    bundle = _broken(ledger, path, value)
    with pytest.raises(VerificationError) as raised:
        verify_bundle(bundle, trusted_keys=trusted)
    assert (raised.value.code, raised.value.index) == (code, 1)


def test_unknown_fields_are_ignored_with_a_warning(ledger, trusted):
    bundle = ledger.bundle()
    bundle["signed_by_the_studio"] = True
    report = verify_bundle(bundle, trusted_keys=trusted)
    assert any("signed_by_the_studio" in warning for warning in report.warnings)


def test_bundle_format_constant():
    assert BUNDLE_FORMAT == "cueledger-evidence-bundle/1"

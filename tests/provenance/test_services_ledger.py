"""The ledger over the database: appends, outbox, checkpoints, keys, and `ledger verify` against tampering."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import DatabaseError, IntegrityError, connection, transaction

from provenance import services
from provenance.errors import ProvenanceError
from provenance.keys import signers_forget
from provenance.ledger import Checkpoint as NoteCheckpoint
from provenance.ledger import (
    Ed25519Signer,
    MemoryNodeStore,
    MerkleTree,
    leaf_hash,
    make_statement,
    sign_envelope,
    sign_note,
    verify_bundle,
)
from provenance.models import Checkpoint, LedgerEntry, LedgerHead, MerkleNode, OutboxRecord, SigningKey
from provenance.records import PREDICATE_TYPES
from tests.provenance.factories import DIGEST, REFERENCE, clearance, triggers_off

pytestmark = pytest.mark.django_db


def test_appends_are_gapless_signed_and_checkpointed():
    entries = [clearance(n) for n in range(5)]
    assert [e.index for e in entries] == [0, 1, 2, 3, 4]
    checkpoint = services.checkpoint_create()
    assert checkpoint.size == 5 and checkpoint.note.startswith(f"{services.origin()}\n5\n")
    assert services.checkpoint_create() == checkpoint  # nothing new: the same checkpoint
    assert services.ledger_verify().ok
    assert MerkleNode.objects.count() == 5 + 2 + 1  # leaves, two pairs, one four-leaf subtree


def test_an_unknown_kind_or_an_invalid_predicate_is_refused():
    with pytest.raises(ProvenanceError) as caught:
        services.ledger_append(kind="gossip", subjects=[("x", DIGEST)], predicate={})
    assert caught.value.code == "record_kind_unknown"
    with pytest.raises(ProvenanceError) as caught:
        services.ledger_append(
            kind="clearance", subjects=[("x", DIGEST)], predicate={"decision": "maybe", "decided_by": "l", "reason": ""}
        )
    assert caught.value.code == "predicate_invalid" and "decision" in caught.value.detail
    assert LedgerEntry.objects.count() == 0


def test_outbox_records_commit_with_their_transaction_or_not_at_all():
    predicate = {"decision": "rejected", "decided_by": "legal", "reason": "too close to a reference"}
    with pytest.raises(RuntimeError), transaction.atomic():
        services.record_enqueue(kind="clearance", subjects=[("x", DIGEST)], predicate=predicate)
        raise RuntimeError("the change failed")
    assert OutboxRecord.objects.count() == 0
    services.record_enqueue(kind="clearance", subjects=[("x", DIGEST)], predicate=predicate)
    services.record_enqueue(kind="clearance", subjects=[("y", DIGEST)], predicate=predicate)
    assert services.outbox_drain() == 2
    assert services.outbox_drain() == 0  # drained records are not appended twice
    assert OutboxRecord.objects.count() == 0
    assert list(LedgerEntry.objects.values_list("index", flat=True)) == [0, 1]
    assert Checkpoint.objects.get().size == 2  # a drain ends with a checkpoint


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE provenance_ledgerentry SET kind = 'x'",
        "DELETE FROM provenance_ledgerentry",
        "UPDATE provenance_merklenode SET level = 9",
        "DELETE FROM provenance_merklenode",
        "DELETE FROM provenance_checkpoint",
    ],
)
def test_the_database_refuses_to_change_the_ledger(statement):
    clearance(0)
    services.checkpoint_create()
    with pytest.raises((IntegrityError, DatabaseError)) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert "append-only" in str(caught.value)


def test_rotation_keeps_old_entries_verifiable_and_hands_over_at_the_next_index():
    clearance(0)
    clearance(1)
    old = SigningKey.objects.get()
    new = services.key_rotate()
    later = clearance(3)
    old.refresh_from_db()
    assert (old.valid_until_index, new.valid_from_index) == (3, 3)
    assert LedgerEntry.objects.get(index=2).kind == "key" and LedgerEntry.objects.get(index=2).key_id == old.key_id
    assert later.key_id == new.key_id
    assert services.ledger_verify().ok
    bundle = services.bundle_build(reference=REFERENCE, subject={})
    report = verify_bundle(bundle, trusted_keys=services.keyring())
    assert [entry.key_id for entry in report.entries] == [old.key_id, old.key_id, new.key_id]


def test_a_wrong_passphrase_and_a_missing_key_directory_are_clear_errors(settings, tmp_path):
    clearance(0)
    signers_forget()
    settings.CUELEDGER_KEY_PASSPHRASE = "not the passphrase"
    with pytest.raises(ProvenanceError) as caught:
        clearance(1)
    assert caught.value.code == "key_passphrase_wrong"
    signers_forget()
    settings.CUELEDGER_KEY_DIR = tmp_path / "nowhere"
    with pytest.raises(ProvenanceError) as caught:
        clearance(1)
    assert caught.value.code == "key_directory_missing" and "CUELEDGER_KEY_DIR" in caught.value.detail
    signers_forget()


def test_keys_are_encrypted_at_rest(settings):
    clearance(0)
    key = SigningKey.objects.get()
    pem = (settings.CUELEDGER_KEY_DIR / f"{key.key_id}.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert (settings.CUELEDGER_KEY_DIR / f"{key.key_id}.pem").stat().st_mode & 0o777 == 0o600


# --- Tampering: each must make `ledger verify` fail and name the entry ---------------------------------------------


@pytest.fixture
def ledger():
    for n in range(6):
        clearance(n)
    services.checkpoint_create()
    assert services.ledger_verify().ok
    return LedgerEntry.objects.order_by("index")


def failure():
    report = services.ledger_verify()
    assert not report.ok
    return report


def test_a_changed_byte_in_an_envelope_is_found(ledger):
    envelope = bytearray(ledger.get(index=3).envelope)
    envelope[40] ^= 0x01
    with triggers_off():
        LedgerEntry.objects.filter(index=3).update(envelope=bytes(envelope))
    report = failure()
    assert report.index == 3


def test_a_changed_subject_resigned_by_an_unknown_key_is_found(ledger):
    forged = sign_envelope(
        make_statement(
            [("cue-3.mid", "cd" * 32)],
            PREDICATE_TYPES["clearance"],
            {"decision": "cleared", "decided_by": "legal", "reason": "decision 3"},
        ),
        Ed25519Signer(Ed25519PrivateKey.generate()),
    )
    with triggers_off():
        LedgerEntry.objects.filter(index=3).update(envelope=forged, leaf_hash=leaf_hash(forged).hex())
    report = failure()
    assert (report.index, report.code) == (3, "unknown_key")


def test_a_reordered_pair_is_found(ledger):
    second, third = bytes(ledger.get(index=1).envelope), bytes(ledger.get(index=2).envelope)
    with triggers_off():
        LedgerEntry.objects.filter(index=1).update(envelope=third, leaf_hash=leaf_hash(third).hex())
        LedgerEntry.objects.filter(index=2).update(envelope=second, leaf_hash=leaf_hash(second).hex())
    report = failure()
    assert report.index == 1 and report.code == "tree_node_mismatch"


def test_an_entry_whose_stored_key_is_not_its_signers_is_found(ledger):
    with triggers_off():
        LedgerEntry.objects.filter(index=4).update(key_id="ab" * 32)
    report = failure()
    assert (report.index, report.code) == (4, "entry_key_mismatch")


def test_a_deleted_entry_is_found(ledger):
    with triggers_off():
        LedgerEntry.objects.filter(index=2).delete()
    report = failure()
    assert (report.index, report.code) == (2, "entry_missing")


def test_a_record_signed_outside_its_keys_window_is_found(ledger):
    old = SigningKey.objects.get()
    services.key_rotate()  # entry 6; the old key is valid for [0, 7)
    late = sign_envelope(
        make_statement(
            [("late.mid", DIGEST)],
            PREDICATE_TYPES["clearance"],
            {"decision": "cleared", "decided_by": "legal", "reason": "late"},
        ),
        services.signer_for(old.key_id),
    )
    clearance(7)
    with triggers_off():
        LedgerEntry.objects.filter(index=7).update(envelope=late, leaf_hash=leaf_hash(late).hex())
    report = failure()
    assert (report.index, report.code) == (7, "key_not_valid_for_entry")


def test_a_checkpoint_from_a_forked_tree_is_found(ledger):
    fork = MerkleTree(MemoryNodeStore())
    for entry in ledger:
        fork.append(leaf_hash(bytes(entry.envelope)) if entry.index != 4 else b"\x00" * 32)
    signer = services.signer_for(SigningKey.objects.get().key_id)
    body = NoteCheckpoint(services.origin(), 6, fork.root()).body()
    with triggers_off():
        Checkpoint.objects.filter(size=6).update(
            note=sign_note(body, services.origin(), signer), root_hash=fork.root().hex()
        )
    report = failure()
    assert report.code == "checkpoint_root_mismatch" and report.index == 5


def test_the_head_claiming_more_entries_than_exist_is_found(ledger):
    LedgerHead.objects.filter(pk=1).update(size=7)
    assert failure().code == "size_mismatch"


def test_a_reopened_key_window_is_found(ledger):
    old = SigningKey.objects.get()
    services.key_rotate()
    SigningKey.objects.filter(pk=old.pk).update(valid_until_index=None)  # keys are not append-only: the check is
    report = failure()
    assert report.code == "key_window_mismatch"


def test_an_attacker_key_slipped_into_the_keys_table_is_found(ledger):
    intruder = Ed25519Signer(Ed25519PrivateKey.generate())
    SigningKey.objects.create(
        key_id=intruder.key_id, name=services.origin(), public_key=intruder.public_key_bytes, valid_from_index=0
    )
    assert failure().code == "key_unexplained"


def test_a_tampered_head_border_is_found_and_no_checkpoint_is_signed_over_it(ledger):
    clearance(6)
    head = LedgerHead.objects.get()
    head.frontier = [[level, index, "00" * 32] for level, index, _ in head.frontier]
    head.save()
    assert failure().code == "head_frontier_mismatch"
    with pytest.raises(ProvenanceError) as caught:
        services.checkpoint_create()
    assert caught.value.code == "ledger_head_corrupt"


def test_a_deleted_tree_node_is_found(ledger):
    with triggers_off():
        MerkleNode.objects.filter(level=1, index=1).delete()
    assert failure().code == "tree_node_missing"


def test_rotation_destroys_the_retired_private_key_once_committed(settings, django_capture_on_commit_callbacks):
    clearance(0)
    old = SigningKey.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        new = services.key_rotate()
    assert not (settings.CUELEDGER_KEY_DIR / f"{old.key_id}.pem").exists()
    assert (settings.CUELEDGER_KEY_DIR / f"{new.key_id}.pem").exists()
    clearance(2)  # the new key signs
    assert services.ledger_verify().ok

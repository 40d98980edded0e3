"""Content Credentials: dev CA, signing identities, embedded and detached manifests, offline validation."""

import datetime as dt
import socket
import stat
import threading

import c2pa
import mido
import numpy as np
import pytest
import soundfile
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provenance import content_credentials as cc

SAMPLE_RATE = 44_100
ENVELOPE = "3f" * 32
NOT_ALLOWED = {
    "cawg.ai_generative_training": "notAllowed",
    "cawg.ai_training": "notAllowed",
    "cawg.data_mining": "notAllowed",
    "cawg.ai_inference": "notAllowed",
}
MODEL = {"name": "cuegen", "version": "1.2.0", "digest": "sha256:" + "ab" * 32}


def spec_for(media_type="audio/flac", *, generated=True, **overrides):
    values = {
        "title": "Night chase, cue 4",
        "media_type": media_type,
        "generated": generated,
        "model": MODEL if generated else None,
        "training_mining": NOT_ALLOWED,
        "ledger": {"origin": "ledger.cueledger.test", "index": 42, "envelope_sha256": ENVELOPE},
    }
    return cc.CredentialSpec(**{**values, **overrides})


@pytest.fixture(scope="module")
def dev_ca(tmp_path_factory):
    return cc.dev_ca_create(tmp_path_factory.mktemp("c2pa"))


@pytest.fixture(scope="module")
def identity(dev_ca):
    return cc.identity_load(dev_ca.signing_chain, dev_ca.signing_key)


@pytest.fixture(scope="module")
def anchors(dev_ca):
    return dev_ca.ca_cert.read_bytes()


@pytest.fixture
def flac(tmp_path):
    seconds = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    stereo = np.stack([np.sin(2 * np.pi * 220 * seconds), np.sin(2 * np.pi * 330 * seconds)], axis=1) * 0.4
    path = tmp_path / "cue.flac"
    soundfile.write(path, stereo, SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.fixture
def signed(flac, identity):
    dest = flac.with_name("cue.signed.flac")
    cc.embed(flac, dest, spec_for(), identity)
    return dest


@pytest.fixture
def midi(tmp_path):
    song = mido.MidiFile()
    track = mido.MidiTrack()
    song.tracks.append(track)
    for note in (60, 64, 67):
        track.append(mido.Message("note_on", note=note, velocity=80, time=0))
        track.append(mido.Message("note_off", note=note, velocity=0, time=240))
    path = tmp_path / "cue.mid"
    song.save(path)
    return path


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def record_connections(listener, contacted):
    """Note every connection to ``listener`` until it is closed."""
    try:
        while True:
            connection, _ = listener.accept()
            contacted.append(connection)
            connection.close()
    except OSError:
        return  # the test closed the listener


def self_signed_identity(*, ca):
    """A leaf that signs itself, as `openssl req -x509` makes one (ca=True) or with CA:FALSE (ca=False)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Self-signed cue signer")])
    now = dt.datetime.now(tz=dt.UTC)
    usage = x509.KeyUsage(True, False, False, False, False, ca, False, False, False)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(cc.CLAIM_SIGNER_EKUS)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cc.SigningIdentity(certificate.public_bytes(serialization.Encoding.PEM), key_pem, "es256")


# --- Embedded FLAC ---------------------------------------------------------------------------------------------------


def test_a_signed_flac_is_trusted_with_the_dev_ca_and_says_it_was_generated(signed, anchors):
    report = cc.read(signed, trust_anchors_pem=anchors)

    assert report.valid and report.trusted and report.embedded
    assert report.validation_state == "Trusted"
    assert report.errors == []
    assert report.title == "Night chase, cue 4"
    [created] = report.actions
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == cc.TRAINED_ALGORITHMIC_MEDIA


def test_the_manifest_carries_training_mining_ledger_and_model(signed, anchors):
    report = cc.read(signed, trust_anchors_pem=anchors)

    entries = report.assertions["cawg.training-mining"]["entries"]
    assert entries == {key: {"use": "notAllowed"} for key in NOT_ALLOWED}
    assert report.assertions["com.cueledger.ledger"] == {
        "origin": "ledger.cueledger.test",
        "index": 42,
        "envelope_sha256": ENVELOPE,
    }
    [model] = report.ingredients
    assert model["relationship"] == "inputTo"
    assert model["data_types"][0]["type"] == "c2pa.types.model"
    assert model["metadata"]["com.cueledger.model"] == MODEL


def test_embedding_leaves_the_audio_frames_untouched(flac, signed):
    original, original_rate = soundfile.read(flac, dtype="int16")
    embedded, embedded_rate = soundfile.read(signed, dtype="int16")

    assert embedded_rate == original_rate == SAMPLE_RATE
    assert embedded.shape == original.shape == (3 * SAMPLE_RATE, 2)
    assert np.array_equal(embedded, original)
    assert soundfile.info(signed).subtype == "PCM_16"


def test_embed_returns_the_manifest_store_that_also_validates_as_a_sidecar(flac, identity, anchors, tmp_path):
    store = cc.embed(flac, tmp_path / "copy.flac", spec_for(), identity)

    assert store[4:8] == b"jumb"  # a JUMBF superbox: the C2PA manifest store
    assert cc.read(tmp_path / "copy.flac", trust_anchors_pem=anchors, manifest_store=store).valid


def test_an_imported_cue_is_opened_not_claimed_as_generated(flac, identity, anchors, tmp_path):
    dest = tmp_path / "imported.flac"
    cc.embed(flac, dest, spec_for(generated=False), identity)

    report = cc.read(dest, trust_anchors_pem=anchors)
    assert report.valid
    [opened] = report.actions
    assert opened["action"] == "c2pa.opened"
    assert "digitalSourceType" not in opened
    [parent] = report.ingredients
    assert parent["relationship"] == "parentOf"
    assert cc.TRAINED_ALGORITHMIC_MEDIA not in str(report.active_manifest)


# --- Trust -----------------------------------------------------------------------------------------------------------


def test_without_a_trust_anchor_the_signer_is_not_trusted(signed):
    report = cc.read(signed, trust_anchors_pem=None)

    assert not report.valid and not report.trusted
    assert report.validation_state == "Valid"  # intact, but from an unknown signer
    assert any(error.startswith("signingCredential.untrusted") for error in report.errors)


def test_another_ca_does_not_vouch_for_our_signer(signed, tmp_path):
    other = cc.dev_ca_create(tmp_path / "other", organisation="Somebody else")

    report = cc.read(signed, trust_anchors_pem=other.ca_cert.read_bytes())

    assert not report.valid
    assert any(error.startswith("signingCredential.untrusted") for error in report.errors)


def test_a_self_signed_ca_style_leaf_is_rejected_when_signing(flac, tmp_path):
    with pytest.raises(cc.CredentialsError) as raised:
        cc.embed(flac, tmp_path / "out.flac", spec_for(), self_signed_identity(ca=True))

    assert raised.value.code == "signing_failed"
    assert "self-signed" in raised.value.detail


def test_a_self_signed_end_entity_leaf_is_untrusted(flac, anchors, tmp_path):
    dest = tmp_path / "out.flac"
    rogue = self_signed_identity(ca=False)
    cc.embed(flac, dest, spec_for(), rogue)

    for trust in (None, anchors):
        report = cc.read(dest, trust_anchors_pem=trust)
        assert not report.valid
        assert any(error.startswith("signingCredential.untrusted") for error in report.errors)
    # Nor can it be smuggled in as its own anchor: anchors must be CA certificates.
    with pytest.raises(cc.CredentialsError) as raised:
        cc.read(dest, trust_anchors_pem=rogue.cert_chain_pem)
    assert raised.value.code == "trust_anchors_invalid"


def test_one_flipped_audio_byte_breaks_the_hash(signed, anchors):
    flip_byte(signed, signed.stat().st_size - 100)  # inside the last FLAC audio frame

    report = cc.read(signed, trust_anchors_pem=anchors)

    assert not report.valid
    assert report.validation_state == "Invalid"
    assert any(error.startswith("assertion.dataHash.mismatch") for error in report.errors)


def test_an_unsigned_file_has_no_credentials(flac, anchors):
    report = cc.read(flac, trust_anchors_pem=anchors)

    assert not report.valid
    assert report.validation_state == "NoCredentials"


# --- Sidecars --------------------------------------------------------------------------------------------------------


def test_supported_embedding_formats():
    assert cc.supports_embedding("audio/flac")
    assert not cc.supports_embedding("audio/midi")
    assert not cc.supports_embedding("audio/ogg")
    assert not cc.supports_embedding("application/c2pa")


def test_a_midi_sidecar_validates_against_the_midi_bytes_only(midi, identity, anchors):
    store = cc.sidecar(midi, spec_for("audio/midi"), identity)

    report = cc.read(midi, trust_anchors_pem=anchors, manifest_store=store)
    assert report.valid and report.embedded is False
    assert report.title == "Night chase, cue 4"

    flip_byte(midi, len(midi.read_bytes()) - 5)
    tampered = cc.read(midi, trust_anchors_pem=anchors, manifest_store=store)
    assert not tampered.valid
    assert any(error.startswith("assertion.dataHash.mismatch") for error in tampered.errors)


def test_ogg_cannot_embed_so_the_preview_gets_a_sidecar(tmp_path, identity, anchors):
    preview = tmp_path / "preview.ogg"
    tone = np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)[:, None].repeat(2, axis=1) * 0.3
    soundfile.write(preview, tone, SAMPLE_RATE, format="OGG", subtype="VORBIS")

    with pytest.raises(cc.CredentialsError) as raised:
        cc.embed(preview, tmp_path / "x.ogg", spec_for("audio/ogg"), identity)
    assert raised.value.code == "embedding_unsupported"

    store = cc.sidecar(preview, spec_for("audio/ogg"), identity)
    assert cc.read(preview, trust_anchors_pem=anchors, manifest_store=store).valid


# --- Identities and the dev CA ---------------------------------------------------------------------------------------


def test_dev_ca_issues_a_c2pa_claim_signer_from_a_separate_root(dev_ca):
    root = x509.load_pem_x509_certificate(dev_ca.ca_cert.read_bytes())
    [leaf] = x509.load_pem_x509_certificates(dev_ca.signing_chain.read_bytes())

    leaf.verify_directly_issued_by(root)
    assert leaf.issuer == root.subject != leaf.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    ekus = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert cc.EKU_C2PA_CLAIM_SIGNING in ekus
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_dev_ca_key_is_private_and_files_are_not_overwritten(tmp_path):
    files = cc.dev_ca_create(tmp_path)
    assert stat.S_IMODE(files.signing_key.stat().st_mode) == 0o600
    first = files.signing_chain.read_bytes()

    with pytest.raises(cc.CredentialsError) as raised:
        cc.dev_ca_create(tmp_path)
    assert raised.value.code == "exists"
    assert files.signing_chain.read_bytes() == first

    cc.dev_ca_create(tmp_path, overwrite=True)
    assert files.signing_chain.read_bytes() != first
    assert stat.S_IMODE(files.signing_key.stat().st_mode) == 0o600


def test_identity_load_picks_the_algorithm_from_the_key(identity):
    assert identity.algorithm == "es256"
    assert identity.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_identity_load_reports_a_missing_key(dev_ca, tmp_path):
    with pytest.raises(cc.CredentialsError) as raised:
        cc.identity_load(dev_ca.signing_chain, tmp_path / "nope.pem")
    assert raised.value.code == "key_missing"


def test_identity_load_reports_a_missing_or_garbled_chain(dev_ca, tmp_path):
    with pytest.raises(cc.CredentialsError) as raised:
        cc.identity_load(tmp_path / "nope.pem", dev_ca.signing_key)
    assert raised.value.code == "chain_missing"

    garbled = tmp_path / "garbled.pem"
    garbled.write_text("not a certificate\n")
    with pytest.raises(cc.CredentialsError) as raised:
        cc.identity_load(garbled, dev_ca.signing_key)
    assert raised.value.code == "chain_invalid"


def test_identity_load_rejects_a_key_that_is_not_the_leafs(dev_ca, tmp_path):
    other = cc.dev_ca_create(tmp_path / "other")

    with pytest.raises(cc.CredentialsError) as raised:
        cc.identity_load(dev_ca.signing_chain, other.signing_key)
    assert raised.value.code == "key_mismatch"


def test_identity_load_rejects_a_self_signed_leaf(tmp_path):
    rogue = self_signed_identity(ca=False)
    (tmp_path / "chain.pem").write_bytes(rogue.cert_chain_pem)
    (tmp_path / "key.pem").write_bytes(rogue.private_key_pem)

    with pytest.raises(cc.CredentialsError) as raised:
        cc.identity_load(tmp_path / "chain.pem", tmp_path / "key.pem")
    assert raised.value.code == "leaf_self_signed"


# --- Specs -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"training_mining": {"cawg.ai_training": "maybe"}},
        {"training_mining": {"cawg.anything_else": "allowed"}},
        {"ledger": {"origin": "x", "index": 1, "envelope_sha256": "XYZ"}},
        {"ledger": {"origin": "x", "index": -1, "envelope_sha256": ENVELOPE}},
        {"generated": False, "model": MODEL},
        {"model": {"name": "cuegen"}},
    ],
)
def test_a_spec_that_would_make_a_misleading_manifest_is_refused(overrides):
    with pytest.raises(cc.CredentialsError) as raised:
        spec_for(**overrides)
    assert raised.value.code == "spec_invalid"


def test_the_manifest_definition_is_plain_json_of_what_gets_signed():
    definition = cc.manifest_definition(spec_for(), when=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC))

    assert definition["claim_generator_info"] == [{"name": "Cueledger", "version": "0.1"}]
    assert [assertion["label"] for assertion in definition["assertions"]] == [
        "c2pa.actions.v2",
        "com.cueledger.ledger",
        "cawg.training-mining",
    ]
    assert definition["assertions"][0]["data"]["actions"][0]["when"] == "2025-01-02T03:04:05+00:00"


def test_reading_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(cc.CredentialsError) as raised:
        cc.read(tmp_path / "gone.flac", trust_anchors_pem=None)
    assert raised.value.code == "file_missing"


def test_reading_garbage_as_a_sidecar_reports_unreadable(midi, anchors):
    report = cc.read(midi, trust_anchors_pem=anchors, manifest_store=b"not a manifest store")
    assert not report.valid
    assert report.validation_state == "Unreadable"


def test_a_midi_file_alone_points_to_its_sidecar(midi, anchors):
    report = cc.read(midi, trust_anchors_pem=anchors)
    assert report.validation_state == "NoCredentials"
    assert "sidecar" in report.errors[0]


def test_a_signed_file_without_an_extension_is_still_read(signed, anchors, tmp_path):
    copy = tmp_path / "copy-without-extension"
    copy.write_bytes(signed.read_bytes())

    assert cc.read(copy, trust_anchors_pem=anchors).valid  # container detected from the bytes, not the name


def test_reading_never_fetches_a_remote_manifest(flac, identity, anchors, tmp_path):
    """A file may point to a manifest on a server; read() must not contact it (c2pa's default would)."""
    listener = socket.create_server(("127.0.0.1", 0))
    contacted = []
    threading.Thread(target=record_connections, args=(listener, contacted), daemon=True).start()
    pointer = tmp_path / "points-elsewhere.flac"
    info = c2pa.C2paSignerInfo(identity.algorithm, identity.cert_chain_pem, identity.private_key_pem, None)
    with c2pa.Builder(cc.manifest_definition(spec_for())) as builder, c2pa.Signer.from_info(info) as signer:
        builder.set_no_embed()
        builder.set_remote_url(f"http://127.0.0.1:{listener.getsockname()[1]}/manifest.c2pa")
        with flac.open("rb") as source, pointer.open("w+b") as dest:
            builder.sign(signer, "audio/flac", source, dest)

    report = cc.read(pointer, trust_anchors_pem=anchors)

    assert not report.valid
    assert "remote" in report.errors[0].lower()
    assert contacted == []
    listener.close()

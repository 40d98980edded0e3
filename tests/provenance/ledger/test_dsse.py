"""DSSE v1: PAE and envelopes, against the DSSE protocol's example and published test vectors."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provenance.ledger import (
    PAYLOAD_TYPE,
    Ed25519Signer,
    MalformedError,
    VerificationError,
    b64,
    canonical_json,
    key_id,
    open_envelope,
    pae,
    sign_envelope,
)
from provenance.ledger.note import verify_ed25519

from .helpers import load_vector, seeded_key

V = load_vector("dsse.json")


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(V["keys"][name]["seed"]))


def lenient_b64(text: str) -> bytes:
    """DSSE's own rule (either alphabet, padding optional), only to read the published vectors."""
    import base64

    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def test_pae_of_the_protocol_example():
    example = V["protocol_example"]
    assert pae(example["payload_type"], example["payload"].encode()) == example["pae"].encode()


def test_rfc8032_keys():
    for name in ("A", "B"):
        assert key(name).public_key().public_bytes_raw().hex() == V["keys"][name]["public"]


@pytest.mark.parametrize("vector", V["vectors"], ids=lambda v: v["id"])
def test_published_vectors_pae_and_signature(vector):
    envelope = vector["envelope"]
    payload = lenient_b64(envelope["payload"])
    signature = envelope["signatures"][0]
    public_key = bytes.fromhex(V["keys"][signature["keyid"]]["public"])
    ours = pae(envelope["payloadType"], payload)
    if vector["expect"] == "accept":
        assert ours.hex() == vector["pae"]
        assert verify_ed25519(public_key, lenient_b64(signature["sig"]), ours)
    else:
        # Rejected either because the signature does not cover this type, or the type is unsupported.
        covered = verify_ed25519(public_key, lenient_b64(signature["sig"]), ours)
        assert not covered or envelope["payloadType"] not in vector["supportedPayloadTypes"]


def rekeyed(vector_id: str) -> tuple[bytes, dict[str, bytes], dict]:
    """A published vector turned into a Cueledger envelope: SHA-256 keyid, canonical JSON."""
    vector = next(v for v in V["vectors"] if v["id"] == vector_id)
    signature = vector["envelope"]["signatures"][0]
    public_key = bytes.fromhex(V["keys"][signature["keyid"]]["public"])
    envelope = dict(vector["envelope"], signatures=[{"keyid": key_id(public_key), "sig": signature["sig"]}])
    return canonical_json(envelope), {key_id(public_key): public_key}, vector


def test_open_published_envelope_rekeyed():
    envelope, keys, _ = rekeyed("single-signature")
    payload, verified = open_envelope(envelope, keys, payload_type=PAYLOAD_TYPE)
    assert payload == b'{"_type":"https://in-toto.io/Statement/v1"}'
    assert verified == next(iter(keys))


def test_sign_envelope_reproduces_the_published_signature():
    envelope, _, vector = rekeyed("single-signature")
    payload = lenient_b64(vector["envelope"]["payload"])
    assert sign_envelope(payload, Ed25519Signer(key("A"))) == envelope


def test_non_ascii_payload_type_and_empty_payload():
    for vector_id in ("non-ascii-payload-type", "empty-payload"):
        envelope, keys, vector = rekeyed(vector_id)
        payload, _ = open_envelope(envelope, keys)
        assert payload == lenient_b64(vector["envelope"]["payload"])


def test_swapped_payload_type_fails_the_signature():
    envelope, keys, _ = rekeyed("payload-type-swapped")
    with pytest.raises(VerificationError) as raised:
        open_envelope(envelope, keys)
    assert raised.value.code == "envelope_signature_invalid"


def test_unexpected_payload_type_is_refused_after_the_signature():
    envelope, keys, _ = rekeyed("empty-payload-type")
    open_envelope(envelope, keys)  # validly signed...
    with pytest.raises(MalformedError) as raised:  # ...but not a type this ledger logs
        open_envelope(envelope, keys, payload_type=PAYLOAD_TYPE)
    assert raised.value.code == "payload_type_unsupported"


def test_url_safe_base64_is_refused_on_purpose():
    """DSSE verifiers accept either alphabet; a ledger entry has exactly one encoding, so this one does not."""
    envelope, keys, _ = rekeyed("url-safe-base64")
    with pytest.raises(MalformedError) as raised:
        open_envelope(envelope, keys)
    assert raised.value.code == "envelope_malformed"


# ---------------------------------------------------------------- our envelopes


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer(seeded_key("dsse"))


def test_key_id_is_sha256_of_the_raw_key(signer):
    assert len(signer.key_id) == 64
    assert signer.key_id == key_id(signer.public_key_bytes)
    assert signer.public_key_bytes == seeded_key("dsse").public_key().public_bytes_raw()


def test_round_trip(signer):
    envelope = sign_envelope(b'{"hello": "world"}', signer)
    obj = json.loads(envelope)
    assert list(obj) == ["payload", "payloadType", "signatures"]
    assert obj["payloadType"] == PAYLOAD_TYPE
    assert canonical_json(obj) == envelope
    assert open_envelope(envelope, {signer.key_id: signer.public_key_bytes}) == (b'{"hello": "world"}', signer.key_id)


def test_unknown_key_and_bad_signature(signer):
    envelope = sign_envelope(b"payload", signer)
    with pytest.raises(VerificationError) as raised:
        open_envelope(envelope, {})
    assert raised.value.code == "unknown_key"
    other = seeded_key("other").public_key().public_bytes_raw()
    with pytest.raises(VerificationError) as raised:
        open_envelope(envelope, {signer.key_id: other})
    assert raised.value.code == "envelope_signature_invalid"


def test_changed_payload_fails(signer):
    obj = json.loads(sign_envelope(b"payload", signer))
    obj["payload"] = b64(b"pAyload")
    with pytest.raises(VerificationError) as raised:
        open_envelope(canonical_json(obj), {signer.key_id: signer.public_key_bytes})
    assert raised.value.code == "envelope_signature_invalid"


def test_reserialised_envelope_cannot_pose_as_the_logged_one(signer):
    envelope = sign_envelope(b"payload", signer)
    obj = json.loads(envelope)
    keys = {signer.key_id: signer.public_key_bytes}
    variants = [
        json.dumps(obj).encode(),  # whitespace
        envelope + b"\n",  # trailing whitespace
        json.dumps({k: obj[k] for k in reversed(list(obj))}, separators=(",", ":")).encode(),  # member order
        envelope.replace(b'"payloadType"', b'"payload\\u0054ype"'),  # an escape
        b"\xef\xbb\xbf" + envelope,  # a byte-order mark
    ]
    for variant in variants:
        assert variant != envelope
        with pytest.raises(MalformedError) as raised:
            open_envelope(variant, keys)
        assert raised.value.code == "envelope_malformed"


@pytest.mark.parametrize(
    "envelope",
    [
        b"",
        b"not json",
        b"[]",
        b'{"payload":"","payloadType":"t"}',
        b'{"payload":"","payloadType":"t","signatures":[]}',
        b'{"payload":"","payloadType":"t","signatures":[{"sig":""}]}',
        b'{"payload":"","payloadType":"t","signatures":[{"keyid":1,"sig":""}]}',
        b'{"payload":"!!","payloadType":"t","signatures":[{"keyid":"k","sig":""}]}',
        b'{"payload":"","payloadType":"t","signatures":[{"keyid":"k","sig":"A"}]}',
        b'{"extra":1,"payload":"","payloadType":"t","signatures":[{"keyid":"k","sig":""}]}',
        b'{"payload":"","payload":"","payloadType":"t","signatures":[{"keyid":"k","sig":""}]}',
        b'{"payload":"","payloadType":NaN,"signatures":[{"keyid":"k","sig":""}]}',
        b'{"payload":"","payloadType":"\xff","signatures":[{"keyid":"k","sig":""}]}',
    ],
)
def test_malformed_envelopes(envelope):
    with pytest.raises(MalformedError) as raised:
        open_envelope(envelope, {})
    assert raised.value.code == "envelope_malformed"


def test_general_path_accepts_canonical_envelopes_with_escapes(signer):
    """Payload types needing JSON escapes skip the fast path but are still canonical."""
    envelope = sign_envelope(b"x", signer, payload_type='type "quoted" \\ \u00e9')
    assert open_envelope(envelope, {signer.key_id: signer.public_key_bytes})[0] == b"x"


def test_multiple_signatures(signer):
    second = Ed25519Signer(seeded_key("second"))
    payload = b"payload"
    obj = json.loads(sign_envelope(payload, signer))
    obj["signatures"].append({"keyid": second.key_id, "sig": b64(second.sign(pae(PAYLOAD_TYPE, payload)))})
    envelope = canonical_json(obj)
    assert open_envelope(envelope, {second.key_id: second.public_key_bytes})[1] == second.key_id
    both = {signer.key_id: signer.public_key_bytes, second.key_id: second.public_key_bytes}
    assert open_envelope(envelope, both)[1] == signer.key_id
    obj["signatures"][1]["sig"] = obj["signatures"][0]["sig"]
    with pytest.raises(VerificationError):  # a known key's bad signature is never outvoted
        open_envelope(canonical_json(obj), both)


class _NamedSigner:
    """A real Ed25519 signer under any key id, to reach every spelling of the envelope's strings."""

    def __init__(self, signer: Ed25519Signer, name: str) -> None:
        self.key_id, self._signer = name, signer

    def sign(self, message: bytes) -> bytes:
        return self._signer.sign(message)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=64), payload_type=st.text(max_size=24), name=st.text(max_size=24))
def test_signed_envelopes_are_exactly_their_canonical_json(signer, payload, payload_type, name):
    """The envelope is written directly in the common case; it must always be RFC 8785's bytes all the same."""
    try:
        envelope = sign_envelope(payload, _NamedSigner(signer, name), payload_type=payload_type)
    except MalformedError:  # lone surrogates: not JSON, refused the same way on either path
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in payload_type + name)
        return
    obj = json.loads(envelope)
    assert canonical_json(obj) == envelope
    assert obj["payloadType"] == payload_type and obj["signatures"][0]["keyid"] == name

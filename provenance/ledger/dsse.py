"""DSSE v1 envelopes (secure-systems-lab/dsse, protocol.md and envelope.md) signed with Ed25519.

Each ledger entry is the exact RFC 8785 bytes of one envelope; its Merkle leaf is ``leaf_hash`` of those bytes. The
envelope format is stricter than DSSE requires — canonical JSON, standard base64, a ``keyid`` on every signature —
because the bytes themselves are what the log commits to: a verifier must never accept a re-encoded variant of a
logged envelope as if it were the logged one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .encoding import b64, canonical_json, loads_json, unb64
from .errors import MalformedError, VerificationError
from .note import verify_ed25519

__all__ = [
    "PAYLOAD_TYPE",
    "Ed25519Signer",
    "Signer",
    "key_id",
    "open_envelope",
    "pae",
    "sign_envelope",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""The DSSE payload type of an in-toto Statement (in-toto attestation spec v1, envelope.md)."""

# A canonical single-signature envelope whose strings need no JSON escaping. Bytes that match this are exactly
# canonical_json of what they denote, so the common case skips the general parse-and-reserialise check, which would
# otherwise cost more than hashing the entry (check_entry runs over whole ledgers).
_PLAIN = rb"[\x20\x21\x23-\x5b\x5d-\x7e]*"
_FAST_ENVELOPE = re.compile(
    rb'\{"payload":"([A-Za-z0-9+/=]*)","payloadType":"(' + _PLAIN + rb')",'
    rb'"signatures":\[\{"keyid":"(' + _PLAIN + rb')","sig":"([A-Za-z0-9+/=]*)"\}\]\}'
)


def pae(payload_type: str, payload: bytes) -> bytes:
    """PAE(UTF8(type), body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body (DSSE protocol.md, "PAE").

    LEN is the ASCII decimal byte length without leading zeros. This is the exact message each signature covers, so
    neither the payload type nor the payload can be changed or shifted between the two without breaking it.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def key_id(public_key: bytes) -> str:
    """The DSSE ``keyid`` of an Ed25519 key in this ledger: lowercase hex SHA-256 of the raw 32-byte public key.

    DSSE leaves the KEYID scheme to the parties (protocol.md, "KEYID"); hashing the whole key makes it unambiguous.
    """
    return hashlib.sha256(public_key).hexdigest()


class Signer(Protocol):
    """Anything that signs DSSE PAE bytes with an Ed25519 key — an in-process key, a KMS or an HSM."""

    key_id: str

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature (RFC 8032) of ``message``."""
        ...


class Ed25519Signer(Signer):
    """A :class:`Signer` holding an Ed25519 private key in process memory."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key().public_bytes_raw()
        self.key_id = key_id(self._public_key)

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature (RFC 8032) of ``message``."""
        return self._private_key.sign(message)


def sign_envelope(payload: bytes, signer: Signer, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """Sign ``payload`` and return the canonical JSON bytes of its DSSE envelope (DSSE protocol.md, "To sign").

    ``{"payload": b64(payload), "payloadType": payload_type, "signatures": [{"keyid", "sig"}]}`` serialised with RFC
    8785; the signature covers :func:`pae` of the type and payload. These bytes are a ledger entry.
    """
    signature = signer.sign(pae(payload_type, payload))
    payload_b64, sig_b64 = b64(payload), b64(signature)
    # The common case in the form _FAST_ENVELOPE recognises, which is canonical_json's output for these values
    # whenever it matches; anything else goes through canonical_json.
    fast = (
        f'{{"payload":"{payload_b64}","payloadType":"{payload_type}",'
        f'"signatures":[{{"keyid":"{signer.key_id}","sig":"{sig_b64}"}}]}}'
    ).encode()
    if _FAST_ENVELOPE.fullmatch(fast):
        return fast
    envelope = {
        "payload": payload_b64,
        "payloadType": payload_type,
        "signatures": [{"keyid": signer.key_id, "sig": sig_b64}],
    }
    return canonical_json(envelope)


def _malformed(detail: str) -> MalformedError:
    return MalformedError("envelope_malformed", detail)


def _parse(envelope: bytes) -> tuple[bytes, str, list[tuple[str, bytes]]]:
    """Decode an envelope into ``(payload, payload type, [(keyid, signature)])``, refusing non-canonical bytes."""
    if not isinstance(envelope, bytes):
        raise _malformed(f"an envelope is bytes, not {type(envelope).__name__}")
    fast = _FAST_ENVELOPE.fullmatch(envelope)
    if fast is not None:
        payload_b64, payload_type, keyid, sig_b64 = (group.decode("ascii") for group in fast.groups())
        try:
            return unb64(payload_b64), payload_type, [(keyid, unb64(sig_b64))]
        except MalformedError as exc:
            raise _malformed(f"bad base64 in the envelope: {exc.detail}") from None
    obj: Any = loads_json(envelope, code="envelope_malformed", what="the envelope")
    if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
        raise _malformed('an envelope is an object with exactly "payload", "payloadType" and "signatures"')
    payload_b64, payload_type, signatures = obj["payload"], obj["payloadType"], obj["signatures"]
    if not isinstance(payload_b64, str) or not isinstance(payload_type, str):
        raise _malformed('"payload" and "payloadType" are strings')
    if not isinstance(signatures, list) or not signatures:
        raise _malformed('"signatures" is a non-empty list')
    parsed: list[tuple[str, bytes]] = []
    for number, item in enumerate(signatures):
        if not isinstance(item, dict) or set(item) != {"keyid", "sig"}:
            raise _malformed(f'signatures[{number}] is an object with exactly "keyid" and "sig"')
        if not isinstance(item["keyid"], str) or not isinstance(item["sig"], str):
            raise _malformed(f'signatures[{number}]: "keyid" and "sig" are strings')
        try:
            parsed.append((item["keyid"], unb64(item["sig"])))
        except MalformedError as exc:
            raise _malformed(f"signatures[{number}].sig: {exc.detail}") from None
    try:
        payload = unb64(payload_b64)
    except MalformedError as exc:
        raise _malformed(f"payload: {exc.detail}") from None
    if canonical_json(obj) != envelope:
        raise _malformed("the envelope is not in RFC 8785 canonical form, so it is not the bytes that were logged")
    return payload, payload_type, parsed


def open_envelope(
    envelope: bytes, public_keys: Mapping[str, bytes], *, payload_type: str | None = None
) -> tuple[bytes, str]:
    """Verify a DSSE envelope; return ``(payload, keyid of the key that verified it)`` (DSSE protocol.md, "To verify").

    ``public_keys`` maps keyids to raw 32-byte Ed25519 keys. Every signature whose keyid is known must verify (a
    failing one raises :class:`VerificationError` ``envelope_signature_invalid``); if none is known,
    ``unknown_key``. Bytes that are not canonical JSON of a well-formed envelope raise :class:`MalformedError`
    ``envelope_malformed``. If ``payload_type`` is given, an envelope of another type raises :class:`MalformedError`
    ``payload_type_unsupported`` — checked after the signature, as DSSE orders it, so an unsigned type is never trusted.
    """
    payload, envelope_type, signatures = _parse(envelope)
    message = pae(envelope_type, payload)
    verified: str | None = None
    for keyid, signature in signatures:
        public_key = public_keys.get(keyid)
        if public_key is None:
            continue
        if not verify_ed25519(public_key, signature, message):
            raise VerificationError("envelope_signature_invalid", f"the signature by key {keyid} does not verify")
        if verified is None:
            verified = keyid
    if verified is None:
        ids = ", ".join(keyid for keyid, _ in signatures)
        raise VerificationError("unknown_key", f"the envelope is signed by no known key (keyid: {ids})")
    if payload_type is not None and envelope_type != payload_type:
        raise MalformedError(
            "payload_type_unsupported", f"payload type {envelope_type!r} is not the expected {payload_type!r}"
        )
    return payload, verified

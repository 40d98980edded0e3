"""Signed notes (C2SP signed-note, Ed25519 signature type) and the checkpoints they carry (C2SP tlog-checkpoint).

A checkpoint is the log's signed statement "my tree of N leaves has root R". A legal user who holds the log's
public key can check any checkpoint offline; the inclusion and consistency proofs then tie entries and older
checkpoints to it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .encoding import b64, unb64
from .errors import MalformedError, VerificationError
from .merkle import HASH_SIZE

__all__ = [
    "ALGORITHM_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "note_key_id",
    "open_note",
    "parse_vkey",
    "sign_note",
    "verify_ed25519",
    "vkey",
]

ALGORITHM_ED25519 = 0x01
"""The signed-note signature type identifier byte of Ed25519 (C2SP signed-note, "Signature types")."""

MAX_SIGNATURES = 100
"""Notes with more signature lines are refused; signed-note requires accepting at least 16."""

_EM_DASH = "\u2014"
_SIZE = re.compile(r"0|[1-9][0-9]*")
_HEX8 = re.compile(r"[0-9a-f]{8}")
_UINT64_MAX = 2**64 - 1


def note_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 note key: SHA-256(name || 0x0A || 0x01 || public key)[:4].

    C2SP signed-note, "Ed25519 signatures". The ID only selects a key; the signature is what proves it.
    """
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALGORITHM_ED25519]) + public_key).digest()[:4]


def vkey(name: str, public_key: bytes) -> str:
    """The verifier key string ``<name>+<key ID, 8 lowercase hex>+<base64(0x01 || public key)>``.

    The text form of a note verifier key used by golang.org/x/mod/sumdb/note and the C2SP ecosystem.
    """
    _check_key_name(name, "key_malformed")
    if len(public_key) != 32:
        raise MalformedError("key_malformed", "an Ed25519 public key is 32 bytes")
    return f"{name}+{note_key_id(name, public_key).hex()}+{b64(bytes([ALGORITHM_ED25519]) + public_key)}"


def parse_vkey(text: str) -> tuple[str, bytes, bytes]:
    """Parse a verifier key string into ``(name, 4-byte key ID, 32-byte Ed25519 public key)``.

    Strict inverse of :func:`vkey`: the name must be a valid note key name, the algorithm byte Ed25519, and the key ID
    must be the one computed from name and key (C2SP signed-note); anything else raises :class:`MalformedError`
    ``key_malformed``.
    """
    if not isinstance(text, str):
        raise MalformedError("key_malformed", "a verifier key is a string")
    parts = text.split("+")
    if len(parts) != 3:
        raise MalformedError("key_malformed", "a verifier key has the form <name>+<key id>+<key>")
    name, hex_id, encoded = parts
    _check_key_name(name, "key_malformed")
    if not _HEX8.fullmatch(hex_id):
        raise MalformedError("key_malformed", "the key id of a verifier key is 8 lowercase hexadecimal digits")
    try:
        raw = unb64(encoded)
    except MalformedError:
        raise MalformedError("key_malformed", "the key of a verifier key is not valid base64") from None
    if len(raw) != 33 or raw[0] != ALGORITHM_ED25519:
        raise MalformedError("key_malformed", "a verifier key must hold a 0x01 (Ed25519) byte and a 32-byte key")
    public_key = raw[1:]
    key_id = bytes.fromhex(hex_id)
    if note_key_id(name, public_key) != key_id:
        raise MalformedError("key_malformed", f"the key id {hex_id} does not match the name and key")
    return name, key_id, public_key


@dataclass(frozen=True)
class Checkpoint:
    """A transparency log checkpoint: the body of a signed note (C2SP tlog-checkpoint, "Note text")."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin or "\n" in self.origin:
            raise MalformedError("checkpoint_malformed", "the origin must be one non-empty line")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= _UINT64_MAX:
            raise MalformedError("checkpoint_malformed", "the tree size must be an integer from 0 to 2**64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedError("checkpoint_malformed", f"the root hash must be {HASH_SIZE} bytes")
        for line in self.extensions:
            if not isinstance(line, str) or not line or "\n" in line:
                raise MalformedError("checkpoint_malformed", "each extension line must be one non-empty line")
        _check_note_chars(self.body(), "checkpoint_malformed")

    def body(self) -> str:
        """The note text: origin, decimal size, base64 root hash, then any extension lines, each ending in newline."""
        lines = [self.origin, str(self.size), b64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Parse a checkpoint note text strictly (C2SP tlog-checkpoint, "Note text").

        At least three non-empty lines, each ending in a newline: a non-empty origin, the tree size in decimal
        without leading zeros (at most 2**64-1), the base64 of a 32-byte root hash; then optional non-empty extension
        lines. Anything else raises :class:`MalformedError` ``checkpoint_malformed``.
        """
        if not isinstance(body, str) or not body.endswith("\n"):
            raise MalformedError("checkpoint_malformed", "a checkpoint body is text ending in a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedError("checkpoint_malformed", "a checkpoint has an origin, a size and a root hash line")
        if any(not line for line in lines):
            raise MalformedError("checkpoint_malformed", "a checkpoint has no empty lines")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE.fullmatch(size_text) or int(size_text) > _UINT64_MAX:
            raise MalformedError(
                "checkpoint_malformed",
                f"the size line {size_text[:40]!r} is not a decimal number without leading zeros",
            )
        try:
            root_hash = unb64(root_text)
        except MalformedError:
            raise MalformedError("checkpoint_malformed", "the root hash line is not base64") from None
        if len(root_hash) != HASH_SIZE:
            raise MalformedError("checkpoint_malformed", f"the root hash is {len(root_hash)} bytes, not {HASH_SIZE}")
        return cls(origin, int(size_text), root_hash, tuple(extensions))


class NoteSigner(Protocol):
    """What signs a note besides a raw key: an Ed25519 signer that can also tell its public key (a KMS or HSM)."""

    public_key_bytes: bytes

    def sign(self, message: bytes) -> bytes: ...


def sign_note(body: str, name: str, signer: Ed25519PrivateKey | NoteSigner) -> str:
    """Sign ``body`` with an Ed25519 key named ``name`` and return the full signed note (C2SP signed-note, "Format").

    The result is the body, a blank line, and one signature line ``— <name> <base64(key ID || signature)>``; the
    Ed25519 signature (RFC 8032) covers the UTF-8 bytes of the body including its final newline. ``signer`` is a
    private key, or anything with ``sign(message)`` and ``public_key_bytes`` (such as dsse.Ed25519Signer).
    """
    _check_body(body, "note_malformed")
    _check_key_name(name, "note_malformed")
    if isinstance(signer, Ed25519PrivateKey):
        public_key = signer.public_key().public_bytes_raw()
    else:
        public_key = signer.public_key_bytes
    signature = signer.sign(body.encode("utf-8"))
    return f"{body}\n{_EM_DASH} {name} {b64(note_key_id(name, public_key) + signature)}\n"


def open_note(text: str, public_keys: Mapping[tuple[str, bytes], bytes]) -> tuple[str, list[tuple[str, bytes]]]:
    """Verify a signed note and return ``(body, [(name, key ID) of each verified signature])``.

    C2SP signed-note, "Signatures": ``public_keys`` maps ``(name, 4-byte key ID)`` to a 32-byte Ed25519 key.
    Signatures by keys not in it are ignored; a signature by a known key that does not verify, or a note that no
    known key signed, raises :class:`VerificationError` ``checkpoint_signature_invalid``. A text that is not a signed
    note raises :class:`MalformedError` ``note_malformed``.
    """
    body, signatures = _split_note(text)
    message = body.encode("utf-8")
    verified: list[tuple[str, bytes]] = []
    for name, key_id, signature in signatures:
        public_key = public_keys.get((name, key_id))
        if public_key is None:
            continue
        if not verify_ed25519(public_key, signature, message):
            raise VerificationError(
                "checkpoint_signature_invalid", f"the signature by {name} (key id {key_id.hex()}) does not verify"
            )
        if (name, key_id) not in verified:
            verified.append((name, key_id))
    if not verified:
        known = ", ".join(f"{name}+{key_id.hex()}" for name, key_id, _ in signatures)
        raise VerificationError(
            "checkpoint_signature_invalid", f"no signature on the note is by a known key (signed by: {known})"
        )
    return body, verified


def _split_note(text: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and its signature lines (C2SP signed-note, "Format")."""
    if not isinstance(text, str):
        raise MalformedError("note_malformed", "a signed note is text")
    _check_note_chars(text, "note_malformed")
    if not text.endswith("\n"):
        raise MalformedError("note_malformed", "a signed note ends with a newline")
    # The text is separated from the signatures by the last empty line of the note.
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedError("note_malformed", "a signed note has a blank line between its text and its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    lines = block[:-1].split("\n") if block else []
    if not lines:
        raise MalformedError("note_malformed", "a signed note has at least one signature line")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError("note_malformed", f"a signed note may have at most {MAX_SIGNATURES} signatures")
    signatures = []
    for number, line in enumerate(lines, 1):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _EM_DASH:
            raise MalformedError("note_malformed", f"signature line {number} is not '— <name> <base64 signature>'")
        _, name, encoded = parts
        _check_key_name(name, "note_malformed")
        try:
            raw = unb64(encoded)
        except MalformedError:
            raise MalformedError("note_malformed", f"signature line {number} is not base64") from None
        if len(raw) < 5:
            raise MalformedError("note_malformed", f"signature line {number} is too short for a key id and signature")
        signatures.append((name, raw[:4], raw[4:]))
    return body, signatures


def _check_note_chars(text: str, code: str) -> None:
    """Signed notes are valid UTF-8 with no control characters but newline (C2SP signed-note, "Format")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedError(code, "a note must be valid UTF-8") from None
    if any(ch < " " and ch != "\n" for ch in text):
        raise MalformedError(code, "a note must not contain control characters other than newline")


def _check_body(body: str, code: str) -> None:
    if not isinstance(body, str) or not body or not body.endswith("\n"):
        raise MalformedError(code, "a note text is non-empty and ends with a newline")
    _check_note_chars(body, code)


def _check_key_name(name: str, code: str) -> None:
    """Key names are non-empty and contain no Unicode spaces and no plus (C2SP signed-note, "Format")."""
    if not isinstance(name, str) or not name or "+" in name or any(ch.isspace() for ch in name):
        raise MalformedError(code, f"{name!r} is not a valid key name (non-empty, no spaces, no '+')")
    _check_note_chars(name, code)


@functools.lru_cache(maxsize=1024)
def _public_key(raw: bytes) -> Ed25519PublicKey | None:
    # Decoding a point costs about as much as half a verification; a ledger has a handful of keys, so cache them.
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None


def verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid RFC 8032 Ed25519 signature of ``message`` by the 32-byte ``public_key``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    key = _public_key(bytes(public_key))
    if key is None:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True

"""Signing keys: Ed25519 private keys encrypted on disk, public keys with validity windows in the database.

Everything that signs goes through a ``Signer`` (provenance.ledger.dsse): ``key_id`` and ``sign(message)``. The
file signer here is the default; a KMS or HSM signer only has to offer the same two members.
"""

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from provenance.errors import ProvenanceError
from provenance.ledger.dsse import Ed25519Signer, key_id


def passphrase() -> bytes:
    """The key passphrase: the environment variable, else the passphrase file, made once when it is the default."""
    if settings.CUELEDGER_KEY_PASSPHRASE:
        return settings.CUELEDGER_KEY_PASSPHRASE.encode()
    path = Path(settings.CUELEDGER_KEY_PASSPHRASE_FILE)
    if not path.exists() and path == Path(settings.VAR_DIR) / "key-passphrase":
        _write_private(path, secrets.token_urlsafe(32).encode() + b"\n", exclusive=True)
    try:
        value = path.read_bytes().strip()
    except OSError as exc:
        raise ProvenanceError(
            "key_passphrase_missing",
            f"No key passphrase: set CUELEDGER_KEY_PASSPHRASE or CUELEDGER_KEY_PASSPHRASE_FILE "
            f"({exc.strerror}: {path}).",
            http_status=500,
        ) from None
    if not value:
        raise ProvenanceError("key_passphrase_missing", f"The key passphrase file {path} is empty.", http_status=500)
    return value


def key_generate() -> tuple[str, bytes]:
    """Make a new Ed25519 key, store it encrypted in the key directory, and return its key id and public key."""
    private_key = Ed25519PrivateKey.generate()
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    identifier = key_id(public)
    directory = Path(settings.CUELEDGER_KEY_DIR)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase()),
    )
    _write_private(directory / f"{identifier}.pem", pem, exclusive=True)
    return identifier, public


# Loaded signers by (key directory, key id); the passphrase is used to load a key and then dropped.
_SIGNERS: dict[tuple[str, str], Ed25519Signer] = {}


def signer_for(identifier: str) -> Ed25519Signer:
    """The signer of a stored key, loaded once per process."""
    slot = (str(settings.CUELEDGER_KEY_DIR), identifier)
    if slot not in _SIGNERS:
        _SIGNERS[slot] = _load_signer(Path(slot[0]), identifier, passphrase())
    return _SIGNERS[slot]


def key_destroy(identifier: str) -> None:
    """Delete a retired key's private file and forget it: a retired key that leaked could still sign checkpoints of
    the sizes its window covered, so it should not outlive its window."""
    (Path(settings.CUELEDGER_KEY_DIR) / f"{identifier}.pem").unlink(missing_ok=True)
    signers_forget()


def _load_signer(folder: Path, identifier: str, secret: bytes) -> Ed25519Signer:
    if not folder.is_dir():
        raise ProvenanceError(
            "key_directory_missing",
            f"The key directory {folder} does not exist; set CUELEDGER_KEY_DIR to the folder holding the ledger keys.",
            http_status=500,
        )
    path = folder / f"{identifier}.pem"
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ProvenanceError(
            "key_file_missing", f"Cannot read signing key {path}: {exc.strerror}.", http_status=500
        ) from None
    try:
        private_key = serialization.load_pem_private_key(pem, password=secret)
    except (ValueError, TypeError):
        raise ProvenanceError(
            "key_passphrase_wrong", f"The passphrase does not decrypt {path} (or the file is damaged).", http_status=500
        ) from None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ProvenanceError("key_file_invalid", f"{path} does not hold an Ed25519 key.", http_status=500)
    signer = Ed25519Signer(private_key)
    if signer.key_id != identifier:
        raise ProvenanceError(
            "key_file_invalid", f"{path} holds key {signer.key_id}, not {identifier}.", http_status=500
        )
    return signer


def signers_forget() -> None:
    """Drop cached signers (after a rotation, or in tests that change the key directory)."""
    _SIGNERS.clear()


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    directory = os.open(path.parent, os.O_RDONLY)  # the new name must survive a crash too
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

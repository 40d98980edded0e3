"""Evidence bundles, format ``cueledger-evidence-bundle/1``: everything needed to check ledger records offline.

A bundle holds a signed checkpoint (C2SP tlog-checkpoint), some ledger entries (DSSE envelopes of in-toto
Statements) each with its RFC 9162 inclusion proof against that checkpoint, the ledger's public keys, and optionally
consistency proofs (RFC 9162 §2.1.4) from earlier tree sizes. Only the signatures and proofs are trusted; the
``subject`` description and, unless the verifier supplies its own, the keys are not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .encoding import b64, loads_json, unb64
from .errors import LedgerError, MalformedError, VerificationError
from .keyring import EntryResult, KeyRing, LedgerKey, check_entry
from .merkle import HASH_SIZE, verify_consistency, verify_inclusion
from .note import Checkpoint, open_note

__all__ = ["BUNDLE_FORMAT", "Report", "dump_bundle", "load_bundle", "make_bundle", "verify_bundle"]

BUNDLE_FORMAT = "cueledger-evidence-bundle/1"

_KNOWN_FIELDS = frozenset({"format", "origin", "checkpoint", "keys", "entries", "consistency_proofs", "subject"})
_API_CONSISTENCY = "GET /api/v1/ledger/consistency/?first={m}&second={n}"


@dataclass(frozen=True)
class _Entry:
    index: int
    envelope: bytes
    inclusion_proof: tuple[bytes, ...]


@dataclass(frozen=True)
class _Bundle:
    origin: str
    checkpoint: str
    keys: tuple[LedgerKey, ...]
    entries: tuple[_Entry, ...]
    consistency_proofs: dict[int, tuple[bytes, ...]]
    subject: Any
    unknown_fields: tuple[str, ...]


@dataclass
class Report:
    """The outcome of a successful :func:`verify_bundle`: what was proven, and what to keep in mind."""

    origin: str
    tree_size: int
    root_hash: bytes
    entries: list[EntryResult]
    warnings: list[str]
    previous_size: int | None
    checkpoint_key_id: str | None = None
    subject: Any = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object (hashes in base64)."""
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": b64(self.root_hash),
            "checkpoint_key_id": self.checkpoint_key_id,
            "entries": [entry.to_json() for entry in self.entries],
            "warnings": list(self.warnings),
            "previous_size": self.previous_size,
            "subject": self.subject,
        }


def _malformed(detail: str, *, index: int | None = None) -> MalformedError:
    return MalformedError("bundle_malformed", detail, index=index)


def _int(value: Any, where: str, *, index: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _malformed(f"{where} must be a non-negative integer, not {json.dumps(value)[:40]}", index=index)
    return value


def _hashes(value: Any, where: str, *, index: int | None = None) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise _malformed(f"{where} must be a list of base64 hashes", index=index)
    hashes = []
    for number, item in enumerate(value):
        try:
            digest = unb64(item)
        except MalformedError as exc:
            raise _malformed(f"{where}[{number}]: {exc.detail}", index=index) from None
        if len(digest) != HASH_SIZE:
            raise _malformed(f"{where}[{number}] is {len(digest)} bytes, not a {HASH_SIZE}-byte hash", index=index)
        hashes.append(digest)
    return tuple(hashes)


def _parse(bundle: Any) -> _Bundle:
    """Check the structure of a bundle, naming the first bad field; MalformedError ``bundle_malformed``."""
    if not isinstance(bundle, dict):
        raise _malformed("the bundle must be a JSON object")
    if bundle.get("format") != BUNDLE_FORMAT:
        raise _malformed(f"format must be {BUNDLE_FORMAT!r}, not {json.dumps(bundle.get('format'))[:60]}")
    origin = bundle.get("origin")
    if not isinstance(origin, str) or not origin:
        raise _malformed("origin must be a non-empty string")
    checkpoint = bundle.get("checkpoint")
    if not isinstance(checkpoint, str) or not checkpoint:
        raise _malformed("checkpoint must be the text of a signed checkpoint")

    raw_keys = bundle.get("keys")
    if not isinstance(raw_keys, list):
        raise _malformed("keys must be a list of key objects")
    keys = []
    for number, item in enumerate(raw_keys):
        try:
            keys.append(LedgerKey.from_json(item))
        except MalformedError as exc:
            raise _malformed(f"keys[{number}]: {exc.detail}") from None

    raw_entries = bundle.get("entries")
    if not isinstance(raw_entries, list):
        raise _malformed("entries must be a list")
    entries: list[_Entry] = []
    seen: set[int] = set()
    for number, item in enumerate(raw_entries):
        where = f"entries[{number}]"
        if not isinstance(item, dict):
            raise _malformed(f"{where} must be an object")
        index = _int(item.get("index"), f"{where}.index")
        if index in seen:
            raise _malformed(f"{where}.index {index} appears twice", index=index)
        seen.add(index)
        raw_envelope = item.get("envelope")
        if not isinstance(raw_envelope, str):
            raise _malformed(f"{where}.envelope must be the base64 of the entry's bytes", index=index)
        # Once an entry is identified, damage to its signed bytes or its proof is evidence of tampering, not a
        # malformed file: it fails verification (exit 1) and names the entry.
        try:
            envelope = unb64(raw_envelope)
        except MalformedError as exc:
            raise VerificationError("envelope_malformed", f"{where}.envelope: {exc.detail}", index=index) from None
        try:
            proof = _hashes(item.get("inclusion_proof"), f"{where}.inclusion_proof", index=index)
        except MalformedError as exc:
            raise VerificationError("inclusion_proof_invalid", exc.detail, index=index) from None
        entries.append(_Entry(index, envelope, proof))

    raw_proofs = bundle.get("consistency_proofs", [])
    if not isinstance(raw_proofs, list):
        raise _malformed("consistency_proofs must be a list")
    proofs: dict[int, tuple[bytes, ...]] = {}
    for number, item in enumerate(raw_proofs):
        where = f"consistency_proofs[{number}]"
        if not isinstance(item, dict):
            raise _malformed(f"{where} must be an object")
        old_size = _int(item.get("old_size"), f"{where}.old_size")
        if old_size in proofs:
            raise _malformed(f"{where}.old_size {old_size} appears twice")
        proofs[old_size] = _hashes(item.get("proof"), f"{where}.proof")

    unknown = tuple(sorted(set(bundle) - _KNOWN_FIELDS))
    return _Bundle(origin, checkpoint, tuple(keys), tuple(entries), proofs, bundle.get("subject"), unknown)


def load_bundle(data: bytes) -> dict[str, Any]:
    """Parse the bytes of a bundle file (UTF-8 JSON, RFC 8259) and check its structure.

    Raises :class:`MalformedError` ``bundle_malformed`` whose detail names the bad field (e.g.
    ``entries[2].inclusion_proof[0]``). Returns the parsed JSON object, ready for :func:`verify_bundle`.
    """
    bundle = loads_json(data, code="bundle_malformed", what="the bundle")
    _parse(bundle)
    return dict(bundle)


def make_bundle(
    origin: str,
    checkpoint: str,
    keys: Iterable[LedgerKey],
    entries: Iterable[tuple[int, bytes, Sequence[bytes]]],
    consistency_proofs: Mapping[int, Sequence[bytes]] | None = None,
    subject: Any = None,
) -> dict[str, Any]:
    """Assemble a bundle object from ``(index, envelope bytes, inclusion proof)`` entries and proofs by old size."""
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "origin": origin,
        "checkpoint": checkpoint,
        "keys": [key.to_json() for key in keys],
        "entries": [
            {"index": index, "envelope": b64(envelope), "inclusion_proof": [b64(h) for h in proof]}
            for index, envelope, proof in entries
        ],
    }
    if consistency_proofs:
        bundle["consistency_proofs"] = [
            {"old_size": old_size, "proof": [b64(h) for h in proof]}
            for old_size, proof in sorted(consistency_proofs.items())
        ]
    if subject is not None:
        bundle["subject"] = subject
    return bundle


def dump_bundle(bundle: Mapping[str, Any]) -> bytes:
    """The bytes of a bundle file: indented UTF-8 JSON (readable; every signed byte inside is base64)."""
    return json.dumps(bundle, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def _open_checkpoint(text: str, keyring: KeyRing, what: str) -> tuple[Checkpoint, LedgerKey]:
    """Verify a signed checkpoint: a signature by a trusted key named after its origin and valid for its size.

    C2SP tlog-checkpoint, "Signatures": the log's key name should match the origin line; this ledger requires it.
    """
    try:
        body, signers = open_note(text, keyring.checkpoint_keys())
        checkpoint = Checkpoint.parse(body)
    except LedgerError as exc:
        raise type(exc)(exc.code, f"{what}: {exc.detail}") from None
    named = [(name, key_id) for name, key_id in signers if name == checkpoint.origin]
    if not named:
        raise VerificationError(
            "checkpoint_signature_invalid",
            f"{what}: no trusted key named after its origin {checkpoint.origin!r} signed it",
        )
    failure: VerificationError | None = None
    for name, key_id in named:
        try:
            return checkpoint, keyring.key_for_checkpoint(name, key_id, checkpoint.size)
        except VerificationError as exc:
            failure = VerificationError(exc.code, f"{what}: {exc.detail}")
    assert failure is not None
    raise failure


def verify_bundle(
    bundle: dict[str, Any], *, trusted_keys: KeyRing | None = None, previous_checkpoint: str | None = None
) -> Report:
    """Verify an evidence bundle and return a :class:`Report`; raise at the first failed check.

    In order: the structure (:class:`MalformedError` ``bundle_malformed``); the key ring — ``trusted_keys`` if
    given, else the bundle's own keys with a warning; the checkpoint's signature by a key named after its origin and
    valid for its size; the checkpoint's origin against the bundle's; then for each entry, that its index is inside
    the checkpoint, :func:`check_entry`, and its inclusion proof against the checkpoint root (RFC 9162 §2.1.3.2).
    If ``previous_checkpoint`` (a signed note the user kept from before) is given: its signature with the same keys,
    its origin, that it is not newer, and the bundle's consistency proof from its size (RFC 9162 §2.1.4.2).
    """
    parsed = _parse(bundle)
    warnings: list[str] = []
    if parsed.unknown_fields:
        warnings.append(f"ignored unknown bundle fields: {', '.join(parsed.unknown_fields)}")
    if trusted_keys is None:
        try:
            keyring = KeyRing(parsed.keys)
        except MalformedError as exc:
            raise _malformed(f"keys: {exc.detail}") from None
        warnings.append(
            "the keys were taken from the bundle itself and are not independently trusted: compare them with keys "
            "obtained from the ledger operator, or verify again with --trusted-keys"
        )
    else:
        keyring = trusted_keys
        untrusted = [key.key_id for key in parsed.keys if keyring.get(key.key_id) != key]
        if untrusted:
            warnings.append(
                f"the bundle lists keys that are not among the trusted keys (ignored): {', '.join(untrusted)}"
            )

    checkpoint, checkpoint_key = _open_checkpoint(parsed.checkpoint, keyring, "checkpoint")
    if trusted_keys is not None:
        # A retired key can still sign checkpoints of any size inside its old window. Should it leak, it could sign
        # a made-up history that ends before the rotation, so a bundle's checkpoint must be at least as new as the
        # newest trusted key. (A --previous-checkpoint is the user's own copy and is exempt.)
        newest = max((key.valid_from_index for key in keyring), default=0)
        if checkpoint.size < newest:
            raise VerificationError(
                "checkpoint_predates_rotation",
                f"the checkpoint covers {checkpoint.size} entries, but a trusted key took over at entry {newest}: "
                "a checkpoint from before a key rotation could be signed with the retired key, should it leak. "
                "Verify a freshly exported bundle, or use the key list as it was when this bundle was made",
            )
    if checkpoint.origin != parsed.origin:
        raise VerificationError(
            "origin_mismatch", f"the checkpoint is for log {checkpoint.origin!r}, the bundle for {parsed.origin!r}"
        )

    if not parsed.entries:
        warnings.append("the bundle contains no entries: only the checkpoint was verified")
    results = []
    for entry in parsed.entries:
        if entry.index >= checkpoint.size:
            raise VerificationError(
                "index_out_of_range",
                f"entry {entry.index} is not in the checkpoint's tree of {checkpoint.size} entries",
                index=entry.index,
            )
        try:
            result = check_entry(entry.envelope, entry.index, keyring)
        except MalformedError as exc:  # signed bytes that no longer parse: tampered with, see _parse
            raise VerificationError(exc.code, exc.detail, index=entry.index) from None
        verify_inclusion(result.leaf_hash, entry.index, checkpoint.size, entry.inclusion_proof, checkpoint.root_hash)
        results.append(result)

    previous_size = None
    if previous_checkpoint is not None:
        previous, _ = _open_checkpoint(previous_checkpoint, keyring, "previous checkpoint")
        _check_consistency(previous, checkpoint, parsed.consistency_proofs)
        previous_size = previous.size
    elif parsed.consistency_proofs:
        sizes = ", ".join(str(size) for size in sorted(parsed.consistency_proofs))
        warnings.append(
            f"the bundle carries consistency proofs from tree sizes {sizes}, which were not checked: give a "
            "checkpoint saved earlier with --previous-checkpoint to check that the log only grew since"
        )

    return Report(
        origin=checkpoint.origin,
        tree_size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        entries=results,
        warnings=warnings,
        previous_size=previous_size,
        checkpoint_key_id=checkpoint_key.key_id,
        subject=parsed.subject,
    )


def _check_consistency(previous: Checkpoint, current: Checkpoint, proofs: Mapping[int, Sequence[bytes]]) -> None:
    """That the log of ``previous`` is a prefix of the log of ``current`` (RFC 9162 §2.1.4.2)."""
    m, n = previous.size, current.size
    if previous.origin != current.origin:
        raise VerificationError(
            "origin_mismatch", f"the previous checkpoint is for log {previous.origin!r}, not {current.origin!r}"
        )
    if m > n:
        raise VerificationError(
            "previous_checkpoint_newer",
            f"the previous checkpoint (size {m}) is newer than the bundle's (size {n}); ask for a bundle exported at "
            f"size {m} or later",
        )
    if m in (0, n):
        proof: Sequence[bytes] = ()
    elif m in proofs:
        proof = proofs[m]
    else:
        raise MalformedError(
            "consistency_proof_missing",
            f"the bundle has no consistency proof from size {m} to {n}: export the bundle again with --since {m}, or "
            f"ask the API for {_API_CONSISTENCY.format(m=m, n=n)}",
        )
    try:
        verify_consistency(m, n, previous.root_hash, current.root_hash, proof)
    except VerificationError as exc:
        raise VerificationError(
            exc.code, f"the bundle's checkpoint does not extend the previous checkpoint: {exc.detail}"
        ) from None

"""A small in-memory ledger for tests: keys with validity windows, signed entries, checkpoints and bundles."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.ledger import (
    Checkpoint,
    Ed25519Signer,
    LedgerKey,
    MemoryNodeStore,
    MerkleTree,
    leaf_hash,
    make_bundle,
    make_statement,
    sign_envelope,
    sign_note,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
ORIGIN = "cueledger.local/ledger"
PREDICATE = "https://cueledger.local/provenance/cue-render/v1"


def load_vector(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def seeded_key(seed: str) -> Ed25519PrivateKey:
    """A deterministic key, so failures reproduce."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def ledger_key(
    private_key: Ed25519PrivateKey, valid_from: int, valid_until: int | None, name: str = ORIGIN
) -> LedgerKey:
    signer = Ed25519Signer(private_key)
    return LedgerKey(signer.key_id, name, signer.public_key_bytes, valid_from, valid_until)


def cue_statement(number: int, *, title: str | None = None) -> bytes:
    digest = hashlib.sha256(f"cue-{number}.wav".encode()).hexdigest()
    predicate = {"cue": title or f"Cue {number}", "event": "rendered", "tool": "cueledger"}
    return make_statement([(f"cue-{number}.wav", digest)], PREDICATE, predicate)


@dataclass
class Ledger:
    """An honest log. ``keys`` are (private key, LedgerKey) in rotation order."""

    keys: list[tuple[Ed25519PrivateKey, LedgerKey]]
    origin: str = ORIGIN
    envelopes: list[bytes] = field(default_factory=list)
    tree: MerkleTree = field(default_factory=lambda: MerkleTree(MemoryNodeStore()))

    @classmethod
    def with_rotation(cls, entries: int = 5, rotate_at: int | None = None) -> Ledger:
        first = seeded_key("ledger-key-1")
        if rotate_at is None:
            keys = [(first, ledger_key(first, 0, None))]
        else:
            second = seeded_key("ledger-key-2")
            keys = [(first, ledger_key(first, 0, rotate_at)), (second, ledger_key(second, rotate_at, None))]
        ledger = cls(keys)
        for number in range(entries):
            ledger.append(cue_statement(number))
        return ledger

    def key_for(self, index: int) -> Ed25519PrivateKey:
        for private_key, key in self.keys:
            if key.valid_for_entry(index):
                return private_key
        raise AssertionError(f"no key for entry {index}")

    def append(self, statement: bytes, private_key: Ed25519PrivateKey | None = None) -> bytes:
        index = len(self.envelopes)
        envelope = sign_envelope(statement, Ed25519Signer(private_key or self.key_for(index)))
        self.envelopes.append(envelope)
        self.tree.append(leaf_hash(envelope))
        return envelope

    @property
    def ledger_keys(self) -> list[LedgerKey]:
        return [key for _, key in self.keys]

    def checkpoint(self, size: int | None = None, private_key: Ed25519PrivateKey | None = None) -> str:
        size = self.tree.size if size is None else size
        if private_key is None:
            private_key = next(pk for pk, key in self.keys if key.valid_for_tree_size(size))
        body = Checkpoint(self.origin, size, self.tree.root(size)).body()
        return sign_note(body, self.origin, private_key)

    def bundle(self, indexes: list[int] | None = None, size: int | None = None, since: Sequence[int] = ()) -> dict:
        size = self.tree.size if size is None else size
        indexes = list(range(size)) if indexes is None else indexes
        entries = [(i, self.envelopes[i], self.tree.inclusion_proof(i, size)) for i in indexes]
        proofs = {m: self.tree.consistency_proof(m, size) for m in since}
        return make_bundle(
            self.origin, self.checkpoint(size), self.ledger_keys, entries, proofs, subject={"cue": "Opening titles"}
        )

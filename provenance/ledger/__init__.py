"""Cueledger's pure-Python provenance ledger: Merkle tree, signed notes, DSSE envelopes, keys and evidence bundles.

Depends only on the standard library, ``cryptography`` and ``rfc8785`` — never on Django — so that the offline
verifier (``python -m provenance.verify``) runs anywhere. The formats follow public specifications: RFC 9162 §2.1
(Merkle tree and proofs), C2SP signed-note and tlog-checkpoint, DSSE v1, in-toto Statement v1 and RFC 8785.
"""

from .bundle import BUNDLE_FORMAT, Report, dump_bundle, load_bundle, make_bundle, verify_bundle
from .dsse import PAYLOAD_TYPE, Ed25519Signer, Signer, key_id, open_envelope, pae, sign_envelope
from .encoding import b64, canonical_json, unb64
from .errors import LedgerError, MalformedError, VerificationError
from .keyring import EntryResult, KeyRing, LedgerKey, check_entries, check_entry
from .merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    MerkleTree,
    NodeStore,
    frontier_append,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from .note import Checkpoint, note_key_id, open_note, parse_vkey, sign_note, vkey
from .statement import STATEMENT_TYPE, make_statement, parse_statement

__all__ = [
    "BUNDLE_FORMAT",
    "EMPTY_ROOT",
    "PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "Checkpoint",
    "Ed25519Signer",
    "EntryResult",
    "KeyRing",
    "LedgerError",
    "LedgerKey",
    "MalformedError",
    "MemoryNodeStore",
    "MerkleTree",
    "NodeStore",
    "Report",
    "Signer",
    "VerificationError",
    "b64",
    "canonical_json",
    "check_entries",
    "check_entry",
    "dump_bundle",
    "frontier_append",
    "key_id",
    "leaf_hash",
    "load_bundle",
    "make_bundle",
    "make_statement",
    "node_hash",
    "note_key_id",
    "open_envelope",
    "open_note",
    "pae",
    "parse_statement",
    "parse_vkey",
    "root_of",
    "sign_envelope",
    "sign_note",
    "unb64",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
    "vkey",
]

"""Signed provenance: records, the append-only Merkle ledger, checkpoints, proofs, keys, evidence bundles.

This package's __init__ imports nothing, so that `python -m provenance.verify` runs without Django.
"""

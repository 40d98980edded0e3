"""Writes and proofs of the provenance ledger: appending signed records, checkpoints, keys, bundles, prompts.

Appends are serialised on the single LedgerHead row (SELECT ... FOR UPDATE on PostgreSQL; SQLite takes its write
lock at BEGIN IMMEDIATE), so indexes are gapless and the tree cannot fork. The head caches the tree's right border,
the only nodes an append or a root needs, so an append reads no tree nodes at all.
"""

from provenance.keys import signer_for
from provenance.services.appends import ledger_append, outbox_drain, record_enqueue
from provenance.services.bundles import bundle_build, generator_of, origin_record
from provenance.services.checkpoints import (
    checkpoint_create,
    checkpoint_latest,
    consistency_proof,
    inclusion_proof,
)
from provenance.services.prompts import prompt_commit, prompt_erase
from provenance.services.rotation import key_as_ledger_key, key_rotate, keyring
from provenance.services.tree import current_key_id, frontier_of, origin
from provenance.services.verification import LedgerReport, ledger_verify

__all__ = [
    "LedgerReport",
    "bundle_build",
    "checkpoint_create",
    "checkpoint_latest",
    "consistency_proof",
    "current_key_id",
    "frontier_of",
    "generator_of",
    "inclusion_proof",
    "key_as_ledger_key",
    "key_rotate",
    "keyring",
    "ledger_append",
    "ledger_verify",
    "origin",
    "origin_record",
    "outbox_drain",
    "prompt_commit",
    "prompt_erase",
    "record_enqueue",
    "signer_for",
]

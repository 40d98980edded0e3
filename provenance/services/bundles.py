"""Evidence bundles, and where a subject's origin record sits in the ledger."""

from __future__ import annotations

import base64
import hashlib
import json

from provenance.errors import ProvenanceError
from provenance.ledger import (
    make_bundle,
)
from provenance.models import LedgerEntry, SigningKey
from provenance.services.checkpoints import checkpoint_latest
from provenance.services.rotation import key_as_ledger_key
from provenance.services.tree import _tree_at, origin


def origin_record(reference: str) -> dict | None:
    """Where the first ingest or generation record about ``reference`` sits in the ledger: what Content
    Credentials link to."""
    entry = LedgerEntry.objects.filter(reference=reference, kind__in=["ingest", "generation"]).order_by("index").first()
    if entry is None:
        return None
    return {"origin": origin(), "index": entry.index, "envelope_sha256": hashlib.sha256(entry.envelope).hexdigest()}


def generator_of(reference: str) -> dict | None:
    """The generator (name, version, weights digest, code version) named by the generation record of
    ``reference``, or None for a cue that was not made here."""
    entry = LedgerEntry.objects.filter(reference=reference, kind="generation").order_by("index").first()
    if entry is None:
        return None
    envelope = json.loads(bytes(entry.envelope))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    return dict(statement["predicate"]["generator"])


# --- Evidence bundles --------------------------------------------------------------------------------------------


def bundle_build(*, reference: str, subject: dict, since: int | None = None) -> dict:
    """An evidence bundle of every record about ``reference``, with inclusion proofs to a fresh checkpoint, every
    signing key with its window, and, with ``since``, a consistency proof from that earlier tree size. Records
    still in the outbox are not in it yet: the worker appends them within moments."""
    checkpoint = checkpoint_latest()
    if since is not None and not 0 < since <= checkpoint.size:
        raise ProvenanceError("proof_range_invalid", f"since must be between 1 and {checkpoint.size}; got {since}.")
    tree = _tree_at(checkpoint.size)
    entries = [
        (entry.index, bytes(entry.envelope), tree.inclusion_proof(entry.index, checkpoint.size))
        for entry in LedgerEntry.objects.filter(reference=reference, index__lt=checkpoint.size).order_by("index")
    ]
    proofs = {since: tree.consistency_proof(since, checkpoint.size)} if since else None
    keys = [key_as_ledger_key(key) for key in SigningKey.objects.all()]
    return make_bundle(origin(), checkpoint.note, keys, entries, proofs, subject)

"""Record kinds: each an in-toto predicate type with a JSON Schema (draft 2020-12) its predicates must satisfy.

A correction is a new record of the same kind whose predicate names the entry it corrects in ``corrects``; nothing
in the ledger is ever edited.
"""

from jsonschema import Draft202012Validator

from provenance.errors import ProvenanceError

PREDICATE_BASE = "https://cueledger.dev/provenance"
SPDX_OR_REF = r"^(LicenseRef-[A-Za-z0-9.\-]+|[A-Za-z0-9.\-+]+( (AND|OR|WITH) [A-Za-z0-9.\-+]+)*)$"
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
TEXT = {"type": "string", "maxLength": 2000}

_CORRECTS = {
    "type": "object",
    "description": "The earlier entry this record corrects.",
    "required": ["index", "leaf_hash"],
    "properties": {"index": {"type": "integer", "minimum": 0}, "leaf_hash": SHA256},
    "additionalProperties": False,
}
_CUE = {
    "type": "object",
    "required": ["id", "code", "title"],
    "properties": {"id": {"type": "string", "format": "uuid"}, "code": {"type": "string"}, "title": TEXT},
    "additionalProperties": False,
}
_DATASET = {
    "type": "object",
    "required": ["name", "source", "license", "item_count", "digest"],
    "properties": {
        "name": TEXT,
        "source": TEXT,
        "license": {"type": "string", "pattern": SPDX_OR_REF, "description": "SPDX expression or LicenseRef-..."},
        "item_count": {"type": "integer", "minimum": 0},
        "digest": SHA256,
    },
    "additionalProperties": False,
}


def _schema(kind: str, description: str, properties: dict, required: list[str]) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{PREDICATE_BASE}/{kind}/v1/schema.json",
        "title": f"Cueledger {kind} predicate",
        "description": description,
        "type": "object",
        "required": required,
        "properties": {**properties, "corrects": _CORRECTS},
        "additionalProperties": False,
    }


SCHEMAS: dict[str, dict] = {
    "ingest": _schema(
        "ingest",
        "A cue entered the catalog from outside. Its origin is what the uploader claims, never attested by us.",
        {
            "cue": _CUE,
            "uploaded_by": TEXT,
            "uploaded_at": {"type": "string", "format": "date-time"},
            "artifact": {
                "type": "object",
                "required": ["media_type", "size"],
                "properties": {"media_type": TEXT, "size": {"type": "integer", "minimum": 0}},
                "additionalProperties": False,
            },
            "recording": {
                "type": "object",
                "description": "The recording that came with the MIDI, when both were uploaded",
                "required": ["media_type", "size"],
                "properties": {"media_type": TEXT, "size": {"type": "integer", "minimum": 0}},
                "additionalProperties": False,
            },
            "claimed_origin": {
                "type": "object",
                "description": "The uploader's own statements, recorded as claims.",
                "properties": {
                    "tool": TEXT,
                    "model": TEXT,
                    "model_version": TEXT,
                    "terms_url": TEXT,
                    "training_data_statement": {"type": "string", "maxLength": 20000},
                },
                "additionalProperties": False,
            },
        },
        ["cue", "uploaded_by", "uploaded_at", "artifact", "claimed_origin"],
    ),
    "generation": _schema(
        "generation",
        "A cue made here by a generative model from a prompt and seed.",
        {
            "cue": _CUE,
            "generator": {
                "type": "object",
                "required": ["name", "version", "weights_digest", "code_version"],
                "properties": {"name": TEXT, "version": TEXT, "weights_digest": SHA256, "code_version": TEXT},
                "additionalProperties": False,
            },
            "prompt_commitment": {
                "type": "object",
                "description": "SHA-256(salt || UTF-8 prompt); the salt and prompt are kept apart and can be erased.",
                "required": ["algorithm", "value"],
                "properties": {"algorithm": {"const": "sha256(salt||prompt)"}, "value": SHA256},
                "additionalProperties": False,
            },
            "seed": {"type": "string", "pattern": "^[0-9]{1,40}$", "description": "decimal, as a string"},
            "parameters": {"type": "object"},
            "training_datasets": {"type": "array", "items": _DATASET},
            "derived_from": {
                "type": "object",
                "description": "For a version of another cue (a cut-down, an alternate mix): the cue it was made from",
                "required": ["cue", "midi_sha256", "edit"],
                "properties": {"cue": _CUE, "midi_sha256": SHA256, "edit": TEXT},
                "additionalProperties": False,
            },
        },
        ["cue", "generator", "prompt_commitment", "seed", "parameters", "training_datasets"],
    ),
    "similarity": _schema(
        "similarity",
        "The result of checking a cue against the reference corpus. The full evidence of each match stays in the "
        "report; the record carries its SHA-256 (of the RFC 8785 form), against which the evidence shown later "
        "can be checked.",
        {
            "cue": _CUE,
            "report_id": {"type": "string", "format": "uuid"},
            "verdict": {"enum": ["pass", "flag"]},
            "trigger": {"enum": ["ingest", "references", "request"]},
            "engine_version": TEXT,
            "corpus_version": {
                "type": "object",
                "required": ["revision", "count", "digest"],
                "properties": {
                    "revision": {"type": "integer", "minimum": 0},
                    "count": {"type": "integer", "minimum": 0},
                    "digest": SHA256,
                },
                "additionalProperties": False,
            },
            "thresholds": {"type": "object", "additionalProperties": {"type": "number"}},
            "detectors": {
                "type": "object",
                "description": "Whether each detector ran; if not, the code saying why",
                "additionalProperties": {
                    "type": "object",
                    "required": ["ran"],
                    "properties": {"ran": {"type": "boolean"}, "code": {"type": "string", "maxLength": 100}},
                    "additionalProperties": False,
                },
            },
            "matches": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["reference_id", "reference_title", "detector", "score", "evidence_digest"],
                    "properties": {
                        "reference_id": {"type": "integer", "minimum": 1},
                        "reference_title": TEXT,
                        "detector": {"enum": ["acoustic", "symbolic"]},
                        "score": {"type": "number"},
                        "evidence_digest": SHA256,
                    },
                    "additionalProperties": False,
                },
            },
        },
        [
            "cue",
            "report_id",
            "verdict",
            "trigger",
            "engine_version",
            "corpus_version",
            "thresholds",
            "detectors",
            "matches",
        ],
    ),
    "clearance": _schema(
        "clearance",
        "Legal's decision on whether a cue may be released, and for which uses.",
        {
            "decision": {"enum": ["cleared", "rejected"]},
            "decided_by": TEXT,
            "uses": {"type": "array", "items": TEXT},
            "reason": {"type": "string", "maxLength": 20000},
            "override": {"type": "boolean"},
        },
        ["decision", "decided_by", "reason"],
    ),
    "licence": _schema(
        "licence",
        "A licence granted for a cue.",
        {
            "licensee": TEXT,
            "production": TEXT,
            "media": {"type": "array", "items": TEXT},
            "territory": TEXT,
            "term": TEXT,
            "granted_by": TEXT,
        },
        ["licensee", "media", "territory", "term", "granted_by"],
    ),
    "key": _schema(
        "key",
        "A signing-key rotation: the key in force until this entry hands over to the next.",
        {
            "event": {"enum": ["rotation"]},
            "retired_key_id": SHA256,
            "new_key": {
                "type": "object",
                "required": ["key_id", "public_key", "valid_from_index"],
                "properties": {
                    "key_id": SHA256,
                    "public_key": {"type": "string", "description": "base64 of the raw Ed25519 public key"},
                    "valid_from_index": {"type": "integer", "minimum": 0},
                },
                "additionalProperties": False,
            },
        },
        ["event", "retired_key_id", "new_key"],
    ),
}
PREDICATE_TYPES = {kind: f"{PREDICATE_BASE}/{kind}/v1" for kind in SCHEMAS}
KINDS_BY_TYPE = {uri: kind for kind, uri in PREDICATE_TYPES.items()}
_VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in SCHEMAS.items()}


def predicate_check(kind: str, predicate: dict) -> None:
    """Refuse a predicate that its kind's schema rejects, naming the first problem."""
    if kind not in _VALIDATORS:
        raise ProvenanceError("record_kind_unknown", f"{kind!r} is not a record kind ({', '.join(SCHEMAS)}).")
    validator = _VALIDATORS[kind]
    if validator.is_valid(predicate):
        return
    error = next(iter(sorted(validator.iter_errors(predicate), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top)"
        raise ProvenanceError("predicate_invalid", f"{kind} predicate, at {where}: {error.message}")

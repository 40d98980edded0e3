"""Record kinds: each an in-toto predicate type with a JSON Schema (draft 2020-12) its predicates must satisfy.

A correction is a new record of the same kind whose predicate names the entry it corrects in ``corrects``; nothing
in the ledger is ever edited.
"""

import json
import numbers
import re
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator

from provenance.errors import ProvenanceError
from provenance.ledger import LedgerError, canonical_json

PREDICATE_BASE = "https://cueledger.dev/provenance"
SPDX_OR_REF = r"^(LicenseRef-[A-Za-z0-9.\-]+|[A-Za-z0-9.\-+]+( (AND|OR|WITH) [A-Za-z0-9.\-+]+)*)$"
# Python's "$" (which jsonschema searches with) also matches before a final newline, where ECMA-262's, the schemas'
# dialect, does not; the length limit refuses "<64 hex digits>\n" in both.
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$", "maxLength": 64}
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

Check = Callable[[Any], bool]


def compile_schema(schema: dict) -> Check:
    """A yes/no check of a value against ``schema``, for the part of JSON Schema draft 2020-12 the record schemas use
    (Validation vocabulary §6: type, enum, const, maxLength, pattern, minimum, required; Core §10.3: properties,
    additionalProperties, items), with the meaning jsonschema gives each, about ten times faster.

    Every append checks its predicate before it takes the ledger's lock, and jsonschema's general machinery costs
    more there than signing the record. A schema with any other keyword is refused here (ValueError) rather than
    checked loosely. ``format`` is an annotation in 2020-12 unless a format vocabulary asserts it, and jsonschema
    does not assert it by default, so neither does this.

    Only the types JSON parses into pass: exactly dict (with str names), list, str, int, float, bool and None.
    Anything else, even a subclass of those (which could answer for itself differently than jsonschema asks), fails
    here. A value this
    check fails is still given to jsonschema (predicate_check), which decides and names the problem; a value it
    passes is one jsonschema would pass.
    """
    if not isinstance(schema, dict):
        raise ValueError(f"only object schemas are compiled, not {schema!r}")
    unknown = set(schema) - _COMPILED_KEYWORDS - _ANNOTATIONS
    if unknown:
        raise ValueError(f"no compiled check for the schema keyword(s) {sorted(unknown)}")
    checks: list[Check] = []
    if "type" in schema:
        if not isinstance(schema["type"], str) or schema["type"] not in _TYPES:
            raise ValueError(f"only a single type name is compiled, not {schema['type']!r}")
        checks.append(_TYPES[schema["type"]])
    for keyword in ("enum", "const"):
        if keyword in schema:
            allowed = schema["enum"] if keyword == "enum" else [schema["const"]]
            if not all(isinstance(value, str) for value in allowed):
                raise ValueError(f"only string values are compiled for {keyword}")
            names = frozenset(allowed)
            checks.append(lambda value, names=names: type(value) is str and value in names)
    if "maxLength" in schema:
        most = schema["maxLength"]
        checks.append(lambda value: len(value) <= most if type(value) is str else not isinstance(value, str))
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search  # jsonschema searches, as ECMA-262's RegExp.test does
        checks.append(lambda value: search(value) is not None if type(value) is str else not isinstance(value, str))
    if "minimum" in schema:
        least = schema["minimum"]
        checks.append(lambda value: value >= least if _is_number(value) else not _numeric(value))
    if "items" in schema:
        item = compile_schema(schema["items"])
        checks.append(
            lambda value: all(item(each) for each in value) if type(value) is list else not isinstance(value, list)
        )
    if {"required", "properties", "additionalProperties"} & set(schema):
        checks.append(_object_check(schema))
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _object_check(schema: dict) -> Check:
    required = tuple(schema.get("required", ()))
    properties = {name: compile_schema(sub) for name, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    if extra is not True and extra is not False:
        extra = compile_schema(extra)

    def check(value: Any) -> bool:
        if type(value) is not dict:
            # Object keywords say nothing about other types ("type" says whether it must be one).
            return not isinstance(value, dict)
        for name in required:
            if name not in value:
                return False
        for name, member in value.items():
            if type(name) is not str:
                return False
            known = properties.get(name)
            if known is not None:
                if not known(member):
                    return False
            elif extra is False or (extra is not True and not extra(member)):
                return False
        return True

    return check


def _is_number(value: Any) -> bool:
    kind = type(value)
    return kind is int or kind is float


def _numeric(value: Any) -> bool:
    """A number as jsonschema sees one (any numbers.Number but a bool), of whatever class."""
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda value: type(value) is dict,
    "array": lambda value: type(value) is list,
    "string": lambda value: type(value) is str,
    "boolean": lambda value: type(value) is bool,
    "null": lambda value: value is None,
    "number": _is_number,
    # An integer is a number with no fractional part, 1.0 included (Validation §6.1.1; JSON Schema Core §4.2.2).
    "integer": lambda value: type(value) is int or (type(value) is float and value.is_integer()),
}
_COMPILED_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "maxLength",
        "pattern",
        "minimum",
        "items",
        "required",
        "properties",
        "additionalProperties",
    }
)
_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "format"})
_CHECKS = {kind: compile_schema(schema) for kind, schema in SCHEMAS.items()}


def predicate_check(kind: str, predicate: dict) -> None:
    """Refuse a predicate that its kind's schema rejects, naming the first problem."""
    if kind not in _VALIDATORS:
        raise ProvenanceError("record_kind_unknown", f"{kind!r} is not a record kind ({', '.join(SCHEMAS)}).")
    if _CHECKS[kind](predicate):
        return
    # jsonschema judges what would be signed: the predicate as its canonical JSON reads back, so that no Python
    # object can answer its questions otherwise than its signed bytes would.
    try:
        signed = json.loads(canonical_json(predicate))
    except LedgerError as exc:
        raise ProvenanceError("predicate_invalid", f"{kind} predicate cannot be signed: {exc.detail}") from None
    validator = _VALIDATORS[kind]
    error = next(iter(sorted(validator.iter_errors(signed), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top)"
        raise ProvenanceError("predicate_invalid", f"{kind} predicate, at {where}: {error.message}")

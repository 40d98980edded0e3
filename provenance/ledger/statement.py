"""in-toto Statement v1 (in-toto/attestation, spec/v1/statement.md): what a ledger entry says, about which files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .encoding import canonical_json, loads_json
from .errors import MalformedError

__all__ = ["STATEMENT_TYPE", "make_statement", "parse_statement"]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _malformed(detail: str) -> MalformedError:
    return MalformedError("statement_malformed", detail)


def make_statement(subjects: Sequence[tuple[str, str]], predicate_type: str, predicate: dict[str, Any]) -> bytes:
    """The RFC 8785 bytes of an in-toto Statement v1 about ``subjects`` (``(name, lowercase sha256 hex)`` pairs).

    ``{"_type", "subject": [{"name", "digest": {"sha256"}}], "predicateType", "predicate"}`` per the Statement
    layer's schema (in-toto attestation spec v1, statement.md). Raises :class:`MalformedError`
    ``statement_malformed`` for an empty subject list, a digest that is not 64 lowercase hex digits, or a predicate
    that is not a JSON object.
    """
    if not subjects:
        raise _malformed("a statement has at least one subject")
    subject_list = []
    for name, digest in subjects:
        if not isinstance(name, str) or not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise _malformed(f"subject {name!r}: the sha256 digest must be 64 lowercase hexadecimal digits")
        subject_list.append({"name": name, "digest": {"sha256": digest}})
    if not isinstance(predicate_type, str) or not predicate_type:
        raise _malformed("predicateType is a non-empty string (a type URI)")
    if not isinstance(predicate, dict):
        raise _malformed("the predicate is a JSON object")
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subject_list,
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    try:
        return canonical_json(statement)
    except MalformedError as exc:
        raise _malformed(exc.detail) from None


def parse_statement(payload: bytes) -> dict[str, Any]:
    """Parse and validate the bytes of an in-toto Statement v1 (in-toto attestation spec v1, statement.md).

    Checks ``_type``, a non-empty ``subject`` list whose items each carry a ``digest`` with a lowercase hex
    ``sha256`` (and string ``name`` if present), a non-empty string ``predicateType`` and an object ``predicate``.
    Unknown fields are kept and otherwise ignored, as the spec's parsing rules require; an absent ``predicate`` is
    returned as ``{}`` ("Unset is treated the same as set-but-empty"). Raises :class:`MalformedError`
    ``statement_malformed``.
    """
    statement = loads_json(payload, code="statement_malformed", what="the statement")
    if not isinstance(statement, dict):
        raise _malformed("a statement is a JSON object")
    if statement.get("_type") != STATEMENT_TYPE:
        raise _malformed(f'"_type" must be {STATEMENT_TYPE!r}')
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise _malformed('"subject" is a non-empty list')
    for number, subject in enumerate(subjects):
        if not isinstance(subject, dict):
            raise _malformed(f"subject[{number}] is an object")
        if "name" in subject and not isinstance(subject["name"], str):
            raise _malformed(f"subject[{number}].name is a string")
        digest = subject.get("digest")
        if not isinstance(digest, dict) or not all(isinstance(value, str) for value in digest.values()):
            raise _malformed(f"subject[{number}].digest is an object of hex strings")
        sha256 = digest.get("sha256")
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise _malformed(f"subject[{number}].digest.sha256 is 64 lowercase hexadecimal digits")
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise _malformed('"predicateType" is a non-empty string')
    predicate = statement.get("predicate", {})
    if not isinstance(predicate, dict):
        raise _malformed('"predicate" is an object')
    if "predicate" not in statement:
        statement["predicate"] = predicate
    return statement

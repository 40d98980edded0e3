"""in-toto Statement v1."""

from __future__ import annotations

import json

import pytest

from provenance.ledger import STATEMENT_TYPE, MalformedError, canonical_json, make_statement, parse_statement

DIGEST = "a" * 64


def test_make_and_parse():
    payload = make_statement([("cue.wav", DIGEST)], "https://example.com/p/v1", {"k": [1, "v"]})
    assert payload == canonical_json(
        {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": "cue.wav", "digest": {"sha256": DIGEST}}],
            "predicateType": "https://example.com/p/v1",
            "predicate": {"k": [1, "v"]},
        }
    )
    assert parse_statement(payload)["subject"][0]["digest"]["sha256"] == DIGEST


def test_the_spec_allows_extra_fields_other_digests_and_no_predicate():
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"digest": {"sha256": DIGEST, "sha512": "b" * 128}, "uri": "x"}],
        "predicateType": "t",
        "extension": True,
    }
    parsed = parse_statement(json.dumps(statement).encode())
    assert parsed["predicate"] == {}
    assert parsed["extension"] is True


@pytest.mark.parametrize(
    "make_args",
    [
        ([], "t", {}),
        ([("n", "A" * 64)], "t", {}),
        ([("n", "a" * 63)], "t", {}),
        ([("n", DIGEST)], "", {}),
        ([("n", DIGEST)], "t", []),
        ([("n", DIGEST)], "t", {"big": 2**60}),
    ],
)
def test_make_statement_refuses(make_args):
    with pytest.raises(MalformedError) as raised:
        make_statement(*make_args)
    assert raised.value.code == "statement_malformed"


GOOD = {"_type": STATEMENT_TYPE, "subject": [{"name": "n", "digest": {"sha256": DIGEST}}], "predicateType": "t"}


@pytest.mark.parametrize(
    "change",
    [
        {"_type": "https://in-toto.io/Statement/v0.1"},
        {"subject": []},
        {"subject": "n"},
        {"subject": [{"name": "n"}]},
        {"subject": [{"name": 1, "digest": {"sha256": DIGEST}}]},
        {"subject": [{"name": "n", "digest": {"sha1": "a" * 40}}]},
        {"subject": [{"name": "n", "digest": {"sha256": DIGEST.upper()}}]},
        {"subject": [{"name": "n", "digest": {"sha256": DIGEST, "md5": 5}}]},
        {"predicateType": 5},
        {"predicate": "p"},
    ],
)
def test_parse_statement_refuses(change):
    with pytest.raises(MalformedError) as raised:
        parse_statement(json.dumps({**GOOD, **change}).encode())
    assert raised.value.code == "statement_malformed"


@pytest.mark.parametrize("payload", [b"", b"[]", b"\xff", b'{"_type":1,"_type":2}'])
def test_parse_statement_refuses_non_statements(payload):
    with pytest.raises(MalformedError):
        parse_statement(payload)

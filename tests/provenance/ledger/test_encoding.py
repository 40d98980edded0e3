"""RFC 8785 canonical JSON, strict RFC 4648 base64, strict JSON input."""

from __future__ import annotations

import base64

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.ledger import MalformedError, b64, canonical_json, unb64
from provenance.ledger.encoding import loads_json


def test_canonical_json_rfc8785_examples():
    # RFC 8785 §3.2.3: members sorted by UTF-16 code units ("\u20ac" sorts before "\ud83d\ude00" there, unlike UTF-8).
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'
    assert canonical_json({"\U0001f600": 1, "\u20ac": 2}) == '{"\u20ac":2,"\U0001f600":1}'.encode()
    assert canonical_json("\u2028\n\x1f") == b'"\xe2\x80\xa8\\n\\u001f"'
    with pytest.raises(MalformedError):
        canonical_json(2**53)
    with pytest.raises(MalformedError):
        canonical_json(float("nan"))


@given(st.binary(max_size=100))
def test_base64_round_trip(data):
    assert unb64(b64(data)) == data
    assert b64(data) == base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "text",
    ["A", "AA", "AAA", "AA=", "AA==A", "AB==", "AAB=", "-_8=", "AA ==", " AA==", "AA==\n", "A===", "====", "ÀA==", 5],
)
def test_unb64_is_strict(text):
    with pytest.raises(MalformedError) as raised:
        unb64(text)
    assert raised.value.code == "base64_invalid"


def test_unb64_accepts_empty_and_canonical():
    assert unb64("") == b""
    assert unb64("AA==") == b"\x00"
    assert unb64("AAE=") == b"\x00\x01"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"\xef\xbb\xbf{}",
        b'{"a":1,"a":2}',
        b'{"a":[{"b":1,"b":1}]}',
        b"NaN",
        b"[Infinity]",
        b"{",
        b"[" * 100000,
    ],
)
def test_loads_json_is_strict(data):
    with pytest.raises(MalformedError) as raised:
        loads_json(data, code="x_malformed", what="the thing")
    assert raised.value.code == "x_malformed"
    assert "the thing" in raised.value.detail


def test_loads_json_accepts_plain_json():
    assert loads_json(b'{"a": [1, 2.5, "\\u00e9"]}', code="c", what="w") == {"a": [1, 2.5, "é"]}
    assert loads_json('{"a": 1}', code="c", what="w") == {"a": 1}


def test_errors_are_one_line_and_picklable():
    import pickle

    from provenance.ledger import LedgerError, VerificationError

    error = VerificationError("inclusion_proof_invalid", "the proof\ndoes not match", index=3)
    assert str(error) == "entry 3: inclusion_proof_invalid: the proof does not match"
    assert (
        str(MalformedError("bundle_malformed", "entries must be a list")) == "bundle_malformed: entries must be a list"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is VerificationError and (copy.code, copy.detail, copy.index) == (error.code, error.detail, 3)
    assert isinstance(copy, LedgerError)
    assert error.to_json() == {"code": "inclusion_proof_invalid", "detail": "the proof\ndoes not match", "index": 3}


_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(_JSON)
def test_canonical_json_writes_what_rfc_8785_writes_or_refuses_alike(value):
    """Plain values are written by the standard library; whatever the path, the bytes are the reference's."""
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(MalformedError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U0001f600": 2},  # code point order and UTF-16 order disagree
        {"b": '\x00\x1f\x7f\u2028"\\', "a": [True, None, -(2**53) + 1]},
        {"n": 2**53 - 1},
    ],
)
def test_canonical_json_edge_cases_match_rfc_8785(value):
    assert canonical_json(value) == rfc8785.dumps(value)

"""The record schemas' compiled check against jsonschema, which stays the reference for what a schema means."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from provenance.errors import ProvenanceError
from provenance.records import SCHEMAS, compile_schema, predicate_check

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def near(schema: dict) -> st.SearchStrategy:
    """Values that mostly fit ``schema``, with every kind of near miss mixed in: a wrong type anywhere, a missing
    required member, an unknown member, a number on either side of a minimum, a string at either side of its length
    limit or off its pattern, 1.0 where an integer is wanted."""
    return _rarely(JSON_VALUES, _fitting(schema))


def _rarely(miss: st.SearchStrategy, otherwise: st.SearchStrategy) -> st.SearchStrategy:
    """``miss`` one time in 25 (by a middle number: hypothesis favours the ends of a range): a record has many
    members, and each must mostly fit for the others to be tested."""
    return st.integers(0, 24).flatmap(lambda n: miss if n == 12 else otherwise)


def _fitting(schema: dict) -> st.SearchStrategy:
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return _rarely(st.just(values[0].upper() + "x"), st.sampled_from(values))
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return _rarely(st.text(max_size=3), st.from_regex(schema["pattern"], fullmatch=True))
        if "maxLength" in schema:
            most = schema["maxLength"]
            return _rarely(st.integers(most - 1, most + 1).map(lambda n: "é" * n), st.text(max_size=3))
        return st.text(max_size=3)
    if kind in ("integer", "number"):
        least = schema.get("minimum", 0)
        fitting = st.integers(least, least + 3)
        fitting = st.one_of(fitting, fitting.map(float) if kind == "integer" else st.floats(least, least + 1))
        missing = st.one_of(
            st.booleans(), st.just(least - 1), st.just(least + 0.5) if kind == "integer" else st.nothing()
        )
        return _rarely(missing, fitting)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(near(schema["items"]), max_size=3)
    if kind == "object":
        return _objects(schema)
    raise AssertionError(f"no strategy for {schema}")


def _objects(schema: dict) -> st.SearchStrategy:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    unknown = near(extra) if isinstance(extra, dict) else JSON_VALUES

    @st.composite
    def build(draw):
        value = {name: draw(near(properties[name])) for name in required}
        for name, sub in properties.items():
            if name not in required and draw(st.booleans()):
                value[name] = draw(near(sub))
        if required and draw(st.integers(0, 9)) == 5:
            del value[draw(st.sampled_from(required))]
        if not properties:  # a map (thresholds, detectors): its members are all "additional"
            value.update(draw(st.dictionaries(st.text(max_size=3), unknown, max_size=3)))
        elif draw(st.integers(0, 9)) == 5:
            value[draw(st.sampled_from(["zz", "other", "Decision"]))] = draw(unknown)
        return value

    return build()


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_compiled_check_agrees_with_jsonschema(kind, data):
    value = data.draw(near(SCHEMAS[kind]))
    assert compile_schema(SCHEMAS[kind])(value) == Draft202012Validator(SCHEMAS[kind]).is_valid(value)


@pytest.mark.parametrize(
    "schema, valid, invalid",
    [
        ({"type": "integer", "minimum": 0}, [0, 3, 2.0], [-1, 0.5, True, "1", None]),
        ({"type": "number"}, [0.5, -3], [False, "0.5"]),
        ({"type": "string", "maxLength": 2}, ["", "éé"], ["abc", 1]),
        ({"type": "string", "pattern": "^[0-9a-f]{2}$"}, ["0a"], ["0A", "0a0"]),
        ({"enum": ["pass", "flag"]}, ["pass"], ["Pass", 1, None]),
        ({"const": "x"}, ["x"], ["y"]),
        ({"type": "array", "items": {"type": "boolean"}}, [[], [True]], [[1], {}]),
        ({"minimum": 3}, [3, "anything", None], [2]),
        (
            {
                "type": "object",
                "required": ["a"],
                "properties": {"a": {"type": "string"}},
                "additionalProperties": False,
            },
            [{"a": ""}],
            [{}, {"a": 1}, {"a": "", "b": 1}, []],
        ),
        ({"type": "object", "additionalProperties": {"type": "number"}}, [{}, {"x": 1}], [{"x": "1"}]),
    ],
)
def test_each_keyword_means_what_jsonschema_says(schema, valid, invalid):
    check, reference = compile_schema(schema), Draft202012Validator(schema)
    for value in valid:
        assert check(value) and reference.is_valid(value), value
    for value in invalid:
        assert not check(value) and not reference.is_valid(value), value


class _Hiding(dict):
    def items(self):
        return iter([("a", "")])


class _Empty(list):
    def __iter__(self):
        return iter(())


class _Agreeable(int):
    def __ge__(self, other):
        return True


class _Text(str):
    pass


@pytest.mark.parametrize(
    "schema, value",
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
            _Hiding(a="", b=1),
        ),
        ({"additionalProperties": False}, _Hiding(b=1)),
        ({"type": "array", "items": {"type": "string"}}, _Empty([1])),
        ({"items": {"type": "string"}}, _Empty([1])),
        ({"type": "integer", "minimum": 0}, _Agreeable(-5)),
        ({"minimum": 0}, Decimal(-1)),
        ({"maxLength": 1}, _Text("ab")),
        ({"enum": ["a"]}, _Text("a")),
    ],
)
def test_values_of_other_classes_are_left_to_jsonschema(schema, value):
    """Only what JSON parses into passes the compiled check: anything else could answer jsonschema's questions (its
    items, its order) otherwise than the compiled check asks them. Failing here hands it to jsonschema."""
    assert not compile_schema(schema)(value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 1},
        {"oneOf": [{"type": "string"}]},
        {"enum": [1, 2]},
        {"const": None},
        {"type": ["string", "null"]},
        {"type": "text"},
        {"items": True},
    ],
)
def test_a_keyword_without_a_compiled_check_is_refused(schema):
    with pytest.raises(ValueError):
        compile_schema(schema)


def test_a_refused_predicate_is_named_by_jsonschema():
    with pytest.raises(ProvenanceError) as caught:
        predicate_check("clearance", {"decision": "cleared", "decided_by": "legal", "reason": "ok", "uses": [3]})
    assert caught.value.code == "predicate_invalid"
    assert "uses/0" in caught.value.detail


@pytest.mark.parametrize(
    "kind, predicate",
    [
        ("clearance", {"decision": "cleared", "decided_by": "legal", "reason": "ok", "corrects": {"index": 0}}),
        ("key", {"event": "rotation", "retired_key_id": "ab" * 32 + "\n", "new_key": {}}),
    ],
)
def test_a_digest_with_a_final_newline_is_refused(kind, predicate):
    """Python's "$" matches before a final newline, where ECMA-262's (the schemas' dialect) does not."""
    if kind == "clearance":
        predicate["corrects"]["leaf_hash"] = "ab" * 32 + "\n"
    with pytest.raises(ProvenanceError) as caught:
        predicate_check(kind, predicate)
    assert caught.value.code == "predicate_invalid"


class _Posing(str):
    """A member name that compares and hashes as "decision", but is written as what it holds."""

    def __eq__(self, other):
        return other == "decision" or str.__eq__(self, other)

    def __hash__(self):
        return hash("decision")


def test_a_predicate_is_judged_as_it_would_be_signed():
    predicate = {_Posing("bogus"): "cleared", "decided_by": "legal", "reason": "ok"}
    assert Draft202012Validator(SCHEMAS["clearance"]).is_valid(predicate)  # fooled, as any reader of the object is
    with pytest.raises(ProvenanceError) as caught:
        predicate_check("clearance", predicate)
    assert caught.value.code == "predicate_invalid" and "decision" in caught.value.detail
    with pytest.raises(ProvenanceError) as caught:
        predicate_check("clearance", {"decision": "cleared", "decided_by": "legal", "reason": "ok", 3: "x"})
    assert caught.value.code == "predicate_invalid"

"""The fastjsonschema shortcut must never accept data that jsonschema (the reference) rejects."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from notifications.demo import DEMO
from notifications.schemas import DataValidator

SCHEMAS: list[Any] = [spec["schema"] for spec in DEMO] + [
    {"type": "object", "additionalProperties": False,
     "properties": {"a": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10},
                    "b": {"enum": ["x", "y", None]}}},
    {"type": "array", "items": {"type": ["string", "number"], "maxLength": 3},
     "minItems": 1, "uniqueItems": True, "contains": {"const": "a"}},
    {"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "boolean"}]},
    {"oneOf": [{"type": "number", "minimum": 1}, {"type": "integer"}]},
    {"type": "object", "if": {"required": ["kind"], "properties": {"kind": {"const": "p"}}},
     "then": {"required": ["price"]}, "else": {"not": {"required": ["price"]}},
     "propertyNames": {"maxLength": 5}, "patternProperties": {"^n": {"type": "null"}},
     "minProperties": 1, "maxProperties": 3},
    {"type": "number", "minimum": 1.5, "maximum": 3},
    {"allOf": [{"type": "object", "required": ["a"]}, {"properties": {"a": True, "b": False}}]},
    # not portable: jsonschema alone (enum of numbers, $ref/$defs, prefixItems)
    {"enum": [1, True]},
    {"$defs": {"n": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/$defs/n"}},
    {"type": "array", "prefixItems": [{"type": "string"}], "items": False},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 15) | st.floats(-5, 15, allow_nan=False)
    | st.sampled_from(["", "a", "x", "y", "p", "abc", "abcd", "ABC", "n1"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "b", "kind", "price", "n1", "toolong",
                                       "username", "order_id", "total", "items", "name",
                                       "qty", "reset_url", "headline", "body"]),
                      children, max_size=5),
    max_leaves=12,
)


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
@settings(max_examples=150, deadline=None)
@given(data=json_values)
def test_it_gives_the_reference_verdict(schema: Any, data: Any) -> None:
    reference = Draft202012Validator(schema).is_valid(data)
    assert (DataValidator(schema).first_error(data) is None) == reference


def test_portable_schemas_take_the_fast_path_and_others_do_not() -> None:
    fast = [DataValidator(s).fast is not None for s in SCHEMAS]
    assert fast == [True] * (len(SCHEMAS) - 3) + [False] * 3


def test_errors_come_from_jsonschema_with_their_path() -> None:
    validator = DataValidator(DEMO[1]["schema"])  # order.placed
    data = {"order_id": 1, "total": "$1", "items": [{"name": "Tea", "qty": 0}]}
    assert validator.first_error(data) == ("0 is less than the minimum of 1", "$.items[0].qty")

"""Checking event data against its event type's JSON Schema (Draft 2020-12), fast.

jsonschema is the reference: it decides, and its best_match() error (message and path) is what the
producer sees. It costs ~10 µs for even a small object, a tenth of what a batched event may cost
in all, so schemas written only with keywords that mean the same in Draft 7 and Draft 2020-12 are
also compiled with fastjsonschema (to plain Python, ~1 µs). Its "valid" is trusted; its "invalid"
is re-checked by jsonschema, so a disagreement can only cost time, never accept bad data, as long
as fastjsonschema never accepts what jsonschema rejects on the keywords below (tests/notifications/
test_schemas.py checks that on generated data). Anything else uses jsonschema alone.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

# Keywords with the same meaning in Draft 7 and Draft 2020-12 (no $ref/$defs, no array-form
# `items`, no dependencies, no multipleOf float subtleties, no formats: both treat `format` as an
# annotation here).
_PLAIN = {
    "type", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxProperties",
    "minProperties", "required", "format", "title", "description", "default", "examples",
    "$comment", "readOnly", "writeOnly", "deprecated",
}
_SUBSCHEMA = {"additionalProperties", "propertyNames", "items", "contains", "not", "if", "then",
              "else"}
_SCHEMA_MAPS = {"properties", "patternProperties"}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}
_VALUE_LISTS = {"enum", "const"}  # only with strings/null: Python's 1 == True would blur them


def _portable(schema: Any) -> bool:
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        if key in _PLAIN:
            continue
        if key in _SUBSCHEMA:
            ok = _portable(value)
        elif key in _SCHEMA_MAPS:
            ok = isinstance(value, dict) and all(_portable(v) for v in value.values())
        elif key in _SCHEMA_LISTS:
            ok = isinstance(value, list) and all(_portable(v) for v in value)
        elif key in _VALUE_LISTS:
            values = value if key == "enum" else [value]
            ok = isinstance(values, list) and all(v is None or isinstance(v, str) for v in values)
        else:
            ok = False
        if not ok:
            return False
    return True


class DataValidator:
    def __init__(self, schema: Any) -> None:
        self.reference = Draft202012Validator(schema)
        self.fast = None
        if _portable(schema):
            try:
                self.fast = fastjsonschema.compile(schema, use_default=False, use_formats=False)
            except fastjsonschema.JsonSchemaDefinitionException:
                self.fast = None

    def first_error(self, data: Any) -> tuple[str, str] | None:
        """(message, JSON path) of the most relevant error, or None when `data` is valid."""
        if self.fast is not None:
            try:
                self.fast(data)
                return None
            except fastjsonschema.JsonSchemaValueException:
                pass  # jsonschema decides, and words the error
        elif self.reference.is_valid(data):
            return None
        error = best_match(self.reference.iter_errors(data))
        return None if error is None else (error.message, error.json_path)


@lru_cache(maxsize=256)
def validator_for(schema_json: str) -> DataValidator:
    return DataValidator(json.loads(schema_json))

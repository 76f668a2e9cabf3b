"""JSON in and out with orjson: a 1,000-event batch is ~1 MB each way.

DRF's JSONRenderer runs the stdlib encoder with a Python `default()` for every datetime (four per
message); its JSONParser decodes through a codecs reader. orjson does both in C. Types orjson does
not know (Decimal, lazy translation strings, durations) go through DRF's own encoder, so the
answers mean the same; datetimes keep their microseconds and end in `Z` like DRF's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_fallback = JSONEncoder()
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


class ORJSONRenderer(JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, default=_fallback.default, option=_OPTIONS)


class ORJSONParser(JSONParser):
    renderer_class = ORJSONRenderer

    def parse(self, stream: Any, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        # orjson rejects NaN/Infinity (as DRF's strict mode does) and invalid UTF-8.
        try:
            return orjson.loads(stream.read())
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc

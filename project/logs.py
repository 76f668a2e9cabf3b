"""Log formats: LOG_FORMAT=text (default) or json (one JSON object per line).

Structured events (notifications/events.py) pass their fields as `extra`: the JSON formatter
(python-json-logger, serialising with orjson) writes them as keys of the line's object; the text
formatter appends them to the message as key=value, so a terminal shows the same facts.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.core import RESERVED_ATTRS

_STANDARD = frozenset(RESERVED_ATTRS) | {"message", "asctime", "taskName"}


class TextFormatter(logging.Formatter):
    """The plain format, plus the record's extra fields as ` key=value` after the message."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [(k, v) for k, v in record.__dict__.items()
                 if k not in _STANDARD and not k.startswith("_")]
        if not extra:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        fields = " ".join(f"{k}={_text(v)}" for k, v in extra)
        return f"{head} {fields}{sep}{tail}"


def _text(value: object) -> str:
    text = str(value)
    return repr(text) if (not text or any(c.isspace() or c in "\"'=" for c in text)) else text

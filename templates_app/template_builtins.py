"""The only tags and filters email templates may use.

Imported by the restricted engine in `rendering.py` as its sole tag library. Tags are an
allowlist: anything that loads other templates or libraries (`load`, `include`, `extends`,
`block`), reaches into the project (`url`, `csrf_token`) or dumps the context (`debug`) is simply
not registered, so using it is a compile error ("Invalid block tag") at save time.
"""

from __future__ import annotations

from django.template import Library, defaultfilters, defaulttags

ALLOWED_TAGS = (
    "autoescape",
    "comment",
    "cycle",
    "filter",
    "firstof",
    "for",
    "if",
    "ifchanged",
    "now",
    "regroup",
    "resetcycle",
    "spaceless",
    "templatetag",
    "verbatim",
    "widthratio",
    "with",
)

register = Library()
register.tags.update({name: defaulttags.register.tags[name] for name in ALLOWED_TAGS})
# Every built-in filter is pure string/number/date formatting.
register.filters.update(defaultfilters.register.filters)

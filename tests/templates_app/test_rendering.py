from __future__ import annotations

from typing import Any

import pytest
from django.utils.safestring import SafeData

from templates_app import rendering
from templates_app.exceptions import TemplateCompileError, TemplateRenderError
from templates_app.models import TemplateVersion
from templates_app.rendering import RenderedEmail, compile_check, render_version
from templates_app.services import template_create


def render_source(*, subject: str, html_body: str, text_body: str = "",
                  context: dict[str, Any]) -> RenderedEmail:
    """Render sources as an unsaved version (what the drain does with a saved one)."""
    version = TemplateVersion(subject=subject, html_body=html_body, text_body=text_body)
    return render_version(version, context)

FORBIDDEN = [
    "{% load static %}",
    '{% include "base.html" %}',
    '{% extends "base.html" %}',
    "{% block content %}{% endblock %}",
    "{% debug %}",
    '{% url "admin:index" %}',
    "{% csrf_token %}",
]


@pytest.mark.parametrize("tag", FORBIDDEN)
def test_it_rejects_forbidden_tags_at_compile_time_with_the_line(tag: str) -> None:
    html = f"<p>Hello</p>\n<p>{{{{ name }}}}</p>\n{tag}\n"

    with pytest.raises(TemplateCompileError) as info:
        compile_check(subject="Hi", html_body=html)

    error = info.value
    tag_name = tag.split()[1]
    assert (error.field, error.line) == ("html_body", 3)
    assert f"'{tag_name}'" in error.reason
    assert str(error).startswith(f"html_body line 3: Invalid block tag on line 3: '{tag_name}'")


def test_it_reports_the_first_failing_field() -> None:
    with pytest.raises(TemplateCompileError) as info:
        compile_check(subject="Hi", html_body="<p>ok</p>", text_body="a\n{{ name|nosuchfilter }}")

    assert (info.value.field, info.value.line) == ("text_body", 2)
    assert "nosuchfilter" in info.value.reason


def test_it_reports_an_unclosed_tag_at_its_opening_line() -> None:
    with pytest.raises(TemplateCompileError) as info:
        compile_check(subject="{% if vip %}VIP offer", html_body="<p>ok</p>")

    assert (info.value.field, info.value.line) == ("subject", 1)


def test_it_keeps_the_safe_builtin_tags_and_filters() -> None:
    email = render_source(
        subject="{% firstof nickname name %}",
        html_body=(
            "{% for item in items %}{% cycle 'odd' 'even' as row silent %}"
            '<li class="{{ row }}">{{ item|upper }}</li>{% endfor %}'
            "{% with total=items|length %}<p>{{ total }} items</p>{% endwith %}"
            "{% if missing %}never{% endif %}{% comment %}hidden{% endcomment %}"
            "{% verbatim %}{{ raw }}{% endverbatim %}"
        ),
        context={"name": "Ada", "items": ["a", "b"]},
    )

    assert email.subject == "Ada"
    assert '<li class="odd">A</li><li class="even">B</li>' in email.html
    assert "<p>2 items</p>" in email.html
    assert "never" not in email.html and "hidden" not in email.html
    assert "{{ raw }}" in email.html


def test_it_escapes_html_but_not_the_subject_or_text() -> None:
    context = {"name": "<b>Tom & Jerry</b>"}

    email = render_source(
        subject="Hi {{ name }}",
        html_body="<p>{{ name }}</p>",
        text_body="Hi {{ name }}",
        context=context,
    )

    assert "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>" in email.html
    assert email.subject == "Hi <b>Tom & Jerry</b>"
    assert email.text == "Hi <b>Tom & Jerry</b>"


def test_it_collapses_the_subject_to_one_line() -> None:
    email = render_source(
        subject="  Hello\n{{ name }}\r\n", html_body="<p>x</p>", context={"name": "Ada\nBcc: x@y"}
    )

    assert email.subject == "Hello Ada Bcc: x@y"


def test_it_derives_the_text_part_from_the_html_without_wrapping() -> None:
    long_sentence = "word " * 40
    html = (
        "<html><head><style>p { color: red; }</style></head><body>"
        "<h1>Welcome, {{ name }}</h1>"
        f"<p>{long_sentence}</p>"
        '<p>Confirm <a href="https://example.com/confirm?id=1&amp;t=2">your address</a>.</p>'
        "</body></html>"
    )

    email = render_source(subject="s", html_body=html, context={"name": "Ada"})

    assert "# Welcome, Ada" in email.text
    assert "[your address](https://example.com/confirm?id=1&t=2)" in email.text
    assert long_sentence.strip() in email.text  # one line, not wrapped at 78 columns
    assert "color" not in email.text  # the <style> block is not text
    assert "<" not in email.text


def test_it_uses_the_text_body_when_given() -> None:
    email = render_source(
        subject="s", html_body="<p>HTML</p>", text_body="Plain {{ name }}", context={"name": "Ada"}
    )

    assert email.text == "Plain Ada"


def test_it_inlines_style_blocks_into_style_attributes() -> None:
    html = (
        "<html><head><style>p.lead { color: #ff0000; } "
        "@media (max-width: 600px) { p { font-size: 18px; } }</style></head>"
        '<body><p class="lead">Hi</p></body></html>'
    )

    email = render_source(subject="s", html_body=html, context={})

    assert '<p class="lead" style="color: #ff0000;">Hi</p>' in email.html
    assert "@media (max-width: 600px)" in email.html  # cannot be inlined: kept in <style>
    assert "p.lead" not in email.html


def test_it_never_loads_linked_stylesheets(tmp_path) -> None:
    css = tmp_path / "evil.css"
    css.write_text("p { color: #123456; }")
    html = (
        f'<html><head><link rel="stylesheet" href="{css}">'
        '<link rel="stylesheet" href="https://example.invalid/x.css"></head>'
        "<body><p>Hi</p></body></html>"
    )

    email = render_source(subject="s", html_body=html, context={})

    assert "#123456" not in email.html
    assert "<p>Hi</p>" in email.html


def test_it_wraps_render_failures_with_the_field_and_reason() -> None:
    html = "<ul>\n{% for key, value in pairs %}<li>{{ key }}</li>{% endfor %}</ul>"

    with pytest.raises(TemplateRenderError) as info:
        render_source(subject="s", html_body=html, context={"pairs": [[1, 2, 3]]})

    assert info.value.field == "html_body"
    assert "html_body" in str(info.value)
    assert "line 2" in str(info.value)
    assert "Need 2 values to unpack" in str(info.value)


def test_it_wraps_exceptions_raised_by_context_values() -> None:
    class Broken:
        @property
        def name(self) -> str:
            raise RuntimeError("database is gone")

    with pytest.raises(TemplateRenderError, match="subject.*RuntimeError: database is gone"):
        render_source(
            subject="Hi {{ user.name }}", html_body="<p>x</p>", context={"user": Broken()}
        )


def test_it_does_not_change_the_callers_context() -> None:
    context = {"items": ["a"]}

    render_source(subject="s", html_body="{% cycle 'x' 'y' as row %}{{ row }}", context=context)

    assert context == {"items": ["a"]}


def test_it_renders_a_saved_version(db) -> None:
    template = template_create(
        key="welcome", subject="Welcome {{ name }}", html_body="<p>Hi {{ name }}</p>"
    )
    version = template.versions.get()

    email = render_version(version, {"name": "Ada"})

    assert email.subject == "Welcome Ada"
    assert "<p>Hi Ada</p>" in email.html
    assert email.text == "Hi Ada\n"


def test_it_compiles_a_version_once_for_many_renders(db, monkeypatch) -> None:
    template = template_create(key="bulk", subject="Hi {{ n }}", html_body="<p>{{ n }}</p>")
    version = template.versions.get()
    compiled_sources: list[str] = []
    original = rendering._engine.from_string

    def counting_from_string(source: str):
        compiled_sources.append(source)
        return original(source)

    monkeypatch.setattr(rendering._engine, "from_string", counting_from_string)

    results = [render_version(version, {"n": i}).subject for i in range(3)]

    assert results == ["Hi 0", "Hi 1", "Hi 2"]
    assert len(compiled_sources) <= 2  # subject and HTML, once (or zero if already cached)


def test_it_raises_a_render_error_for_a_stored_version_that_does_not_compile(db) -> None:
    template = template_create(key="legacy", subject="s", html_body="<p>ok</p>")
    version = template.versions.get()
    # Written before the engine was restricted (bypasses the service on purpose).
    version.html_body = "{% load static %}"

    with pytest.raises(TemplateRenderError, match="does not compile.*'load'"):
        render_version(version, {})


def test_it_returns_plain_strings_so_pages_showing_them_escape_them() -> None:
    email = render_source(
        subject="{{ name }}", html_body="<p>x</p>", text_body="{{ name }}", context={"name": "<b>"}
    )

    assert not any(isinstance(part, SafeData) for part in (email.subject, email.html, email.text))

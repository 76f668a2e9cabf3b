"""Property-based API test from the OpenAPI schema: no 5xx, and every answer matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from project.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def auth_headers(token: str, no_wakeups: Any) -> Iterator[dict[str, str]]:
    # Calls go straight to the WSGI app, which would close the test's DB connection at the end
    # of each request; Django's own test client unhooks the same signals.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield {"Authorization": f"Bearer {token}"}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_the_api_honours_its_schema(case: Any, auth_headers: dict[str, str]) -> None:
    # Semantics a schema cannot state (send_at in the past, a JSON-Schema-invalid `data`) are
    # refused with a 400 on purpose, so "schema-valid data is accepted" is not checked.
    case.call_and_validate(headers=auth_headers, excluded_checks=[positive_data_acceptance])

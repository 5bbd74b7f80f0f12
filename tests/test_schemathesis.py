"""A bounded schemathesis run over the OpenAPI schema, served by the WSGI application on
tenant A's host, as a municipal staff member of A with an API token: every operation
gets generated valid and invalid input (and its resident's real id), and no answer may
be a 5xx or contradict the schema (undocumented status, content type or body)."""
import contextlib

import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.conftest import HOST_A, PASSWORD, TenantClient
from tests.watch.conftest import areas_a, hanako  # noqa: F401 - shared fixtures

EXAMPLES_PER_OPERATION = 30
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")


@contextlib.contextmanager
def wsgi_app_in_test_transaction():
    """Django's WSGI handler inside the test's transaction: like the test client (which
    reconnects them after each of its requests), it must not close the connection at
    the start and end of each request."""
    from django.core.wsgi import get_wsgi_application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_generated_api_calls_get_no_5xx_and_only_documented_answers(staff_a, hanako):  # noqa: F811
    token = TenantClient(HOST_A).post("/api/v1/auth/token/", {"username": "staff-a", "password": PASSWORD},
                                      content_type="application/json").json()["token"]
    headers = {"Host": HOST_A, "Authorization": f"Token {token}"}
    with wsgi_app_in_test_transaction() as app:
        run(schemathesis.openapi.from_wsgi("/api/v1/schema/", app, headers={"Host": HOST_A}), headers, hanako)


def run(schema, headers: dict, resident) -> None:
    checks = [getattr(schemathesis.checks, name) for name in CHECKS]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    calls = 0

    for operation in operations:
        strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
        if "{id}" in operation.path:  # also the real resident (or its device-less id), not only random ids
            strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"id": resident.pk}))

        @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(strategies))
        def call(case):
            nonlocal calls
            calls += 1
            response = case.call(headers=headers)
            case.validate_response(response, checks=checks, headers=headers)

        call()
    print(f"\nschemathesis: {len(operations)} operations, {calls} calls")

"""schemathesis against the live OpenAPI schema of the real app: every operation, with an admin
key, data generated from the schema (valid and invalid); no answer may be a 5xx."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.python import asgi as schemathesis_asgi  # noqa: E402

from tests.fuzz.conftest import FuzzApp, build_fuzz_app  # noqa: E402

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]


@pytest.fixture(scope="module")
def schema_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzApp]:
    fuzz = build_fuzz_app(tmp_path_factory.mktemp("schema-fuzz"))
    yield fuzz
    schemathesis_asgi.shutdown_lifespans()  # schemathesis started the app's lifespan


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_operation_answers_5xx(schema_app: FuzzApp, mode: str) -> None:
    """Each operation in turn, 25 generated cases each: valid data (`positive`), and data
    that breaks the schema (`negative`). schemathesis' lazy pytest schema does not run on
    pytest 9, so the operations are walked here."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", schema_app.app)
    headers = schema_app.auth("admin")
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")), deadline=None,
                  derandomize=not os.environ.get("FUZZ_RANDOM"),
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(GenerationMode(mode)))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            call()
        except Unsatisfiable:  # nothing to break: no parameters and no body (GET /healthz)
            assert mode == "negative", operation.label
            continue
        labels.append(operation.label)
    assert "POST /v1/inspect" in labels and "GET /v1/inspections" in labels, labels

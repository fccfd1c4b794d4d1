"""schemathesis over /openapi.json: every route, fed what its schema allows, answers with
a status and body its schema documents, and never with a server error.

The server runs the small test model with a 256-token context, so no generated request
can run long (every route caps max_tokens by the context), and each operation gets a
bounded number of examples: the run stays within a few minutes of CI.
"""

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.config import EngineConfig
from tests.api.conftest import TEST_MODEL, serve_samples

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 25
# NOTE: schemathesis waits 10 s for a response by default; a /generate of the context's
# 256 tokens on an AVX2 CPU (fp32) took longer in CI. A hang still fails, after this.
READ_TIMEOUT_S = 120
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory) -> Iterator[str]:
    with serve_samples(
        tmp_path_factory.mktemp("fuzzed-data"),
        EngineConfig(model=TEST_MODEL, kv_cache_memory=64 << 20, max_model_len=256),
        max_upload_bytes=1 << 16,
        background_ingest_bytes=0,
    ) as server:
        yield server.url


def test_every_route_answers_as_its_schema_documents(fuzzed_server: str) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_server}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25  # the whole API, not an empty schema
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same examples every run: a failure reproduces
            database=None,
            phases=[Phase.explicit, Phase.generate],  # a failure as it happened, unshrunk
        )
        def call(case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=READ_TIMEOUT_S)

        try:
            call()
        except (Exception, BaseExceptionGroup) as error:  # report every failing operation
            failures.append(f"{operation.label}: {_described(error)[:1500]}")
    assert not failures, "\n\n".join(failures)


def _described(error: BaseException) -> str:
    """The error and, for a group (a flaky case's first failure among them), its members."""
    parts = [str(error)]
    for inner in getattr(error, "exceptions", ()):
        parts.append(f"{type(inner).__name__}: {_described(inner)}")
    return "\n".join(parts)

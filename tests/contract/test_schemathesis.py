"""Property-based requests generated from the OpenAPI document (schemathesis) against a running
platform: whatever a client sends, the answer is never a 5xx. Bounded — a few examples per
operation, no stateful phase — so it fits in ``make test``. SSE endpoints are left out: they
stream until their run ends.

Driven through hypothesis directly (each operation's strategy), not schemathesis' pytest
plugin, which does not run under this pytest version."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from crewyard.testing.platform import PlatformProcess

EXAMPLES_PER_OPERATION = 5

#: Uploads: bytes that are no gzip, and gzip streams that hold no crew (never a build, which
#: would make the run long without testing the API any further).
schemathesis.openapi.media_type(
    "application/gzip", st.one_of(st.binary(max_size=256), st.binary(max_size=4096).map(gzip.compress))
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """Requests with the admin key (else every answer is a 401), without the per-key rate limit
    (else many would be a 429 and never reach their handler)."""
    p = PlatformProcess(tmp_path_factory.mktemp("platform"), env={"CREWYARD_RATE_LIMIT": "0"})
    p.start()
    yield p
    p.stop()


def test_no_request_makes_the_api_fail_with_a_5xx(platform: PlatformProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{platform.api}/schema/openapi.json")
    schema = schema.exclude(path_regex=r"/(events|build-log)$")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=platform.api, headers=platform.headers, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        no_server_error()
    assert operations > 20
    assert not failures, "\n".join(failures)

"""schemathesis against the live ingress's /openapi.json: no 5xx beyond a declared 503, and no
response that violates the schema it publishes (bounded: a few examples per operation).

schemathesis's lazy pytest loader does not run under this pytest, so the test drives each
operation's hypothesis strategy itself; the checks are schemathesis's own, all of them but
`positive_data_acceptance`: command models have cross-field rules JSON Schema cannot state
(e.g. `required_approvals` <= number of approvers), which the ingress rightly answers with 422.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.ingress_support import cli_key, hisho_cli, ingress_process, service_env

if TYPE_CHECKING:
    from collections.abc import Iterator

    from infra.settings import Settings

EXAMPLES_PER_OPERATION = 4


@pytest.fixture(scope="module")
def live_ingress(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    env = service_env(settings, HISHO_INGRESS_RATE_LIMIT="1000000")
    hisho_cli(env, "migrate")
    _, token = cli_key(env, "admin")
    with ingress_process(env, tmp_path_factory.mktemp("ingress")) as ingress:
        yield ingress.url, token
        assert ingress.stop() == 0


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_its_schema(
    live_ingress: tuple[str, str], mode: GenerationMode
) -> None:
    url, token = live_ingress
    # Credentials through schemathesis's own auth config, so it knows which header is auth.
    # A body too large for the ingress (413) is a rejection too, as schemathesis's own list
    # of rejecting statuses does not say.
    rejecting = [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
    config = SchemathesisConfig.from_dict(
        {
            "auth": {"openapi": {"bearer": {"bearer": token}}},
            "checks": {"negative_data_rejection": {"expected-statuses": rejecting}},
        }
    )
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results)  # every operation's schema loads
    assert len(operations) > 30  # every command, the status URL, state reads, operations
    no_invalid_input: list[str] = []
    statuses: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case: Any) -> None:
            note(f"{case.method} {case.formatted_path}")
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            statuses.add(response.status_code)

        try:
            conforms()
        except Unsatisfiable:
            no_invalid_input.append(operation.label)
    # Only operations that take no input at all have no invalid input to send.
    assert set(no_invalid_input) <= {"GET /healthz", "GET /readyz"}
    # The credentials were used: commands were accepted and state was read.
    if mode is GenerationMode.POSITIVE:
        assert {200, 202} <= statuses, statuses

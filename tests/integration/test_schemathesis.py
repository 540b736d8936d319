"""Schemathesis against the running gateway: every check, positive and negative data, no 5xx.

The CLI runs as a subprocess against the session gateway over HTTPS (trusting the test CA),
with a client token for the client routes and the admin token for ``/v1/admin/...``. Every
phase runs (examples, coverage, fuzzing, stateful) with a bounded number of examples.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from security.keystore import KeyRing
from tests.support.api import mint
from tests.support.gateways import ApiClient, Gateway

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 30
SEED = 20240607


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _config(gateway: Gateway, client_token: str, admin_token: str) -> str:
    """schemathesis.toml: auth per route group, bounded generation, documented exceptions."""
    return "\n".join(
        [
            "color = false",
            f"seed = {SEED}",
            f"tls-verify = {_toml_string(str(gateway.ca_file))}",
            "request-timeout = 30",
            f"headers = {{ Authorization = {_toml_string('Bearer ' + client_token)} }}",
            "[generation]",
            f"max-examples = {MAX_EXAMPLES}",
            "[cache]",
            "enabled = false",
            "",
            # A schema-violating body can be refused for its size (413) before any parsing.
            "[checks.negative_data_rejection]",
            "expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]",
            "",
            "[[operations]]",
            'include-path-regex = "^/v1/admin/"',
            f"headers = {{ Authorization = {_toml_string('Bearer ' + admin_token)} }}",
            "",
            # Submission refuses some schema-valid payloads on purpose, beyond the JSON Schema:
            # an Idempotency-Key reused with another body (422, per the IETF idempotency-key
            # draft), a credential-looking value in a plain field (leak guard, 422). So 422 is
            # an expected answer to positive data on the submit routes only.
            # And the body cap (413) is on the whole body, which a per-field schema cannot say.
            "[[operations]]",
            'include-name-regex = "^POST /v1/tasks/[a-z]"',
            "[operations.checks.positive_data_acceptance]",
            'expected-statuses = ["2XX", 401, 403, 404, 409, 413, 422, 429]',
            "",
            # The OAuth2 token endpoint answers a well-formed but unusable grant with 400
            # (unsupported_grant_type, invalid_request, invalid_scope: RFC 6749 section 5.2).
            # Revoking by value needs a token that verifies; any other string is refused (422).
            "[[operations]]",
            'include-name = "POST /v1/admin/tokens/revoke"',
            "[operations.checks.positive_data_acceptance]",
            'expected-statuses = ["2XX", 401, 403, 404, 409, 422, 429]',
            "",
            # Not a link source for the stateful phase: the catalogue's `submit` URLs
            # (/v1/tasks/<task name>) would be taken as /v1/tasks/{task_id} (a UUID), and a GET
            # there is rightly 405. The catalogue is still fuzzed in the other phases.
            "[[operations]]",
            'include-name = "GET /v1/tasks/catalog"',
            "[operations.phases.stateful]",
            "enabled = false",
            "",
            "[[operations]]",
            'include-name = "POST /v1/token"',
            "[operations.checks.positive_data_acceptance]",
            'expected-statuses = ["2XX", 400, 401, 403, 404, 409, 413, 429]',
            "",
        ]
    )


def test_schemathesis_all_checks_find_nothing(
    redis_client: redis.Redis,
    make_client: Any,
    keyring: KeyRing,
    gateway_server: Gateway,
    admin_token: str,
    tmp_path: Path,
) -> None:
    """`schemathesis run --checks all` (positive and negative) reports no failure and no 5xx."""
    client: ApiClient = make_client(
        "tasks:submit:* tasks:read audit:read", rate_limit="100000/minute", max_queued=100_000
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(gateway_server, mint(keyring, client.client_id), admin_token))
    config.chmod(0o600)
    argv = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{gateway_server.url}/openapi.json",
        "--checks",
        "all",
        # DELETE /v1/tasks/{task_id} cancels: a queued or retrying task's record stays
        # readable with status "revoked" (its owner must see what happened), so a read after
        # a cancel is 200 by design, not a use after free. (Whether the stateful phase meets
        # a task that is still cancellable depends on the session worker's timing.)
        "--exclude-checks",
        "use_after_free",
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
    ]
    try:
        result = subprocess.run(
            argv, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
        )
    finally:
        # What the fuzzer leaves (clients, revocations, queued junk, spent token limits) is
        # garbage by construction; tests that run next must not inherit it.
        redis_client.flushdb()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20_000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected is not None, output[-5_000:]
    assert tested is not None, output[-5_000:]
    assert selected[1] == selected[2] == tested[1]  # every operation, none filtered out
    phases = output.split("Test Phases:")[-1].split("Test cases:")[0]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert phase in phases, output[-5_000:]
        assert not re.search(rf"\u23ed\s+{phase}", phases), f"{phase} was skipped"

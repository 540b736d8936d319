"""sslyze finds the gateway's HTTPS and the Redis `taskgate up` starts compliant with
Mozilla's "intermediate" TLS configuration (sslyze's own profile, v5.7)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from certs.material import CertPaths
from taskgate.devstack.redis_server import RedisServer
from tests.support.gateways import Gateway

pytestmark = pytest.mark.integration

_SUMMARY = "COMPLIANCE AGAINST TLS CONFIGURATION"
# sslyze lives in its own environment (`make install` builds it): it pins an older
# cryptography than the project's. TASKGATE_SSLYZE_PYTHON names another interpreter.
_TOOLS_PYTHON = Path(__file__).resolve().parents[2] / ".venv-tools" / "bin" / "python"


def _sslyze_python() -> str:
    chosen = Path(os.environ.get("TASKGATE_SSLYZE_PYTHON", str(_TOOLS_PYTHON)))
    if not chosen.exists():
        pytest.fail(f"no sslyze environment at {chosen}: run `make install`", pytrace=False)
    return str(chosen)


def _sslyze(target: str, ca_file: Path, *client_auth: str) -> None:
    """Scan ``target`` against the intermediate profile; fail with sslyze's summary unless it
    exits 0 *and* calls the target compliant (sslyze also exits 0 when it cannot connect)."""
    argv = [
        _sslyze_python(),
        "-m",
        "sslyze",
        "--mozilla_config=intermediate",
        f"--certinfo_ca_file={ca_file}",  # our local CA, so the chain validates
        *client_auth,
        target,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    summary = done.stdout.partition(_SUMMARY)[2] or done.stdout[-4000:]
    why = f"sslyze exited {done.returncode} for {target}:\n{summary}\n{done.stderr[-2000:]}"
    assert done.returncode == 0, why
    assert f"{target}: OK - Compliant." in done.stdout, why


def test_gateway_https_is_mozilla_intermediate(gateway_server: Gateway) -> None:
    """The real gateway under uvicorn passes sslyze's Mozilla "intermediate" check."""
    _sslyze(f"localhost:{urlsplit(gateway_server.url).port}", gateway_server.ca_file)


def test_redis_is_mozilla_intermediate(tls_redis: RedisServer, pki: CertPaths) -> None:
    """The TLS redis-server started as `taskgate up` starts it passes the same check; sslyze
    presents a client certificate from our CA, without which Redis refuses the renegotiation
    probe and sslyze reports the scan incomplete."""
    client = ["--cert", str(pki.cert("gateway-client")), "--key", str(pki.key("gateway-client"))]
    _sslyze(f"localhost:{tls_redis.port}", pki.ca, *client)

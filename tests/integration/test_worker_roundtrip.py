"""Work sent over mTLS reaches a real worker process and its result comes back."""

from __future__ import annotations

import pytest

from taskgate.procs import Child
from workers.app import create_celery
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration


def test_task_sent_through_celery_runs_on_real_worker(
    celery_worker: Child, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """system.ping sent with the Celery app over mTLS is answered by the worker process."""
    for key, value in stack_env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    app = create_celery(WorkerSettings())
    try:
        result = app.send_task("system.ping", queue="taskgate").get(timeout=20)
    finally:
        app.close()
    assert result["pong"] is True
    assert result["worker"].endswith(tuple("0123456789"))


def test_worker_configuration_is_tls_only_and_never_pickle(
    tls_redis: object, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's broker and backend both use verified TLS; pickle is not accepted."""
    import ssl

    for key, value in stack_env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    settings = WorkerSettings()
    conf = create_celery(settings).conf
    assert conf.broker_url.startswith("rediss://")
    assert conf.broker_use_ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert conf.redis_backend_use_ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert conf.broker_use_ssl["ssl_certfile"].endswith("worker-client.pem")
    assert "pickle" not in conf.accept_content
    assert "pickle" not in conf.result_accept_content
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_extended is False
    assert conf.broker_transport_options["visibility_timeout"] > settings.task_time_limit

"""The baselines taskgate is measured against: a naive endpoint and a plain Celery worker.

* ``web``: an unauthenticated FastAPI ``POST /submit`` that calls ``task.delay(payload)``
  on a plain Celery app (JSON serializer, no result backend) whose broker is the bench's
  TLS Redis. Served by uvicorn over HTTPS with the gateway's certificate, the same TLS
  context (``gateway.server.TLSConfig``) and the same worker count as ``taskgate serve``.
* ``worker``: a plain Celery worker (JSON, no sealing, no vault) with taskgate's own
  worker configuration otherwise: late acks, prefetch 1, same pool and concurrency.

``BENCH_NAIVE_STYLE=async`` serves the endpoint as ``async def`` (a blocking publish on the
event loop) instead of the default ``def`` (FastAPI's threadpool). Both processes read
where Redis is from the same ``TASKGATE_*`` variables as taskgate processes::

    python -m tests.bench.naive_app web --port 8444 --workers 2
    python -m tests.bench.naive_app worker --concurrency 2
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from celery import Celery
from fastapi import FastAPI

from security.config import load_settings
from security.tls import RedisTLS
from workers.settings import WorkerSettings

__all__ = ["PLAIN_QUEUE", "PLAIN_TASK", "create_web_app", "plain_celery", "plain_worker_celery"]

PLAIN_QUEUE = "taskgate-bench-plain"  # inside the queue keys the ACL grants (taskgate*)
PLAIN_TASK = "plain.noop"


def noop(payload: dict[str, Any]) -> dict[str, int]:
    """The plain twin of ``bench.noop``: touch the payload, return its sizes."""
    return {"blob": len(payload.get("blob", "")), "key": len(payload.get("api_key", ""))}


def _register(app: Celery) -> None:
    app.task(name=PLAIN_TASK, acks_late=True)(noop)


def plain_celery(tls: RedisTLS) -> Celery:
    """What a naive service configures: a TLS broker and JSON, nothing else."""
    app = Celery("bench-plain", set_as_current=False)
    app.conf.update(
        broker_url=tls.url,
        broker_use_ssl=tls.celery_ssl(),
        **tls.celery_credentials(),
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=PLAIN_QUEUE,
        broker_connection_retry_on_startup=True,
    )
    _register(app)
    return app


def plain_worker_celery(settings: WorkerSettings) -> Celery:
    """taskgate's worker configuration with the sealing taken out (JSON in, JSON out)."""
    from workers.app import celery_config

    config = celery_config(settings)
    config.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=PLAIN_QUEUE,
        task_default_exchange=PLAIN_QUEUE,
        task_default_routing_key=PLAIN_QUEUE,
        worker_consumer="celery.worker.consumer:Consumer",
    )
    app = Celery("bench-plain", set_as_current=False)
    app.conf.update(config)
    _register(app)
    return app


def create_web_app() -> FastAPI:
    """uvicorn factory for the naive endpoint (settings read at worker start)."""
    settings = load_settings(WorkerSettings)  # the same TASKGATE_* Redis variables
    celery = plain_celery(settings.redis)
    task = celery.tasks[PLAIN_TASK]
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if os.environ.get("BENCH_NAIVE_STYLE") == "async":
        # The other naive habit: a blocking publish straight on the event loop.
        @app.post("/submit", status_code=202)
        async def submit_async(payload: dict[str, Any]) -> dict[str, str]:
            result = task.delay(payload)
            return {"id": str(result.id), "status": "queued"}

    else:
        # A plain `def`: FastAPI runs it in its threadpool, as its docs advise for blocking calls.
        @app.post("/submit", status_code=202)
        def submit(payload: dict[str, Any]) -> dict[str, str]:
            result = task.delay(payload)
            return {"id": str(result.id), "status": "queued"}

    return app


def _serve(port: int, workers: int) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from gateway.server import TLSConfig

    state_dir = os.environ.get("TASKGATE_STATE_DIR", ".taskgate")
    config = TLSConfig(
        "tests.bench.naive_app:create_web_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        ssl_certfile=f"{state_dir}/certs/https.pem",
        ssl_keyfile=f"{state_dir}/certs/https-key.pem",
        proxy_headers=False,
        server_header=False,
        log_level="warning",
    )
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()


def _work(concurrency: int) -> None:
    settings = load_settings(WorkerSettings, concurrency=concurrency)
    app = plain_worker_celery(settings)
    app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            f"--queues={PLAIN_QUEUE}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname=plain@%h-{os.getpid()}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.naive_app")
    sub = parser.add_subparsers(dest="command", required=True)
    web = sub.add_parser("web")
    web.add_argument("--port", type=int, required=True)
    web.add_argument("--workers", type=int, default=1)
    worker = sub.add_parser("worker")
    worker.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "web":
        _serve(args.port, args.workers)
    else:
        _work(args.concurrency)


if __name__ == "__main__":
    main()

"""The FastAPI application, built by :func:`create_app` from settings."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.types import Scope

from gateway import health
from gateway.anchoring import AnchorJob, VerifyLimiter
from gateway.console import install_console
from gateway.http.errors import install_error_handlers
from gateway.http.middleware import gateway_middleware, install_middleware
from gateway.http.problems import document_problem_schema, document_transport_problems
from gateway.metrics import Metrics
from gateway.refusals import RefusalAggregator
from gateway.routes.admin import build_admin_router
from gateway.routes.metrics import build_metrics_router
from gateway.routes.submit import submit_route
from gateway.routes.tasks import COMMON_ERRORS, build_router
from gateway.routes.token import build_token_limiter, build_token_router
from gateway.schemas import Accepted
from gateway.sentry_setup import init_sentry
from gateway.settings import GatewaySettings
from gateway.state import GatewayState
from gateway.stores.clients import ClientRegistry
from gateway.stores.operators import OperatorRegistry
from gateway.submission.audit_batcher import AuditBatcher
from gateway.submission.codec import SealedCodec
from gateway.submission.idempotency import LeaseKeeper
from gateway.submission.script_batcher import ScriptBatcher
from gateway.submission.stages import IDEMPOTENCY_KEY
from security.audit import AsyncAuditWriter
from security.audit.refusals import RefusalCounter
from security.keystore import KeyRing
from security.tokens import TokenPolicy
from workers.contract.catalogue import Catalogue, default_catalogue, load_task_modules

__all__ = ["app_from_env", "create_app"]

ACCEPTED = {
    "description": "Accepted: queued for a worker",
    "model": Accepted,
    "headers": {
        "Location": {"schema": {"type": "string"}, "description": "The task's status URL"},
        "Idempotent-Replayed": {
            "schema": {"type": "string", "enum": ["true"]},
            "description": "Set when a reused Idempotency-Key found the task accepted before",
        },
        "RateLimit-Limit": {"schema": {"type": "integer"}},
        "RateLimit-Remaining": {"schema": {"type": "integer"}},
        "RateLimit-Reset": {"schema": {"type": "integer"}},
    },
}
SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **COMMON_ERRORS,
    400: {
        "description": "Malformed request or header",
        "content": {"application/problem+json": {}},
    },
    409: {
        "description": "Same Idempotency-Key in flight",
        "content": {"application/problem+json": {}},
    },
    413: {"description": "Body over the task's cap", "content": {"application/problem+json": {}}},
    422: {
        "description": "Payload refused (schema, limits, leak guard)",
        "content": {"application/problem+json": {}},
    },
    429: {
        "description": "Rate limit or per-client queue cap",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/problem+json": {}},
    },
}


def _body_limit(settings: GatewaySettings, catalogue: Catalogue) -> Any:
    def limit_for(scope: Scope) -> int:
        path: str = scope.get("path", "")
        if path.startswith("/v1/tasks/"):
            spec = catalogue.get(path.removeprefix("/v1/tasks/"))
            if spec is not None:
                return spec.max_payload_bytes
        if path == "/v1/token":
            return 4096
        return settings.max_body_bytes

    return limit_for


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections: what exists at start-up (modules, the app, the
    OpenAPI models) is frozen out of every later collection, and the youngest generation
    is collected after 20,000 allocations rather than 700 (a submission allocates a few
    thousand short-lived objects; reference counting frees nearly all of them anyway)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _audit_jobs(
    settings: GatewaySettings,
    client: Any,
    ring: KeyRing,
    batcher: AuditBatcher,
    writer: AsyncAuditWriter,
) -> tuple[RefusalAggregator, AnchorJob]:
    """The audit's background work, started: refusal summaries and automatic anchors."""
    refusals = RefusalAggregator(
        RefusalCounter(
            client,
            window=settings.audit_refusal_window,
            max_groups=settings.audit_refusal_max_groups,
        ),
        batcher,
        writer,
        trusted_proxies=tuple(settings.trusted_proxies),
    )
    refusals.start(interval=min(10.0, max(1.0, settings.audit_refusal_window / 4)))
    anchors = AnchorJob(
        client,
        ring,
        settings.anchor_file,
        interval=settings.audit_anchor_interval,
        every=settings.audit_anchor_every,
    )
    anchors.start()
    return refusals, anchors


def create_app(
    settings: GatewaySettings,
    *,
    keys: KeyRing | None = None,
    catalogue: Catalogue | None = None,
) -> FastAPI:
    """Build the gateway for ``settings``; connections open in the lifespan.

    Keys load with the gateway role (including the Ed25519 signing key) unless given.
    """
    ring = keys if keys is not None else settings.key_ring("gateway")
    load_task_modules(settings.task_modules)
    tasks = catalogue if catalogue is not None else default_catalogue
    codec = SealedCodec(ring, ttl=settings.envelope_ttl)
    policy = TokenPolicy(
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        ttl_seconds=settings.token_ttl,
    )
    admin_hash = settings.load_admin_token_hash()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = settings.redis.async_client(
            socket_timeout=5,
            socket_connect_timeout=3,
            health_check_interval=25,
            max_connections=200,
            # No silent re-send: the submission scripts are not idempotent (a re-sent
            # enqueue whose first reply was lost would queue the task twice). A lost
            # connection is a 503; the client's Idempotency-Key makes its retry safe.
            retry=Retry(NoBackoff(), 0),
        )
        writer = AsyncAuditWriter(client, ring.audit)
        batcher = AuditBatcher(writer, delay=settings.group_commit_delay_ms / 1000)
        refusals, anchors = _audit_jobs(settings, client, ring, batcher, writer)
        scripts = ScriptBatcher(client)
        readiness = health.Readiness(
            client,
            lapse=settings.heartbeat_lapse,
            timeout=settings.ready_timeout,
            cache_seconds=settings.ready_cache_seconds,
        )
        app.state.readiness = readiness
        app.state.gateway = GatewayState(
            settings=settings,
            keys=ring,
            redis=client,
            codec=codec,
            catalogue=tasks,
            token_policy=policy,
            audit=batcher,
            scripts=scripts,
            leases=LeaseKeeper(scripts, lease=settings.idempotency_lease),
            readiness=readiness,
            clients=ClientRegistry(client, ring.state),
            admin_token_hash=admin_hash,
            operators=OperatorRegistry(client, ring.state, admin_hash=admin_hash),
            refusals=refusals,
            verify_limiter=VerifyLimiter(client, settings.audit_verify_rate_limit),
            metrics=Metrics.started(client, settings.metrics_flush_interval, writer.counts),
        )
        _tune_gc()
        try:
            yield
        finally:
            await app.state.gateway.metrics.stop()
            await anchors.stop()
            await refusals.stop()
            await batcher.stop()
            await app.state.gateway.leases.stop()
            await scripts.stop()
            await client.aclose()

    app = FastAPI(
        title="taskgate",
        version="0.1.0",
        summary="Security-hardened task gateway",
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        # No OpenTelemetry here: FastAPI otherwise looks up its providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    limiter = build_token_limiter(settings)
    app.state.limiter = limiter
    app.include_router(build_token_router(limiter, settings))
    router = build_router()
    submit_endpoints = {}
    for spec in tasks:
        endpoint = submit_route(spec)
        submit_endpoints[f"{router.prefix}/{spec.name}"] = endpoint
        router.add_api_route(
            f"/{spec.name}",
            endpoint,
            methods=["POST"],
            status_code=202,
            summary=f"Submit {spec.name}",
            description=spec.description or None,
            responses={202: ACCEPTED, **SUBMIT_ERRORS},
            openapi_extra=_submit_openapi(spec.name),
        )
    app.include_router(router)
    _add_operator_routes(app, settings, tasks)
    _install_openapi(app, tasks)
    install_middleware(
        app,
        gateway_middleware(
            limit_for=_body_limit(settings, tasks),
            cors_origins=settings.cors_origins,
            submit_endpoints=submit_endpoints,
            exception_handlers=app.exception_handlers,
        ),
    )
    return app


def _add_operator_routes(app: FastAPI, settings: GatewaySettings, tasks: Catalogue) -> None:
    """The admin API, /metrics and, when TASKGATE_CONSOLE=true, the web console."""
    app.include_router(build_admin_router(spec.name for spec in tasks))
    app.include_router(build_metrics_router())
    if settings.console:
        install_console(app)


def _schema_name(task_name: str) -> str:
    return "Submit_" + "".join(part.capitalize() for part in task_name.replace("-", ".").split("."))


def _submit_openapi(task_name: str) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": f"^{IDEMPOTENCY_KEY.pattern}$",
                },
                "description": "Same key and body within 24 h: the same task, not a second one.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{_schema_name(task_name)}"}
                }
            },
        },
    }


def _install_openapi(app: FastAPI, catalogue: Catalogue) -> None:
    """OpenAPI with each task's payload schema (secret fields writeOnly, format password)."""
    from gateway.routes.tasks import _mark_secret

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for spec in catalogue:
            schema = spec.schema.model_json_schema(ref_template="#/components/schemas/{model}")
            for path in spec.secret_fields:
                _mark_secret(schema, path.split("."))
            schemas.update(schema.pop("$defs", {}))
            # Titled by the task, not the payload model: tasks may share a model, and code
            # generators name their classes by title.
            schema["title"] = _schema_name(spec.name)
            schemas[_schema_name(spec.name)] = schema
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or admin token"}
        }
        doc["security"] = [{"bearer": []}]
        document_transport_problems(doc)
        document_problem_schema(doc)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from ``TASKGATE_*`` at worker start, not at import."""
    settings = GatewaySettings()
    dsn = settings.sentry_dsn
    init_sentry(dsn.get_secret_value() if dsn is not None else None)  # no DSN: not loaded
    return create_app(settings)

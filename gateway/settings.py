"""Gateway process settings (``TASKGATE_*``), built in the CLI or by tests, never at import."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import ClassVar, Self

import limits
from pydantic import Field, SecretStr, model_validator

from security.audit.archive import parse_retention
from security.config import CommonSettings, env_name
from security.errors import ConfigError, KeyRingError
from security.keyrotation import check_key_host, check_roles_dir
from security.tls import check_private_key, check_readable

__all__ = ["GatewaySettings", "OperatorSettings"]

# IPv4 peers may reach a dual-stack socket as IPv4-mapped IPv6 addresses.
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


def _check_networks(entries: list[str], setting: str) -> None:
    """Every entry must be an address or a network (CIDR)."""
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(
                setting, f"{text[:64]!r} is not an address or network", "use CIDR notation"
            ) from None


def _check_proxies(proxies: list[str]) -> None:
    """Refuse a trusted-proxy list that is malformed or, in any spelling, trusts everyone.

    ``*``, ``0.0.0.0/0``, ``0.0.0.0/0.0.0.0``, ``::/0``, ``::ffff:0:0/96`` and sets of
    networks that add up to a whole address family (``0.0.0.0/1`` + ``128.0.0.0/1``) would
    let any client choose the address rate limits key on.
    """
    setting = env_name("trusted_proxies")
    fix = "list your load balancers' addresses or networks"
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for proxy in proxies:
        text = proxy.strip()
        if not text:
            continue
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(setting, f"{text[:64]!r} is not an address or network", fix) from None
        if isinstance(net, ipaddress.IPv4Network):
            v4.append(net)
        else:
            v6.append(net)
    whole_v4 = any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(v4))
    whole_v6 = any(
        n.prefixlen == 0 or n.supernet_of(_MAPPED_V4) for n in ipaddress.collapse_addresses(v6)
    )
    if whole_v4 or whole_v6:
        raise ConfigError(setting, "the list would trust X-Forwarded-For from anyone", fix)


def _check_limit(text: str, setting: str) -> None:
    """One positive limit in the ``limits`` notation ("20/minute", "10/15 minutes")."""
    try:
        items = limits.parse_many(text)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ConfigError(setting, "is not one limit", 'write it like "10/15 minutes"')


class GatewaySettings(CommonSettings):
    """Settings of the HTTPS gateway."""

    client_role: ClassVar[str] = "gateway-client"

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Readiness: how long /readyz waits for Redis (PING, then the heartbeat count), how
    # long an outcome is reused per process, and how old a worker's last heartbeat may be
    # for the worker to count as alive (workers/heartbeat.py beats every few seconds).
    ready_timeout: float = Field(default=3.0, gt=0, le=30)
    ready_cache_seconds: float = Field(default=1.0, ge=0, le=30)
    heartbeat_lapse: float = Field(default=15.0, gt=0, le=300)
    docs_enabled: bool = False
    # How long a sealed task message stays valid: queueing plus every retry must fit.
    envelope_ttl: int = Field(default=86_400, ge=60, le=7 * 86_400)
    result_ttl: int = Field(default=86_400, ge=60)
    # An Idempotency-Key's reservation before its commit is a lease of this many seconds,
    # renewed while the request is in flight: a request that died frees the key this soon.
    idempotency_lease: float = Field(default=5.0, ge=1, le=300)
    task_modules: list[str] = Field(default_factory=list)
    # Access tokens
    token_ttl: int = Field(default=900, ge=60, le=86_400)
    token_issuer: str = "taskgate"
    token_audience: str = "taskgate-api"
    # Admin token: stored only as a hash ("sha256:<hex>"), from the variable or the file.
    admin_token_hash: str | None = None
    admin_token_file: Path | None = None
    # Limits
    client_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Group commit under contention: how long an audit append waits for more records when
    # records are queuing and another process appends too (see AuditBatcher); 0: never.
    group_commit_delay_ms: float = Field(default=1.0, ge=0, le=20)
    # Refusals of unauthenticated or rate-limited requests: counted per window of this many
    # seconds and per source, at most this many sources a window (gateway.refusals).
    audit_refusal_window: int = Field(default=60, ge=1, le=86_400)
    audit_refusal_max_groups: int = Field(default=100, ge=1, le=10_000)
    # Retention and anchoring (docs/audit.md): what `taskgate audit archive` keeps live
    # (records, or an age like 30d), where segments and checkpoints go, how often the
    # gateway anchors the head (every N records or T seconds; T = 0 turns it off), and the
    # HTTP verify's bound (entries per call) and rate limit (per caller).
    audit_retention: str = "30d"
    audit_archive_dir: Path | None = None
    audit_anchor_file: Path | None = None
    audit_anchor_interval: float = Field(default=60.0, ge=0, le=86_400)
    audit_anchor_every: int = Field(default=10_000, ge=1)
    audit_verify_limit: int = Field(default=10_000, ge=1, le=1_000_000)
    audit_verify_rate_limit: str = "6/minute"
    max_queued_global: int = Field(default=10_000, ge=1)
    # /v1/token (docs/tokens.md): requests per source address; failed grants per source and
    # per (client id, source) - a client is locked only for the address that guessed wrong;
    # concurrent secret checks per process (clean sources / sources that failed recently)
    # and how long a clean source may queue for one.
    token_rate_limit_ip: str = "20/minute"
    token_failure_limit_ip: str = "50/15 minutes"
    token_failure_limit_client: str = "10/15 minutes"
    token_hash_slots: int = Field(default=2, ge=1, le=64)
    token_hash_suspect_slots: int = Field(default=1, ge=1, le=64)
    token_hash_wait: float = Field(default=2.0, ge=0, le=30)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=64 * 1024 * 1024)
    # A request's head (request line and header fields): its size, its number of fields and
    # how long it may take to arrive; past them the answer is 431 or 408
    # (gateway.http.header_guard).
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    max_header_count: int = Field(default=100, ge=8, le=1000)
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    # Proxies whose X-Forwarded-For is believed (CIDRs); empty: the socket address only.
    trusted_proxies: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    # Addresses or networks that may read /metrics without the admin token (a scraper).
    metrics_allow: list[str] = Field(default_factory=list)
    # The web console under /console (gateway.console): off unless TASKGATE_CONSOLE=true.
    # A session ends after this many idle seconds, and at the latest after the lifetime.
    console: bool = False
    console_idle_timeout: int = Field(default=900, ge=1, le=86_400)
    console_session_lifetime: int = Field(default=8 * 3600, ge=60, le=7 * 86_400)
    # Key rotation from the console (off unless set): the key host's full keys folder, and
    # the folder of role bundles to export again (laid out like <state>/roles). Only for a
    # gateway that runs on the key host: see docs/console.md.
    console_key_host_dir: Path | None = None
    console_roles_dir: Path | None = None

    @model_validator(mode="after")
    def _check_https_material(self) -> Self:
        certs = self.state_dir / "certs"
        if self.tls_cert is None:
            self.__dict__["tls_cert"] = certs / "https.pem"
        if self.tls_key is None:
            self.__dict__["tls_key"] = certs / "https-key.pem"
        check_readable(self.tls_cert, setting=env_name("tls_cert"), what="HTTPS certificate (PEM)")
        check_private_key(self.tls_key, setting=env_name("tls_key"))
        if self.admin_token_file is None:
            self.__dict__["admin_token_file"] = self.state_dir / "admin-token.sha256"
        if self.audit_archive_dir is None:
            self.__dict__["audit_archive_dir"] = self.state_dir / "audit-archive"
        if self.audit_anchor_file is None:
            self.__dict__["audit_anchor_file"] = self.archive_dir / "checkpoints.jsonl"
        parse_retention(self.audit_retention)
        _check_limit(self.audit_verify_rate_limit, env_name("audit_verify_rate_limit"))
        _check_proxies(self.trusted_proxies)
        for name in ("token_rate_limit_ip", "token_failure_limit_ip", "token_failure_limit_client"):
            _check_limit(getattr(self, name), env_name(name))
        _check_networks(self.metrics_allow, env_name("metrics_allow"))
        self._check_key_host()
        return self

    def _check_key_host(self) -> None:
        """Refuse a console key host that is a bundle or that this process cannot change."""
        if self.console_key_host_dir is None:
            if self.console_roles_dir is not None:
                raise ConfigError(
                    env_name("console_roles_dir"),
                    "is set without TASKGATE_CONSOLE_KEY_HOST_DIR",
                    "set both or neither",
                )
            return
        for name, check in (
            ("console_key_host_dir", check_key_host),
            ("console_roles_dir", check_roles_dir),
        ):
            folder = getattr(self, name)
            if folder is None:
                continue
            try:
                check(folder)
            except KeyRingError as exc:
                fix = "name the key host's full keys folder and its roles folder, or unset it"
                raise ConfigError(env_name(name), exc.message, fix) from None

    @property
    def archive_dir(self) -> Path:
        """Where archive segments (and, by default, the anchor file) go."""
        return self.audit_archive_dir or self.state_dir / "audit-archive"

    @property
    def anchor_file(self) -> Path:
        """Where the gateway appends signed checkpoints of the audit head."""
        return self.audit_anchor_file or self.archive_dir / "checkpoints.jsonl"

    def load_admin_token_hash(self) -> str | None:
        """The admin token hash from the variable or the file (None: admin routes closed)."""
        if self.admin_token_hash:
            return self.admin_token_hash.strip()
        path = self.admin_token_file
        if path is not None and path.is_file():
            check_private_key(path, setting=env_name("admin_token_file"))
            return path.read_text().strip() or None
        return None


class OperatorSettings(GatewaySettings):
    """Settings of the operator CLI (clients, dead letters, audit): the gateway's settings,
    with the operator's client certificate and Redis ACL user."""

    client_role: ClassVar[str] = "operator-client"
    redis_role: ClassVar[str] = "operator"

    # The named operator the CLI acts as (``gateway.stores.operators``): its credential, from the
    # variable or a file (mode 0600). Every change the CLI makes is audited under its name.
    operator_token: SecretStr | None = None
    operator_token_file: Path | None = None

    def load_operator_token(self) -> str | None:
        """The operator credential from the variable or the file (None: not given)."""
        if self.operator_token is not None and self.operator_token.get_secret_value():
            return self.operator_token.get_secret_value().strip()
        path = self.operator_token_file
        if path is not None:
            check_private_key(path, setting=env_name("operator_token_file"))
            return path.read_text().strip() or None
        return None

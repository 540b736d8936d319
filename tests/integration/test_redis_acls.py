"""The Redis ACL users against a real redis-server: each role only what it needs.

The session Redis runs with the ACL file ``taskgate.devstack.redis_server`` writes; the test
harness has its own all-powerful user (``harness``) for flushing and inspection, and every
taskgate process logs in as its role.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from certs.material import CertPaths
from security.redis_check import ADMIN_FIX, warn_if_admin
from security.tls import RedisTLS
from taskgate.cli.main import app
from taskgate.devstack.procs import Child
from taskgate.devstack.redis_server import RedisServer, RedisServerError, redis_config, start_redis
from taskgate.devstack.redis_users import HARNESS, password_path
from tests.support.gateways import Gateway
from tests.support.logs import register_log
from tests.support.processes import wait_for
from tests.support.replies import raw_command
from workers.contract import keys

pytestmark = pytest.mark.integration

# (command, what it would do): each must answer NOPERM for every role. ACL DRYRUN runs the
# permission check without running the command (SHUTDOWN, REPLICAOF... would break Redis).
FORBIDDEN: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "mallory", "on", "allkeys", "allcommands"),
    ("MONITOR",),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("SLAVEOF", "127.0.0.1", "1"),
    ("MODULE", "LIST"),
    ("SHUTDOWN", "NOSAVE"),
    ("KEYS", "*"),
    ("MIGRATE", "127.0.0.1", "1", "k", "0", "1"),
]
# Safe to really run as a role (if one were allowed, it would only hurt this test's data).
RUN: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "maxmemory"),
    ("ACL", "LIST"),
    ("MODULE", "LIST"),
    ("KEYS", "*"),
]
CLIENT = "acme-0123abcd"
# What a compromised worker must not do to what the gateway acts on.
WORKER_FORBIDDEN_WRITES: list[tuple[str, ...]] = [
    ("HSET", keys.client_key(CLIENT), "disabled", "0"),
    ("SADD", keys.CLIENTS_SET, CLIENT),
    ("DEL", keys.revoked_jti_key("stolen")),
    ("SET", keys.revoked_jti_key("x"), "1"),
    ("SET", keys.idempotency_key(CLIENT, "d" * 64), "{}"),
    ("SET", keys.rate_limit_key("client", CLIENT, 60, 0), "0"),
    ("DEL", f"{keys.TOKEN_LIMIT_PREFIX}:LIMITER/ip/127.0.0.1/20/1/minute"),
    ("ZADD", keys.owner_index(CLIENT), "1", "someone-elses-task"),
    ("ZADD", keys.ALL_TASKS, "1", "task"),
    ("XDEL", keys.AUDIT_STREAM, "0-1"),
    ("XTRIM", keys.AUDIT_STREAM, "MAXLEN", "0"),
    ("DEL", keys.AUDIT_STREAM),
    ("UNLINK", keys.AUDIT_STREAM),
    ("RENAME", keys.AUDIT_STREAM, "tg:task:elsewhere"),
    ("EXPIRE", keys.AUDIT_STREAM, "1"),
    ("SET", keys.AUDIT_STREAM, "gone"),
]


@pytest.fixture
def as_role(tls_redis: RedisServer, redis_client: redis.Redis) -> Iterator[dict[str, redis.Redis]]:
    """A client per role on the session Redis (database flushed by ``redis_client``), with
    the audit stream present; the ACL log is reset before and after."""
    redis_client.xadd(keys.AUDIT_STREAM, {"seed": "1"})
    redis_client.acl_log_reset()
    clients: dict[str, redis.Redis] = {
        role: tls_redis.as_user(role).client() for role in keys.ROLES
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()
        redis_client.acl_log_reset()


def _refused(client: redis.Redis, *args: str) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        raw_command(client, *args)


def test_a_connection_without_credentials_is_refused(tls_redis: RedisServer) -> None:
    """The default user is off: a valid client certificate alone gets no command through."""
    tls = tls_redis.as_user("gateway")
    bare = RedisTLS(tls.url, tls.ca_file, tls.client_cert, tls.client_key)
    with bare.client(socket_timeout=5) as client, pytest.raises(redis.AuthenticationError):
        client.ping()
    with (
        bare.client(socket_timeout=5, username="default", password="x") as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()


def test_a_wrong_password_is_refused(tls_redis: RedisServer) -> None:
    """A role's name with another role's password does not log in."""
    tls = tls_redis.as_user("worker")
    other = tls_redis.as_user("gateway").password
    wrong = RedisTLS(tls.url, tls.ca_file, tls.client_cert, tls.client_key, "worker", other)
    with wrong.client(socket_timeout=5) as client, pytest.raises(redis.AuthenticationError):
        client.ping()


@pytest.mark.parametrize("role", keys.ROLES)
@pytest.mark.parametrize("command", FORBIDDEN, ids=lambda c: " ".join(c[:2]))
def test_no_role_may_run_an_admin_command(
    redis_client: redis.Redis, role: str, command: tuple[str, ...]
) -> None:
    """ACL DRYRUN: each admin command is refused to each role (checked, never run)."""
    answer = raw_command(redis_client, "ACL", "DRYRUN", role, *command)
    answer = answer.decode() if isinstance(answer, bytes) else str(answer)
    assert answer != "OK"
    assert "no permissions" in answer


@pytest.mark.parametrize("role", keys.ROLES)
def test_admin_commands_answer_noperm(as_role: dict[str, redis.Redis], role: str) -> None:
    """Really sent as the role, FLUSHALL, CONFIG, ACL, MODULE and KEYS answer NOPERM
    (DEBUG does not even exist for clients)."""
    for command in RUN:
        _refused(as_role[role], *command)
    with pytest.raises(redis.exceptions.ResponseError):  # renamed away: unknown command
        raw_command(as_role[role], "DEBUG", "SLEEP", "0")


@pytest.mark.parametrize("command", WORKER_FORBIDDEN_WRITES, ids=lambda c: f"{c[0]} {c[1]}")
def test_the_worker_cannot_write_what_the_gateway_acts_on(
    as_role: dict[str, redis.Redis], command: tuple[str, ...]
) -> None:
    """The worker's identity cannot write client records, revocations, idempotency records,
    rate-limit counters, the owner index, nor delete, trim or replace the audit stream."""
    _refused(as_role["worker"], *command)


def test_a_script_does_not_widen_the_workers_rights(as_role: dict[str, redis.Redis]) -> None:
    """A Lua script runs with the caller's ACL, keys it did not declare included."""
    worker = as_role["worker"]
    for script, args in [
        ("return redis.call('HSET', ARGV[1], 'disabled', '0')", [keys.client_key(CLIENT)]),
        ("return redis.call('DEL', ARGV[1])", [keys.AUDIT_STREAM]),
    ]:
        with pytest.raises(redis.exceptions.ResponseError, match="can't access"):
            worker.eval(script, 0, *args)
    with pytest.raises(redis.exceptions.ResponseError, match="can't access"):
        worker.eval("return redis.call('DEL', KEYS[1])", 1, keys.AUDIT_STREAM)


def test_the_worker_may_append_to_the_audit_stream_and_do_its_job(
    as_role: dict[str, redis.Redis], redis_client: redis.Redis
) -> None:
    """Positive control: XADD to the audit stream, ZREM from the queued sets, write a task
    record and its result; reading a client record is refused too (not the worker's)."""
    worker = as_role["worker"]
    assert worker.xadd(keys.AUDIT_STREAM, {"a": "b"})
    assert worker.zrem(keys.queued_key(CLIENT), "t") == 0
    assert worker.hset(keys.task_key("t"), "state", "started") == 1
    assert worker.set(keys.result_key("t"), "sealed") is True
    _refused(worker, "HGET", keys.client_key(CLIENT), "disabled")
    assert redis_client.xlen(keys.AUDIT_STREAM) == 2


def test_the_gateway_appends_to_but_never_trims_the_audit_stream(
    as_role: dict[str, redis.Redis],
) -> None:
    """Only the operator may trim the audit log; the gateway appends and reads."""
    gateway, operator = as_role["gateway"], as_role["operator"]
    assert gateway.xadd(keys.AUDIT_STREAM, {"a": "b"})
    assert gateway.xlen(keys.AUDIT_STREAM) == 2
    _refused(gateway, "XTRIM", keys.AUDIT_STREAM, "MAXLEN", "0")
    _refused(gateway, "DEL", keys.AUDIT_STREAM)
    assert operator.xtrim(keys.AUDIT_STREAM, maxlen=1, approximate=False) == 1


def test_processes_connect_as_their_roles(
    gateway_server: Gateway, celery_worker: Child, redis_client: redis.Redis
) -> None:
    """Every client connected to Redis is a named user; the gateway and the worker
    processes are connected as ``gateway`` and ``worker``."""
    users = {entry["user"] for entry in redis_client.client_list()}
    assert {"gateway", "worker"} <= users
    assert users <= {*keys.ROLES, HARNESS}


def test_passwords_never_reach_the_logs(
    gateway_server: Gateway, celery_worker: Child, tls_redis: RedisServer
) -> None:
    """No role's password appears in the worker's or the gateway's log (banner included)."""
    with gateway_server.client() as http:  # ready by the worker's next beat after a flush
        wait_for(lambda: http.get("/readyz").status_code == 200, timeout=10, what="/readyz 200")
    logs = celery_worker.log_path.read_text() + gateway_server.child.log_path.read_text()
    assert "ready." in logs
    for role in keys.ROLES:
        password = password_path(tls_redis.users_dir, role).read_text().strip()
        assert password not in logs


def test_an_all_powerful_user_is_warned_about_and_a_role_is_not(
    tls_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The start-up check logs one warning naming the fix for an admin user, none for a
    role user."""
    caplog.set_level(logging.WARNING, logger="taskgate.redis")
    with tls_redis.as_user("worker").client() as client:
        assert warn_if_admin(client, "the worker") is False
    assert caplog.records == []
    with tls_redis.tls.client() as client:
        assert warn_if_admin(client, "the worker") is True
    [record] = caplog.records
    assert ADMIN_FIX in record.getMessage()
    assert HARNESS in record.getMessage()


def test_the_acl_command_output_loads_into_redis(
    pki: CertPaths, tmp_path: Path, tls_redis: RedisServer
) -> None:
    """`taskgate redis acl` prints lines a real redis-server loads (ACL LOAD), after which
    each role logs in with its password; placeholder lines are refused by Redis."""
    users = tls_redis.users_dir
    result = CliRunner().invoke(app, ["redis", "acl", "--passwords-dir", str(users)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("user default reset off")
    server = start_redis(pki, tmp_path / "redis", users_dir=users, harness=True, appendonly=False)
    register_log(server.child)
    try:
        harness = next(
            line
            for line in (server.data_dir / "users.acl").read_text().splitlines()
            if line.startswith(f"user {HARNESS} ")
        )
        (server.data_dir / "users.acl").write_text("\n".join([*lines, harness]) + "\n")
        with server.tls.client() as admin:
            assert admin.acl_load() is True
        # Redis closes the connections of the users it replaced: a new one.
        with server.tls.client() as admin:
            assert set(admin.acl_users()) == {"default", *keys.ROLES, HARNESS}
        for role in keys.ROLES:
            with server.as_user(role).client() as client:
                assert client.acl_whoami() == role
        placeholder = CliRunner().invoke(app, ["redis", "acl", "--placeholders"])
        (server.data_dir / "users.acl").write_text(placeholder.stdout + harness + "\n")
        with server.tls.client() as admin, pytest.raises(redis.ResponseError):
            admin.acl_load()
    finally:
        server.stop()


def test_transactions_survive_a_restart_with_acls_on(pki: CertPaths, tmp_path: Path) -> None:
    """A MULTI/EXEC written as a role is replayed from the append-only file after a restart
    (Redis 7.0 replays it as the default user, which is off but keeps its rights)."""
    server = start_redis(pki, tmp_path / "redis", harness=True)
    register_log(server.child)
    try:
        with server.as_user("gateway").client() as client, client.pipeline() as pipe:
            pipe.set(keys.message_copy_key("t"), "copy").hset(keys.task_key("t"), "state", "queued")
            pipe.execute()
        server.stop()
        server = start_redis(pki, server.data_dir, port=server.port, harness=True)
        with server.tls.client() as admin:
            assert admin.get(keys.message_copy_key("t")) == b"copy"
            assert admin.hget(keys.task_key("t"), "state") == b"queued"
            assert admin.acl_log() == []
    finally:
        server.stop()


def test_the_stacks_redis_can_fsync_every_write(pki: CertPaths, tmp_path: Path) -> None:
    """TASKGATE_REDIS_APPENDFSYNC=always reaches redis.conf; an unknown policy is refused."""
    server = start_redis(pki, tmp_path / "redis", harness=True, appendfsync="always")
    try:
        with server.tls.client() as admin:
            assert admin.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        server.stop()
    with pytest.raises(RedisServerError, match="appendfsync"):
        redis_config(1, pki, tmp_path, appendfsync="sometimes")

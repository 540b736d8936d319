"""`taskgate up` brings the whole stack up, describes it, and stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from security.keystore import load_keys
from security.passwords import ADMIN_TOKEN_PREFIX
from taskgate.devstack.procs import taskgate_argv
from tests.support.console import csrf_of
from tests.support.up import reap_up, wait_stack_json

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _start_up(state: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    return subprocess.Popen(
        taskgate_argv("up", "--state-dir", str(state), "--port", "0", "--concurrency", "1", *extra),
        env=env | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _check_redis_users(info: dict[str, object], state: Path) -> None:
    """stack.json names each role's Redis user, certificate, key and 0600 password file;
    Redis's ACL file (0600) holds only hashes of those passwords."""
    users = dict(info["redis_users"])  # type: ignore[call-overload]
    assert set(users) == {"gateway", "worker", "operator", "monitor"}
    acl = (state / "redis" / "users.acl").read_text()
    assert (state / "redis" / "users.acl").stat().st_mode & 0o777 == 0o600
    assert (state / "redis-users").stat().st_mode & 0o777 == 0o700
    for role, user in users.items():
        assert user["username"] == role
        assert Path(user["client_cert"]).is_file()
        password = Path(user["password_file"])
        assert password.stat().st_mode & 0o777 == 0o600
        assert password.read_text().strip() not in acl


def test_up_runs_the_stack_and_sigint_stops_every_child(tmp_path: Path) -> None:
    """stack.json (0600) appears, /readyz is 200 over verified HTTPS, SIGINT stops all in 10 s."""
    state = tmp_path / "state"
    proc = _start_up(state)
    try:
        info = wait_stack_json(proc, state)
        assert (state / "stack.json").stat().st_mode & 0o777 == 0o600
        for key in ("gateway_url", "redis_url", "ca_file", "client_cert", "client_key", "pids"):
            assert key in info
        assert str(info["redis_url"]).startswith("rediss://")
        ctx = ssl.create_default_context(cafile=str(info["ca_file"]))
        response = httpx.get(f"{info['gateway_url']}/readyz", verify=ctx, timeout=10)
        assert response.status_code == 200
        assert info["console_url"] == f"{info['gateway_url']}/console"
        console = httpx.get(f"{info['console_url']}/login", verify=ctx, timeout=10)
        assert console.status_code == 200  # the console is on in `up`
        pids = dict(info["pids"])  # type: ignore[call-overload]
        assert {"redis", "worker", "gateway"} <= set(pids)
        _check_redis_users(info, state)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        out = proc.stdout.read() if proc.stdout else ""
        assert "taskgate is up." in out
        assert f"console   {info['console_url']}" in out
        assert f"curl --cacert {info['ca_file']} {info['gateway_url']}/readyz" in out
        time.sleep(0.2)
        still = [name for name, pid in pids.items() if _alive(int(pid))]
        assert still == [], f"orphans left behind: {still}"
        assert not any((state / "certs").glob("*.tmp"))
    finally:
        reap_up(proc)


def test_up_brings_the_stack_down_when_a_child_dies(tmp_path: Path) -> None:
    """Killing the worker makes `up` stop everything and exit non-zero with a message."""
    state = tmp_path / "state"
    proc = _start_up(state)
    try:
        info = wait_stack_json(proc, state)
        pids = dict(info["pids"])  # type: ignore[call-overload]
        os.killpg(int(pids["worker"]), signal.SIGKILL)
        assert proc.wait(timeout=20) == 1
        out = proc.stdout.read() if proc.stdout else ""
        assert "worker exited" in out
        time.sleep(0.2)
        assert not _alive(int(pids["redis"]))
        assert not _alive(int(pids["gateway"]))
    finally:
        reap_up(proc)


def test_up_without_redis_server_says_how_to_install_it(tmp_path: Path) -> None:
    """With no redis-server on PATH, `up` exits non-zero and says how to install it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    env["PATH"] = str(tmp_path)  # nothing on PATH; the interpreter is called by full path
    proc = subprocess.run(
        taskgate_argv("up", "--state-dir", str(tmp_path / "s"), "--port", "0"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "apt-get install redis-server" in proc.stderr


def test_up_with_the_default_relative_state_folder_works(tmp_path: Path) -> None:
    """`make run` uses the default `.taskgate` relative to the working folder: it must come up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    proc = subprocess.Popen(
        taskgate_argv("up", "--port", "0", "--concurrency", "1"),
        env=env | {"PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        info = wait_stack_json(proc, tmp_path / ".taskgate")
        ctx = ssl.create_default_context(cafile=str(info["ca_file"]))
        assert httpx.get(f"{info['gateway_url']}/readyz", verify=ctx, timeout=10).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        reap_up(proc)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _secrets_a_worker_must_not_hold(state: Path, admin_token: str) -> dict[str, str]:
    """The text of every secret the worker must not be able to read, by name."""
    ring = load_keys(state / "keys", role="operator")
    keys_dir = state / "keys"
    out = {"admin token": admin_token, "CA key": (state / "certs" / "ca-key.pem").read_text()}
    kids = [ring.signing.current().kid, ring.token.current().kid, ring.state.current().kid]
    kids += [ring.audit_gateway.current().kid, ring.audit_operator.current().kid]
    for kid in kids:
        out[kid] = (keys_dir / f"{kid}.key").read_text().strip()
    return out


def test_up_gives_the_worker_its_own_folder_and_stores_no_plaintext_admin_token(
    tmp_path: Path,
) -> None:
    """The worker runs on roles/worker, where no file holds the signing private key, the
    token, state or gateway audit key, the CA key or the admin token; stack.json and the
    state folder hold no plaintext admin token; --admin-token-file gets it (0600) and it
    works; a task run by the worker leaves an audit chain that verifies per role."""
    state = tmp_path / "state"
    token_file = tmp_path / "admin.token"
    proc = _start_up(state, "--admin-token-file", str(token_file))
    try:
        info = wait_stack_json(proc, state)
        admin_token = token_file.read_text().strip()
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert "admin_token" not in info
        for path in _files(state):
            assert admin_token not in path.read_text(errors="replace"), path
        roles = dict(info["roles"])  # type: ignore[call-overload]
        worker_dir = Path(roles["worker"])
        assert worker_dir == (state / "roles" / "worker").resolve()
        environ = Path(f"/proc/{dict(info['pids'])['worker']}/environ").read_bytes()  # type: ignore[call-overload]
        assert f"TASKGATE_STATE_DIR={worker_dir}".encode() in environ.split(b"\0")
        forbidden = _secrets_a_worker_must_not_hold(state, admin_token)
        for path in _files(worker_dir):
            text = path.read_text(errors="replace")
            for name, secret in forbidden.items():
                assert secret not in text, f"{path} holds the {name}"
        names = {p.name for p in _files(worker_dir)}
        assert "ca-key.pem" not in names
        assert not any(n.startswith("admin-token") for n in names)
        assert load_keys(worker_dir / "keys", role="worker").signing.current().private is None

        ctx = ssl.create_default_context(cafile=str(info["ca_file"]))
        url = str(info["gateway_url"])
        demo = dict(info["demo_client"])  # type: ignore[call-overload]
        with httpx.Client(base_url=url, verify=ctx, timeout=10) as http:
            token = http.post(
                "/v1/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": demo["client_id"],
                    "client_secret": demo["client_secret"],
                },
            ).json()["access_token"]
            submitted = http.post(
                "/v1/tasks/report.generate",
                headers={"Authorization": f"Bearer {token}"},
                json={"title": "t", "columns": ["a"], "rows": [["x"]]},
            )
            assert submitted.status_code == 202, submitted.text
            task_id = submitted.json()["id"]
            deadline = time.monotonic() + 60
            status = ""
            while status != "succeeded" and time.monotonic() < deadline:
                view = http.get(
                    f"/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {token}"}
                )
                status = view.json().get("status", "")
                time.sleep(0.3)
            assert status == "succeeded"
            admin = {"Authorization": f"Bearer {admin_token}"}
            report = http.get("/v1/admin/audit/verify", headers=admin)
            assert report.status_code == 200, report.text
            assert report.json()["ok"] is True, report.json()
            items = http.get("/v1/admin/audit", headers=admin, params={"limit": 200}).json()
            writers = {item["writer"] for item in items["items"]}
            assert {"gateway", "worker"} <= writers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        reap_up(proc)


def test_up_prints_the_admin_token_once_when_no_file_is_asked(tmp_path: Path) -> None:
    """Without --admin-token-file the token is printed and stored nowhere under the state."""
    state = tmp_path / "state"
    proc = _start_up(state)
    try:
        wait_stack_json(proc, state)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        out = proc.stdout.read() if proc.stdout else ""
        line = next(x for x in out.splitlines() if x.startswith("Admin token (shown once"))
        admin_token = line.rsplit(" ", 1)[1]
        assert admin_token.startswith(ADMIN_TOKEN_PREFIX)
        for path in _files(state):
            assert admin_token not in path.read_text(errors="replace"), path
    finally:
        reap_up(proc)


def test_up_prints_no_client_secret_and_its_curl_lines_run_a_task(tmp_path: Path) -> None:
    """The summary holds neither the demo client's secret nor the SMTP password (they are
    in the 0600 stack.json), and its printed lines, pasted as they are, fetch a token from
    that file, submit a task and poll it to success."""
    state = tmp_path / "state"
    proc = _start_up(state)
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(proc.stdout or []), daemon=True, name="up-stdout"
    )
    reader.start()
    try:
        info = wait_stack_json(proc, state)
        deadline = time.monotonic() + 30
        while not any(line.startswith("Press Ctrl-C") for line in list(lines)):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("TOKEN=$("))
        script = "set -e\n" + "".join(line.strip() + "\n" for line in lines[start : start + 4])
        fetched = subprocess.run(
            ["bash", "-c", script + 'printf "\\n%s" "$TOKEN"'],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert fetched.returncode == 0, fetched.stderr
        # The banner's lines paste as printed: token, submit, poll until final, then read.
        view = json.loads(fetched.stdout.splitlines()[0])
        assert view["status"] == "succeeded", view
        fetched.stdout = fetched.stdout.splitlines()[-1]
        assert fetched.stdout.count(".") == 2, fetched.stderr  # a JWT: three segments
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        reader.join(timeout=5)
        out = "".join(lines)
        demo = dict(info["demo_client"])  # type: ignore[call-overload]
        smtp = dict(info["smtp"])  # type: ignore[call-overload]
        assert str(demo["client_secret"]) not in out
        assert str(smtp["password"]) not in out
        assert "tgs_" not in out
    finally:
        reap_up(proc)


def test_the_console_of_up_rotates_keys_in_the_state_folder(tmp_path: Path) -> None:
    """`up`'s gateway runs on the key host (its state folder): an admin rotates the broker
    key from the console, the new key is in <state>/keys and in the worker's bundle, and the
    gateway itself is given only the folder names (never a keys variable)."""
    state = tmp_path / "state"
    token_file = tmp_path / "admin.token"
    proc = _start_up(state, "--admin-token-file", str(token_file))
    try:
        info = wait_stack_json(proc, state)
        environ = Path(f"/proc/{dict(info['pids'])['gateway']}/environ").read_bytes()  # type: ignore[call-overload]
        names = environ.split(b"\0")
        assert f"TASKGATE_CONSOLE_KEY_HOST_DIR={state.resolve() / 'keys'}".encode() in names
        assert f"TASKGATE_CONSOLE_ROLES_DIR={state.resolve() / 'roles'}".encode() in names
        ctx = ssl.create_default_context(cafile=str(info["ca_file"]))
        with httpx.Client(base_url=str(info["gateway_url"]), verify=ctx, timeout=10) as http:
            form = http.get("/console/login")
            http.post(
                "/console/login",
                data={"csrf": csrf_of(form.text), "credential": token_file.read_text().strip()},
            )
            keys_page = http.get("/console/keys")
            assert 'id="rotate-keys"' in keys_page.text
            done = http.post(
                "/console/keys/rotate",
                data={"csrf": csrf_of(keys_page.text), "purpose": "broker", "confirm": "yes"},
            )
        assert done.status_code == 200, done.text[:300]
        newest = load_keys(state / "keys", role="operator").broker.current().kid
        assert newest in done.text
        worker = load_keys(state / "roles" / "worker" / "keys", role="worker")
        assert worker.broker.current().kid == newest
    finally:
        reap_up(proc)

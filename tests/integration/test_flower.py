"""`taskgate flower` with TASKGATE_TASK_EVENTS=true: task names, states, runtimes, workers
and queues over HTTPS behind basic auth; no page or API answer holds a payload, a result,
a secret or an exception message; without the credential every route is refused."""

from __future__ import annotations

import json
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.material import CertPaths
from taskgate.devstack.procs import Child, free_port, start_child, taskgate_argv
from tests.support.logs import register_log
from tests.support.observability import OBS_MODULES, PATHS, Canaries, PathsRun, run_every_path
from tests.support.processes import wait_for
from tests.support.stacks import SHORT_TIMINGS, PrivateStack, start_stack

pytestmark = pytest.mark.integration

FINAL = {"succeeded": "SUCCESS", "dead_lettered": "FAILURE", "failed": "FAILURE"}


@dataclass
class FlowerRun:
    stack: PrivateStack
    child: Child
    url: str
    password: str
    run: PathsRun
    canaries: Canaries

    def client(self, *, auth: tuple[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=_ca(self.stack.pki), auth=auth, timeout=10)

    def authed(self) -> httpx.Client:
        return self.client(auth=("flower", self.password))


@pytest.fixture(scope="module")
def flower(
    tmp_path_factory: pytest.TempPathFactory,
    pki: CertPaths,
    stack_env: dict[str, str],
    admin_token: str,
) -> Iterator[FlowerRun]:
    stack = start_stack(
        tmp_path_factory.mktemp("flower"),
        pki=pki,
        stack_env=stack_env | {"TASKGATE_TASK_EVENTS": "true"},
        admin_token=admin_token,
        modules=OBS_MODULES,
        timings=SHORT_TIMINGS,
    )
    try:
        stack.start_gateway()
        port = free_port()
        child = start_child(
            "flower",
            taskgate_argv("flower", "--port", str(port)),
            log_path=stack.folder / "logs" / "flower.log",
            env=stack.env,
        )
        register_log(child)
        stack.others.append(child)
        url = f"https://localhost:{port}"

        def answering() -> bool:
            if not child.alive():
                raise AssertionError(f"flower exited:\n{child.log_tail()}")
            try:
                with httpx.Client(verify=_ca(pki), timeout=2) as http:
                    return http.get(f"{url}/").status_code == 401
            except httpx.HTTPError:
                return False

        wait_for(answering, timeout=60, what="flower answering")
        password_file = Path(stack.env["TASKGATE_STATE_DIR"]) / "flower" / "flower.password"
        stack.start_worker(concurrency=2)
        canaries = Canaries()
        run = run_every_path(stack, canaries)
        yield FlowerRun(stack, child, url, password_file.read_text().strip(), run, canaries)
    finally:
        stack.stop()


def _ca(pki: CertPaths) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


def _tasks(flower: FlowerRun) -> dict[str, Any]:
    with flower.authed() as http:
        response = http.get("/api/tasks")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _settled(flower: FlowerRun) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        tasks = _tasks(flower)
        for task_id, (name, _rid) in flower.run.tasks.items():
            if tasks.get(task_id, {}).get("state") != FINAL[PATHS[name]]:
                return None
        return tasks

    return dict(wait_for(done, timeout=30, what="flower seeing every task end"))


def test_flower_shows_names_states_runtimes_workers_and_queues_but_no_values(
    flower: FlowerRun,
) -> None:
    """Each task: its name, final state, runtime, worker and queue; arguments and results
    are placeholders, failures the exception's type only, no traceback."""
    tasks = _settled(flower)
    for task_id, (name, _rid) in flower.run.tasks.items():
        task = tasks[task_id]
        assert task["name"] == name
        assert task["worker"].startswith("taskgate@")
        assert task["routing_key"] == "taskgate"
        assert task["args"] == "(sealed)"
        assert task["kwargs"] == "(sealed)"
        assert not task.get("traceback")
        if task["state"] == "SUCCESS":
            assert task["result"] == "(sealed)"
            assert task["runtime"] >= 0
        else:
            assert task["exception"] in {
                "ValueError",
                "InputRejectedError",
                "ConnectionError",
                "TimeLimitExceeded",
            }
    flaky = next(t for t, (n, _r) in flower.run.tasks.items() if n == "obs.flaky")
    assert tasks[flaky]["retries"] == 1


def test_no_flower_page_or_api_answer_holds_a_canary(flower: FlowerRun) -> None:
    """Every page and API route Flower serves, fetched with the credential, holds neither
    canary; the ones that show tasks name them."""
    tasks = _settled(flower)
    ids = list(flower.run.tasks) + flower.run.refused
    worker = next(iter(tasks.values()))["worker"]
    paths = [
        "/",
        "/workers",
        "/tasks",
        "/tasks/datatable?draw=1&start=0&length=100&search%5Bvalue%5D=&order%5B0%5D%5Bcolumn%5D=0",
        "/broker",
        "/api/tasks",
        "/api/task/types",
        "/api/workers",
        "/api/queues/length",
        "/metrics",
        "/healthcheck",
        f"/worker/{worker}",
    ]
    for task_id in ids:
        paths += [f"/task/{task_id}", f"/api/task/info/{task_id}", f"/api/task/result/{task_id}"]
    bodies = []
    with flower.authed() as http:
        for path in paths:
            response = http.get(path)
            # Results: Flower has no result backend (and no key to open one): 503.
            expected = 503 if path.startswith("/api/task/result/") else 200
            assert response.status_code in {expected, 404}, (path, response.status_code)
            bodies.append(response.text)
            for canary in flower.canaries.all():
                assert canary not in response.text, path
    everything = "\n".join(bodies)
    for name in PATHS:
        assert name in everything
    # Nor a credential: Flower's own password, the monitor's Redis password.
    state = Path(flower.stack.env["TASKGATE_STATE_DIR"])
    redis_password = (state / "redis-users" / "monitor.password").read_text().strip()
    for secret in (flower.password, redis_password):
        assert secret not in everything
    assert "flower_events_total" in everything  # /metrics answered, after login
    log = flower.child.log_path.read_text(errors="replace")
    for canary in flower.canaries.all():
        assert canary not in log


@pytest.mark.parametrize(
    "path", ["/", "/tasks", "/api/tasks", "/api/workers", "/metrics", "/healthcheck", "/broker"]
)
@pytest.mark.parametrize("auth", [None, ("flower", "wrong"), ("admin", "admin")])
def test_flower_refuses_requests_without_the_credential(
    flower: FlowerRun, path: str, auth: tuple[str, str] | None
) -> None:
    """No credential or a wrong one: 401 on every route, /metrics and /healthcheck too."""
    with flower.client(auth=auth) as http:
        response = http.get(path)
    assert response.status_code == 401
    assert "(sealed)" not in response.text
    assert "obs." not in response.text


def test_flower_refuses_control_actions(flower: FlowerRun) -> None:
    """Read-only: revoking a task or shutting a worker down through the API is refused."""
    task_id = next(iter(flower.run.tasks))
    with flower.authed() as http:
        revoke = http.post(f"/api/task/revoke/{task_id}", headers={"Origin": flower.url})
        apply = http.post("/api/task/async-apply/obs.echo", json={"args": []})
    assert revoke.status_code == 403
    assert apply.status_code == 403


def test_flower_password_is_private_and_over_https_only(flower: FlowerRun) -> None:
    """The generated credential file is mode 0600; plain HTTP gets no page."""
    path = Path(flower.stack.env["TASKGATE_STATE_DIR"]) / "flower" / "flower.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(httpx.HTTPError):
        httpx.get(flower.url.replace("https://", "http://") + "/", timeout=5)
    assert json.dumps(flower.run.tasks)  # the run happened

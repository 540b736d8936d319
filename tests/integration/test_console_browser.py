"""The console in a real headless Chromium (Debian's chromium + chromedriver, via Selenium)
against the real gateway over HTTPS.

No browser or driver is downloaded: the system chromedriver is named explicitly and
Selenium Manager is kept offline. Chromium accepts exactly the test gateway's certificate
(pinned by the hash of its public key), nothing else. Each page is screenshotted into
``tests/.screenshots/`` (git-ignored); with ``TASKGATE_UPDATE_SCREENSHOTS=1`` the copies in
``docs/images/`` are refreshed too.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.material import CertPaths
from security.audit import iter_records
from security.keys import Purpose
from security.keystore import list_keys
from tests.support.console import IDLE_TIMEOUT, KeyHost
from tests.support.gateways import ApiClient, Gateway
from tests.support.processes import wait_for

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download anything

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / ".screenshots"
DOC_IMAGES = ROOT / "docs" / "images"
INSTALL = "the browser tests need Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"  # noqa: E501


def _spki_pin(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def browser(pki: CertPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium trusting only the test gateway's certificate."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(INSTALL, pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the test runs as root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
        f"--ignore-certificate-errors-spki-list={_spki_pin(pki.cert('https'))}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"console-{name}.png"
    # The whole page: its height plus the window's own frame (outer minus inner height).
    height = driver.execute_script(
        "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight"
    )
    driver.set_window_size(1440, max(700, min(int(height) + 40, 2200)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1440, 1000)
    if os.environ.get("TASKGATE_UPDATE_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / path.name)


def _sign_in(driver: Any, gateway: Gateway, credential: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{gateway.url}/console/login")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sign in"
    driver.find_element(By.ID, "credential").send_keys(credential)
    driver.find_element(By.ID, "sign-in").click()
    try:
        wait_for(lambda: _h1(driver) == "Overview", timeout=15, what="the overview after sign-in")
    except AssertionError:
        pytest.fail(f"sign-in ended on {driver.current_url}: {driver.page_source[:1500]}")


def _h1(driver: Any) -> str:
    """The page's heading ("" while a navigation replaces the page)."""
    try:
        return str(driver.find_element(By.TAG_NAME, "h1").text)
    except WebDriverException:
        return ""


def _wait_h1(driver: Any, heading: str) -> None:
    wait_for(lambda: _h1(driver).startswith(heading), timeout=15, what=f"the page {heading!r}")


def _fail_task(client: ApiClient, redis_client: redis.Redis) -> str:
    with client.http() as http:
        response = http.post("/v1/tasks/test.fail_quoting_input", json={"note": "browser"})
    assert response.status_code == 202, response.text
    task_id = str(response.json()["id"])
    wait_for(
        lambda: redis_client.zscore("tg:dlq", task_id) is not None,
        timeout=30,
        what="the task dead-lettered",
    )
    return task_id


def test_sign_in_and_every_page_renders(
    browser: Any,
    console_gateway: Gateway,
    admin_token: str,
    make_client: Any,
    redis_client: redis.Redis,
) -> None:
    """Signed in with the admin token, each page renders its heading (screenshots)."""
    owner: ApiClient = make_client("tasks:submit:* tasks:read")
    with owner.http() as http:
        assert http.post("/v1/tasks/test.touch", json={"note": "hello"}).status_code == 202
    dead_id = _fail_task(owner, redis_client)
    wait_for(lambda: redis_client.zcard("tg:workers"), timeout=30, what="a worker heartbeat")
    browser.delete_all_cookies()
    browser.get(f"{console_gateway.url}/console/login")
    _shot(browser, "login")
    _sign_in(browser, console_gateway, admin_token)
    assert browser.find_element(By.ID, "operator").text.startswith("admin")
    assert "alive" in browser.find_element(By.ID, "workers").text  # the session's worker
    for path, heading, name in (
        ("overview", "Overview", "overview"),
        ("tasks", "Tasks", "tasks"),
        (f"tasks/{dead_id}", f"Task {dead_id}", "task"),
        ("dead-letters", "Dead letters", "dead-letters"),
        ("clients", "Clients", "clients"),
        ("keys", "Keys", "keys-bundle-only"),  # "keys": with the rotate form, below
        ("audit", "Audit log", "audit"),
    ):
        browser.get(f"{console_gateway.url}/console/{path}")
        assert _h1(browser).startswith(heading), path
        _shot(browser, name)


def test_search_tasks_by_name_and_owner(
    browser: Any, console_gateway: Gateway, admin_token: str, make_client: Any
) -> None:
    """The task search finds a client's task by name and owner and opens its timeline."""
    owner: ApiClient = make_client("tasks:submit:* tasks:read")
    with owner.http() as http:
        response = http.post("/v1/tasks/test.other", json={"note": "find me"})
    task_id = response.json()["id"]
    _sign_in(browser, console_gateway, admin_token)
    browser.get(f"{console_gateway.url}/console/tasks")
    Select(browser.find_element(By.ID, "f-name")).select_by_value("test.other")
    browser.find_element(By.ID, "f-owner").send_keys(owner.client_id)
    browser.find_element(By.ID, "search").click()
    wait_for(lambda: "owner=" in browser.current_url, timeout=15, what="the search results")
    _wait_h1(browser, "Tasks")
    rows = browser.find_element(By.ID, "tasks").text
    assert task_id in rows
    assert "test.other" in rows
    browser.find_element(By.LINK_TEXT, task_id).click()
    _wait_h1(browser, f"Task {task_id}")
    assert "accepted" in browser.find_element(By.ID, "timeline").text
    assert "task.submit" in browser.find_element(By.ID, "events").text  # from the audit log


def test_requeue_a_dead_letter(
    browser: Any,
    console_gateway: Gateway,
    admin_token: str,
    make_client: Any,
    redis_client: redis.Redis,
) -> None:
    """Requeue from the dead-letter page: it leaves the list and is audited by name."""
    owner: ApiClient = make_client("tasks:submit:* tasks:read")
    task_id = _fail_task(owner, redis_client)
    _sign_in(browser, console_gateway, admin_token)
    browser.get(f"{console_gateway.url}/console/dead-letters")
    browser.find_element(By.ID, f"requeue-{task_id}").click()
    _wait_h1(browser, "Dead letters")
    assert browser.find_element(By.ID, "message").text == "Requeued."
    audited = [
        (e.record.actor, e.record.outcome)
        for e in iter_records(redis_client)
        if e.record.action == "admin.dlq.requeue" and e.record.target == task_id
    ]
    assert audited == [("admin", "ok")]


def test_create_a_client_and_see_its_secret_once_then_filter_the_audit_by_operator(
    browser: Any, console_gateway: Gateway, make_operator: Any
) -> None:
    """A named operator creates a client: the secret shows once and never again; the audit
    page filtered by the operator's name shows the console's own records."""
    name, credential = make_operator("admin", name=f"alice{uuid.uuid4().hex[:4]}")
    _sign_in(browser, console_gateway, credential)
    browser.get(f"{console_gateway.url}/console/clients")
    browser.find_element(By.ID, "c-name").send_keys("Reports")
    browser.find_element(By.ID, "c-scopes").send_keys("tasks:submit:test.touch")
    browser.find_element(By.ID, "create-client").click()
    _wait_h1(browser, "Client ")
    secret = browser.find_element(By.ID, "client-secret").text
    client_id = browser.find_element(By.ID, "client-id").text
    assert secret.startswith("tgs_")
    assert "shown only this once" in browser.page_source
    browser.find_element(By.ID, "done").click()
    _wait_h1(browser, "Clients")
    assert client_id in browser.page_source
    assert secret not in browser.page_source
    browser.get(f"{console_gateway.url}/console/audit")
    browser.find_element(By.ID, "a-actor").send_keys(name)
    browser.find_element(By.ID, "filter").click()
    wait_for(lambda: f"actor={name}" in browser.current_url, timeout=15, what="the filter")
    _wait_h1(browser, "Audit log")
    actors = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#audit td.actor")}
    actions = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#audit td.action")}
    assert actors == {name}
    assert {"console.signin", "admin.clients.create"} <= actions
    assert secret not in browser.page_source


def test_sign_out(browser: Any, console_gateway: Gateway, admin_token: str) -> None:
    """Sign-out ends the session: the console sends you back to sign in."""
    _sign_in(browser, console_gateway, admin_token)
    browser.find_element(By.ID, "sign-out").click()
    _wait_h1(browser, "Sign in")
    assert browser.find_element(By.ID, "signed-out").text == "You are signed out."
    browser.get(f"{console_gateway.url}/console/overview")
    assert browser.current_url.endswith("/console/login")


def test_a_form_without_its_csrf_token_is_refused(
    browser: Any, console_gateway: Gateway, admin_token: str, make_client: Any
) -> None:
    """Remove the form's CSRF field in the page, submit: 403, the client stays enabled."""
    target: ApiClient = make_client("tasks:read")
    _sign_in(browser, console_gateway, admin_token)
    browser.get(f"{console_gateway.url}/console/clients")
    form = browser.find_element(
        By.CSS_SELECTOR, f"form[action='/console/clients/{target.client_id}/disable']"
    )
    try:
        browser.execute_script("arguments[0].querySelector('input[name=csrf]').remove()", form)
    except WebDriverException as exc:  # pragma: no cover - a driver that cannot script
        pytest.fail(f"could not remove the CSRF field: {exc.msg}")
    form.find_element(By.TAG_NAME, "button").click()
    _wait_h1(browser, "Refused")
    assert "stale" in browser.find_element(By.ID, "problem").text
    assert target.token()  # still enabled


def test_an_expired_session_is_sent_back_to_sign_in(
    browser: Any, console_gateway: Gateway, admin_token: str
) -> None:
    """Idle past the timeout, the next page is the sign-in page."""
    _sign_in(browser, console_gateway, admin_token)
    time.sleep(IDLE_TIMEOUT)

    def expired() -> bool:
        browser.get(f"{console_gateway.url}/console/keys")
        return bool(browser.current_url.endswith("/console/login"))

    wait_for(expired, timeout=IDLE_TIMEOUT * 3, what="the idle session expiring", interval=1)
    assert _h1(browser) == "Sign in"


def test_rotate_a_key_from_the_keys_page_and_see_the_restart_order(
    browser: Any, key_host_gateway: KeyHost, admin_token: str
) -> None:
    """On a gateway run on the key host, an admin picks a purpose, clicks Rotate, confirms,
    and sees the new key id and the restart order: workers first, then gateways."""
    gateway = key_host_gateway.gateway
    _sign_in(browser, gateway, admin_token)
    browser.get(f"{gateway.url}/console/keys")
    _wait_h1(browser, "Keys")
    _shot(browser, "keys")
    Select(browser.find_element(By.ID, "rotate-purpose")).select_by_value("vault")
    browser.find_element(By.ID, "rotate").click()
    _wait_h1(browser, "Rotate keys: vault?")
    browser.find_element(By.ID, "confirm").click()
    _wait_h1(browser, "Keys rotated")
    newest = [i.kid for i in list_keys(key_host_gateway.keys) if i.purpose is Purpose.VAULT][-1]
    assert newest in browser.find_element(By.ID, "new-keys").text
    restart = browser.find_element(By.ID, "restart").text
    assert "restart workers first, then gateways" in restart
    _shot(browser, "keys-rotated")
    browser.find_element(By.ID, "done").click()
    _wait_h1(browser, "Keys")
    assert newest in browser.find_element(By.ID, "keys").text

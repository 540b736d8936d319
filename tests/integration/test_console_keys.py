"""Key rotation from the console's Keys page, over HTTPS against real gateways: an admin
rotates on the key host (bundles exported again, audited by name), everyone else and every
forged form is refused, a gateway that is not on the key host has no button, a bad key host
is refused at start-up, and no key material reaches a page or a log."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis

from security.audit import iter_records
from security.keyrotation import BUNDLE_ORDER
from security.keys import Purpose
from security.keystore import list_keys, load_keys
from taskgate.devstack.procs import taskgate_argv
from tests.support.console import KeyHost, sign_in
from tests.support.gateways import Gateway

pytestmark = pytest.mark.integration

ROTATE = "/console/keys/rotate"
_KID = re.compile(r"<code>([a-z-]+-\d{8}T\d{6}Z-[0-9a-f]{8})</code>")


def _kids(folder: Path) -> list[str]:
    return [info.kid for info in list_keys(folder)]


def _newest(folder: Path, purpose: Purpose) -> str:
    return [info.kid for info in list_keys(folder) if info.purpose is purpose][-1]


def _audited(client: redis.Redis, action: str) -> list[tuple[str, str, str, str]]:
    return [
        (e.record.actor, e.record.outcome, e.record.target, e.record.reason)
        for e in iter_records(client)
        if e.record.action == action
    ]


def test_an_admin_rotates_one_purpose_after_confirming_and_every_bundle_follows(
    key_host_gateway: KeyHost, make_operator: Any, redis_client: redis.Redis
) -> None:
    """The first post only asks to confirm (nothing changes); the confirmed one adds a
    newer broker key in the key host's folder, exports every bundle again, shows the new
    id and the restart order, and is audited as keys.rotate under the operator's name."""
    name, credential = make_operator("admin")
    before = _kids(key_host_gateway.keys)
    http, csrf = sign_in(key_host_gateway.gateway, credential)
    with closing(http):
        keys_page = http.get("/console/keys")
        assert 'id="rotate-keys"' in keys_page.text
        asked = http.post(ROTATE, data={"csrf": csrf, "purpose": "broker"})
        assert asked.status_code == 200
        assert 'id="confirm-rotate"' in asked.text
        assert _kids(key_host_gateway.keys) == before  # asking changed nothing
        done = http.post(ROTATE, data={"csrf": csrf, "purpose": "broker", "confirm": "yes"})
        assert done.status_code == 200, done.text[:300]
        listed = http.get("/console/keys").text
    new = _newest(key_host_gateway.keys, Purpose.BROKER)
    assert new not in before
    assert set(_kids(key_host_gateway.keys)) - set(before) == {new}  # broker only
    assert _KID.findall(done.text) == [new]
    assert "restart workers first, then gateways" in done.text
    assert "worker, operator, gateway" in done.text
    for role in BUNDLE_ORDER:
        ring = load_keys(key_host_gateway.bundle(role), role=role)
        assert ring.broker.current().kid == new, role
    assert new in listed
    assert "after a restart" in listed  # this gateway still seals with its own ring
    assert (name, "ok", "broker", "bundles: worker,operator,gateway") in _audited(
        redis_client, "keys.rotate"
    )


def test_an_admin_rotates_every_purpose_at_once(
    key_host_gateway: KeyHost, admin_token: str, redis_client: redis.Redis
) -> None:
    """``all`` adds one newer key per purpose; the audit target is ``all``."""
    before = set(_kids(key_host_gateway.keys))
    http, csrf = sign_in(key_host_gateway.gateway, admin_token)
    with closing(http):
        done = http.post(ROTATE, data={"csrf": csrf, "purpose": "all", "confirm": "yes"})
    assert done.status_code == 200, done.text[:300]
    added = set(_kids(key_host_gateway.keys)) - before
    assert len(added) == len(Purpose)
    assert set(_KID.findall(done.text)) == added
    assert ("admin", "ok", "all") in [r[:3] for r in _audited(redis_client, "keys.rotate")]


def test_an_auditor_sees_no_rotate_form_and_a_forged_post_is_refused(
    key_host_gateway: KeyHost, make_operator: Any, redis_client: redis.Redis
) -> None:
    """An auditor's Keys page has no form; its post (with a valid CSRF token and the
    confirmation) is 403, audited as operator.forbidden, and adds no key."""
    name, credential = make_operator("auditor")
    before = _kids(key_host_gateway.keys)
    http, csrf = sign_in(key_host_gateway.gateway, credential)
    with closing(http):
        keys_page = http.get("/console/keys")
        assert 'id="rotate-keys"' not in keys_page.text
        assert "needs the admin role" in keys_page.text
        refused = http.post(ROTATE, data={"csrf": csrf, "purpose": "all", "confirm": "yes"})
    assert refused.status_code == 403
    assert _kids(key_host_gateway.keys) == before
    assert (name, "denied", f"POST {ROTATE}") in [
        r[:3] for r in _audited(redis_client, "operator.forbidden")
    ]
    assert not [r for r in _audited(redis_client, "keys.rotate") if r[0] == name]


def test_a_rotate_post_without_its_csrf_token_is_refused(
    key_host_gateway: KeyHost, make_operator: Any, redis_client: redis.Redis
) -> None:
    """No token, a wrong token or a foreign Origin: 403, no key added, audited."""
    name, credential = make_operator("admin")
    before = _kids(key_host_gateway.keys)
    http, csrf = sign_in(key_host_gateway.gateway, credential)
    fields = {"purpose": "broker", "confirm": "yes"}
    with closing(http):
        assert http.post(ROTATE, data=fields).status_code == 403
        assert http.post(ROTATE, data={**fields, "csrf": csrf[:-2] + "xx"}).status_code == 403
        foreign = http.post(
            ROTATE, data={**fields, "csrf": csrf}, headers={"Origin": "https://evil.test"}
        )
        assert foreign.status_code == 403
    assert _kids(key_host_gateway.keys) == before
    assert len([r for r in _audited(redis_client, "console.csrf") if r[0] == name]) == 3


def test_an_unknown_purpose_is_refused(key_host_gateway: KeyHost, admin_token: str) -> None:
    """A purpose that is not one: 422, no key added, no trace."""
    before = _kids(key_host_gateway.keys)
    http, csrf = sign_in(key_host_gateway.gateway, admin_token)
    with closing(http):
        bad = http.post(ROTATE, data={"csrf": csrf, "purpose": "../ca", "confirm": "yes"})
    assert bad.status_code == 422
    assert "Traceback" not in bad.text
    assert _kids(key_host_gateway.keys) == before


def test_without_a_key_host_there_is_no_button_and_a_post_is_refused(
    console_gateway: Gateway, admin_token: str, session_dir: Path, redis_client: redis.Redis
) -> None:
    """A gateway holding only its own keys says why it has no button; a posted rotation
    (admin, valid token) is 403, audited as a denied keys.rotate, and writes no key."""
    before = _kids(session_dir / "keys")
    http, csrf = sign_in(console_gateway, admin_token)
    with closing(http):
        keys_page = http.get("/console/keys")
        assert 'id="rotate-keys"' not in keys_page.text
        assert "holds only its own key bundle" in keys_page.text
        assert 'id="restart-order"' in keys_page.text
        refused = http.post(ROTATE, data={"csrf": csrf, "purpose": "broker", "confirm": "yes"})
    assert refused.status_code == 403
    assert "taskgate keys rotate" in refused.text
    assert _kids(session_dir / "keys") == before
    assert ("admin", "denied", "broker", "no key host") in _audited(redis_client, "keys.rotate")


def test_a_bundle_folder_that_cannot_be_replaced_fails_the_rotation_before_any_key(
    key_host_gateway: KeyHost, admin_token: str, redis_client: redis.Redis
) -> None:
    """The worker's bundle folder no longer holds a bundle: the rotation is refused with a
    clear error page before a key is written, and audited as failed."""
    bundle = key_host_gateway.bundle("worker")
    aside = bundle.with_name(f"keys-aside-{uuid.uuid4().hex[:6]}")
    bundle.rename(aside)
    bundle.mkdir(mode=0o700)
    (bundle / "notes.txt").write_text("not a bundle\n")
    before = _kids(key_host_gateway.keys)
    try:
        http, csrf = sign_in(key_host_gateway.gateway, admin_token)
        with closing(http):
            failed = http.post(ROTATE, data={"csrf": csrf, "purpose": "vault", "confirm": "yes"})
    finally:
        shutil.rmtree(bundle)
        aside.rename(bundle)
    assert failed.status_code == 500
    assert "is not a worker key bundle" in failed.text
    assert "Traceback" not in failed.text
    assert _kids(key_host_gateway.keys) == before
    assert ("admin", "error", "vault", "bad_destination") in _audited(redis_client, "keys.rotate")


def test_a_broken_key_host_folder_fails_the_rotation_and_loses_no_key(
    key_host_gateway: KeyHost, admin_token: str, redis_client: redis.Redis
) -> None:
    """The key host's manifest turned into a bundle's after start-up: refused with a clear
    page, audited as failed, and the folder is left exactly as it was."""
    manifest = key_host_gateway.keys / "keyring.json"
    original = manifest.read_bytes()
    files = sorted(p.name for p in key_host_gateway.keys.iterdir())
    manifest.write_bytes(original.replace(b'"version": 1,', b'"version": 1, "role": "worker",'))
    try:
        http, csrf = sign_in(key_host_gateway.gateway, admin_token)
        with closing(http):
            failed = http.post(ROTATE, data={"csrf": csrf, "purpose": "token", "confirm": "yes"})
        assert sorted(p.name for p in key_host_gateway.keys.iterdir()) == files
    finally:
        manifest.write_bytes(original)
    assert failed.status_code == 500
    assert "is a worker key bundle, not the key host" in failed.text
    assert ("admin", "error", "token", "bundle") in _audited(redis_client, "keys.rotate")


@pytest.mark.parametrize("where", ["bundle", "missing"])
def test_a_gateway_refuses_to_start_on_a_bundle_or_missing_key_host(
    where: str, stack_env: dict[str, str], session_dir: Path, tmp_path: Path
) -> None:
    """TASKGATE_CONSOLE_KEY_HOST_DIR naming a role's bundle, or nothing: exit 2 with one
    line that names the setting, before the port is bound."""
    folder = session_dir / "roles" / "worker" / "keys" if where == "bundle" else tmp_path / "no"
    env = stack_env | {"TASKGATE_CONSOLE": "true", "TASKGATE_CONSOLE_KEY_HOST_DIR": str(folder)}
    done = subprocess.run(
        taskgate_argv("serve", "--port", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("taskgate serve: refused: TASKGATE_CONSOLE_KEY_HOST_DIR: ")
    assert ("bundle" if where == "bundle" else "does not exist") in lines[0]


def test_no_key_material_reaches_a_page_or_the_gateway_log(
    key_host_gateway: KeyHost, admin_token: str
) -> None:
    """After a rotation, no key file's content (its base64, whole or a prefix) appears on
    the Keys page, the confirmation, the result page, an error page or the gateway's log."""
    http, csrf = sign_in(key_host_gateway.gateway, admin_token)
    with closing(http):
        bodies = [
            http.get("/console/keys").text,
            http.post(ROTATE, data={"csrf": csrf, "purpose": "signing"}).text,
            http.post(ROTATE, data={"csrf": csrf, "purpose": "signing", "confirm": "yes"}).text,
            http.post(ROTATE, data={"csrf": csrf, "purpose": "nope", "confirm": "yes"}).text,
            http.get("/console/keys").text,
            http.get("/console/audit", params={"action": "keys.rotate"}).text,
        ]
    bodies.append(key_host_gateway.gateway.child.log_path.read_text(errors="replace"))
    canaries = []
    for path in [*key_host_gateway.keys.iterdir(), *key_host_gateway.bundle("worker").iterdir()]:
        if path.suffix in {".key", ".pub"}:
            text = path.read_text().strip()
            canaries += [text, text[:24]]
    assert len(canaries) > 2 * len(Purpose)
    assert _newest(key_host_gateway.keys, Purpose.SIGNING) in bodies[2]
    for body in bodies:
        for canary in canaries:
            assert canary not in body

"""Tests for the local SMTP sink's own rules and for running it as a child process.

STARTTLS and AUTH before MAIL, the user name, the recipient cap, its credentials check,
loopback only, a private key and maildir, and ``main`` started and stopped by a signal.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from certs.material import CertPaths
from security.errors import ConfigError
from taskgate.devstack.procs import free_port, wait_until
from taskgate.devstack.smtp_sink import (
    MAX_RECIPIENTS,
    PASSWORD_HASH_ENV,
    Credentials,
    MaildirHandler,
    main,
    start_sink,
)
from tests.support.smtp import PASSWORD, SENDER, USERNAME
from tests.support.smtp import auth_plain_forms as _auth_plain_forms
from tests.support.smtp import delivered_messages as _messages
from tests.support.smtp import email_payload as _payload
from tests.support.smtp import start_test_sink as _start
from workers.demo.email import build_message, send_email, task_message_id


def _client(port: int, ca: Path) -> smtplib.SMTP:
    """A raw client already through STARTTLS (for protocol-level sink tests)."""
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="localhost", timeout=10)
    client.starttls(context=ssl.create_default_context(cafile=str(ca)))
    client.ehlo()
    return client


# --- the sink's own rules ---------------------------------------------------------------


def test_sink_requires_starttls_before_auth_and_mail(
    sink: Controller, smtp_env: int, maildir: Path
) -> None:
    """In the clear, AUTH and MAIL are refused with 530 and AUTH is not even offered."""
    client = smtplib.SMTP("127.0.0.1", smtp_env, local_hostname="localhost", timeout=10)
    try:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        secret = base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()
        assert client.docmd("AUTH", f"PLAIN {secret}")[0] == 530
        assert client.docmd("MAIL", f"FROM:<{SENDER}>")[0] == 530
    finally:
        client.close()
    assert _messages(maildir) == []


def test_sink_requires_auth_before_mail(
    sink: Controller, smtp_env: int, certs_a: CertPaths, maildir: Path
) -> None:
    """After STARTTLS but before AUTH, MAIL is refused."""
    client = _client(smtp_env, certs_a.ca)
    try:
        assert client.has_extn("auth")
        assert client.docmd("MAIL", f"FROM:<{SENDER}>")[0] == 530
    finally:
        client.close()


def test_sink_refuses_wrong_username(sink: Controller, smtp_env: int, certs_a: CertPaths) -> None:
    """The right password under another user name is refused."""
    client = _client(smtp_env, certs_a.ca)
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("someone-else", PASSWORD)
    finally:
        client.close()


def test_sink_caps_recipients(sink: Controller, smtp_env: int, certs_a: CertPaths) -> None:
    """More than MAX_RECIPIENTS RCPT commands are answered 452."""
    client = _client(smtp_env, certs_a.ca)
    try:
        client.login(USERNAME, PASSWORD)
        client.mail(SENDER)
        for index in range(MAX_RECIPIENTS):
            assert client.rcpt(f"user{index}@example.com")[0] == 250
        assert client.rcpt("one-too-many@example.com")[0] == 452
    finally:
        client.close()


def test_sink_accept_any_password_mode(smtp_env: int, certs_a: CertPaths, maildir: Path) -> None:
    """With no hash configured, any non-empty password for the right user is accepted."""
    controller = _start(certs_a, smtp_env, maildir, password=None)
    try:
        assert send_email(_payload(smtp_password=SecretStr("anything")))["delivered"] is True
    finally:
        controller.stop()


def test_credentials_check() -> None:
    """User name and password are both required to match; empty passwords never pass."""
    digest = hashlib.sha256(b"pw").hexdigest()
    hashed = Credentials.from_hex("u", digest.upper())
    assert hashed.check(b"u", b"pw")
    assert not hashed.check(b"u", b"other")
    assert not hashed.check(b"v", b"pw")
    open_mode = Credentials("u", None)
    assert open_mode.check(b"u", b"x")
    assert not open_mode.check(b"u", b"")
    assert not open_mode.check(b"v", b"x")


@pytest.mark.parametrize("digest", ["", "abc", "z" * 64, "0" * 63])
def test_credentials_refuse_malformed_digest(digest: str) -> None:
    """Only a 64-hex-digit SHA-256 digest is accepted."""
    with pytest.raises(ConfigError):
        Credentials.from_hex("u", digest)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "192.0.2.10", "::", "mail.example.com"],  # noqa: S104 - refusals under test
)
def test_sink_refuses_non_loopback_host(host: str, certs_a: CertPaths, tmp_path: Path) -> None:
    """The sink binds to loopback only."""
    with pytest.raises(ConfigError, match="loopback"):
        start_sink(
            host=host,
            port=free_port(),
            cert=certs_a.cert("https"),
            key=certs_a.key("https"),
            maildir=tmp_path,
            credentials=Credentials(USERNAME, None),
        )


def test_sink_binds_localhost_by_name(certs_a: CertPaths, tmp_path: Path) -> None:
    """'localhost' is accepted as a loopback host."""
    controller = start_sink(
        host="localhost",
        port=free_port(),
        cert=certs_a.cert("https"),
        key=certs_a.key("https"),
        maildir=tmp_path / "mail",
        credentials=Credentials(USERNAME, None),
    )
    controller.stop()


def test_sink_refuses_key_readable_by_others(certs_a: CertPaths, tmp_path: Path) -> None:
    """A private key readable by group or others is refused."""
    key = tmp_path / "key.pem"
    shutil.copyfile(certs_a.key("https"), key)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        start_sink(
            port=free_port(),
            cert=certs_a.cert("https"),
            key=key,
            maildir=tmp_path / "mail",
            credentials=Credentials(USERNAME, None),
        )


def test_maildir_is_made_private(tmp_path: Path) -> None:
    """An existing maildir with loose permissions is tightened to 0700."""
    folder = tmp_path / "mail"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    handler = MaildirHandler(folder)
    path = handler.write(b"Subject: x\r\n\r\nbody\r\n")
    assert folder.stat().st_mode & 0o777 == 0o700
    assert path.read_bytes() == b"Subject: x\r\n\r\nbody\r\n"
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temporary file left


def test_a_slow_sink_stores_the_message_before_it_answers(tmp_path: Path) -> None:
    """With a reply delay the message is on disk while the sender still waits: delivered,
    not yet answered (what the Redis crash test needs in flight)."""
    content = b"Subject: x\r\n\r\nbody\r\n"
    envelope: Any = SimpleNamespace(original_content=content)
    server: Any = None

    async def scenario() -> tuple[list[bytes], bool, str]:
        slow = MaildirHandler(tmp_path / "slow", reply_delay=30.0)
        waiting = asyncio.create_task(slow.handle_DATA(server, server, envelope))
        await asyncio.sleep(0.05)
        stored = [path.read_bytes() for path in (tmp_path / "slow").iterdir()]
        answered = waiting.done()
        waiting.cancel()
        quick = MaildirHandler(tmp_path / "quick", reply_delay=0.01)
        return stored, answered, await quick.handle_DATA(server, server, envelope)

    stored, answered, reply = asyncio.run(scenario())
    assert stored == [content]
    assert not answered
    assert reply.startswith("250 ")


# --- running as a child process ---------------------------------------------------------


def test_main_runs_as_a_module_and_stops_on_sigterm(
    smtp_env: int, certs_a: CertPaths, tmp_path: Path
) -> None:
    """`python -m taskgate.devstack.smtp_sink ...` accepts mail, logs no password, exits 0 on
    SIGTERM."""
    maildir = tmp_path / "mail"
    log_path = tmp_path / "sink.log"
    env = {**os.environ, PASSWORD_HASH_ENV: hashlib.sha256(PASSWORD.encode()).hexdigest()}
    argv = [
        sys.executable,
        "-m",
        "taskgate.devstack.smtp_sink",
        "--port",
        str(smtp_env),
        "--cert",
        str(certs_a.cert("https")),
        "--key",
        str(certs_a.key("https")),
        "--maildir",
        str(maildir),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: b"listening" in log_path.read_bytes(), timeout=30)
        send_email(_payload())
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0
    assert len(_messages(maildir)) == 1
    output = log_path.read_bytes()
    for form in _auth_plain_forms(PASSWORD):
        assert form not in output


def test_main_without_password_policy_exits_2(
    monkeypatch: pytest.MonkeyPatch, certs_a: CertPaths, tmp_path: Path, capsys: Any
) -> None:
    """Neither a password hash nor --accept-any-password: refuse to start (exit 2)."""
    monkeypatch.delenv(PASSWORD_HASH_ENV, raising=False)
    args = ["--cert", str(certs_a.cert("https")), "--key", str(certs_a.key("https"))]
    assert main([*args, "--maildir", str(tmp_path), "--port", str(free_port())]) == 2
    assert PASSWORD_HASH_ENV in capsys.readouterr().err


def test_main_refuses_malformed_hash_and_non_loopback_host(
    monkeypatch: pytest.MonkeyPatch, certs_a: CertPaths, tmp_path: Path
) -> None:
    """A malformed digest or a public bind address exits 2 before listening."""
    args = ["--cert", str(certs_a.cert("https")), "--key", str(certs_a.key("https"))]
    args += ["--maildir", str(tmp_path), "--port", str(free_port())]
    monkeypatch.setenv(PASSWORD_HASH_ENV, "not-a-digest")
    assert main(args) == 2
    public = "0.0.0.0"  # noqa: S104 - the refusal under test
    assert main([*args, "--accept-any-password", "--host", public]) == 2


def test_a_tasks_message_id_is_the_same_on_every_run() -> None:
    """The Message-ID comes from the task id and the sender's domain: a rerun repeats it."""
    task_id = "0b7e3c1e-5f8a-4a57-9d61-1f2e3d4c5b6a"
    first = build_message(_payload(), sender=SENDER, message_id=task_message_id(task_id, SENDER))
    again = build_message(_payload(), sender=SENDER, message_id=task_message_id(task_id, SENDER))
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] == f"<taskgate.{task_id}@{SENDER.rpartition('@')[2]}>"


def test_without_a_task_the_message_id_is_random() -> None:
    """Called outside a worker, each message gets its own Message-ID."""
    assert (
        build_message(_payload(), sender=SENDER)["Message-ID"]
        != build_message(_payload(), sender=SENDER)["Message-ID"]
    )

"""Tests for ``email.send`` and the local SMTP sink, against a real aiosmtpd server on loopback.

Certificates come from ``certs.material.init_certs``; a second, unrelated CA provides the
"wrong certificate". Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import importlib
import json
import logging
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from pydantic import SecretStr, ValidationError

from certs.material import CertPaths, init_certs
from security.errors import ConfigError
from security.tls import server_context
from taskgate.devstack.procs import free_port, wait_until
from taskgate.devstack.smtp_sink import (
    MAX_RECIPIENTS,
    PASSWORD_HASH_ENV,
    Credentials,
    MaildirHandler,
    main,
    start_sink,
)
from workers.contract.catalogue import default_catalogue
from workers.demo import email as demo_email
from workers.demo.email import (
    SendEmail,
    SmtpDeliveryError,
    SmtpTemporaryError,
    build_message,
    send_email,
    smtp_settings,
    task_message_id,
)

PASSWORD = "canary-Pa55word-7f3e9c"
USERNAME = "taskgate"
SENDER = "taskgate@localhost"
SPEC = default_catalogue.get("email.send")


def _auth_plain_forms(password: str) -> list[bytes]:
    """Every encoding in which the password crosses the wire during AUTH."""
    plain = f"\0{USERNAME}\0{password}".encode()
    return [password.encode(), base64.b64encode(plain), base64.b64encode(password.encode())]


def _payload(**overrides: Any) -> SendEmail:
    values: dict[str, Any] = {
        "to": "alice@example.com",
        "subject": "Quarterly report",
        "body": "Hello Alice,\n\nthe report is attached in spirit.\n",
        "smtp_password": SecretStr(PASSWORD),
    }
    values.update(overrides)
    return SendEmail.model_validate(values)


def _retryable(exc: BaseException) -> bool:
    if SPEC is None:
        raise RuntimeError("email.send is not registered")
    return isinstance(exc, SPEC.retry.retry_on)


def _messages(maildir: Path) -> list[Path]:
    return sorted(maildir.glob("*.eml")) if maildir.exists() else []


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs_a(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    folder = tmp_path_factory.mktemp("smtp") / "certs"
    init_certs(folder)
    return CertPaths(folder)


@pytest.fixture(scope="module")
def certs_b(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    """Another CA: its certificates must not verify against certs_a's CA."""
    folder = tmp_path_factory.mktemp("smtp-other") / "certs"
    init_certs(folder)
    return CertPaths(folder)


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def smtp_env(monkeypatch: pytest.MonkeyPatch, certs_a: CertPaths, port: int) -> Iterator[int]:
    """TASKGATE_SMTP_* pointing at 127.0.0.1:port, trusting certs_a's CA."""
    for name in list(os.environ):
        if name.startswith("TASKGATE_SMTP_") or name in ("TASKGATE_CA_FILE", "TASKGATE_STATE_DIR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TASKGATE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("TASKGATE_SMTP_PORT", str(port))
    monkeypatch.setenv("TASKGATE_SMTP_USERNAME", USERNAME)
    monkeypatch.setenv("TASKGATE_SMTP_SENDER", SENDER)
    monkeypatch.setenv("TASKGATE_SMTP_CA_FILE", str(certs_a.ca))
    monkeypatch.setenv("TASKGATE_SMTP_TIMEOUT", "10")
    smtp_settings.cache_clear()
    yield port
    smtp_settings.cache_clear()


def _start(
    certs: CertPaths,
    port: int,
    maildir: Path,
    *,
    password: str | None = PASSWORD,
    handler: MaildirHandler | None = None,
) -> Controller:
    credentials = (
        Credentials(USERNAME, None)
        if password is None
        else Credentials.from_hex(USERNAME, hashlib.sha256(password.encode()).hexdigest())
    )
    return start_sink(
        port=port,
        cert=certs.cert("https"),
        key=certs.key("https"),
        maildir=maildir,
        credentials=credentials,
        handler=handler,
    )


@pytest.fixture
def sink(smtp_env: int, certs_a: CertPaths, maildir: Path) -> Iterator[Controller]:
    controller = _start(certs_a, smtp_env, maildir)
    yield controller
    controller.stop()


def _client(port: int, ca: Path) -> smtplib.SMTP:
    """A raw client already through STARTTLS (for protocol-level sink tests)."""
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="localhost", timeout=10)
    client.starttls(context=ssl.create_default_context(cafile=str(ca)))
    client.ehlo()
    return client


# --- delivery ---------------------------------------------------------------------------


def test_send_email_delivers_over_starttls_into_maildir(sink: Controller, maildir: Path) -> None:
    """The message lands as one private .eml with the subject and body; the result is small."""
    result = send_email(_payload())
    assert result["delivered"] is True
    assert result["recipients"] == 1
    assert set(result) == {"delivered", "message_id", "recipients"}
    assert result["message_id"].startswith("<")
    assert result["message_id"].endswith("@localhost>")
    (stored,) = _messages(maildir)
    assert stored.stat().st_mode & 0o777 == 0o600
    assert maildir.stat().st_mode & 0o777 == 0o700
    message = email.message_from_bytes(stored.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Quarterly report"
    assert message["To"] == "alice@example.com"
    assert message["From"] == SENDER
    assert message["Message-ID"] == result["message_id"]
    body = message.get_content().replace("\r\n", "\n")  # stored exactly as received (CRLF)
    assert body == "Hello Alice,\n\nthe report is attached in spirit.\n"


def test_password_is_in_no_stored_file_and_not_in_the_result(
    sink: Controller, maildir: Path
) -> None:
    """Neither the maildir (any file, any encoding) nor the returned result holds the password."""
    result = send_email(_payload())
    files = [p for p in maildir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for form in _auth_plain_forms(PASSWORD):
            assert form not in data
    serialised = json.dumps(result)
    assert PASSWORD not in serialised
    assert "Hello Alice" not in serialised


def test_password_is_never_logged_even_at_debug(
    sink: Controller, maildir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG (aiosmtpd included) no log line carries the password."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mail.log")
    send_email(_payload())
    assert caplog.records  # aiosmtpd did log the session
    for form in _auth_plain_forms(PASSWORD):
        assert form.decode() not in caplog.text


def test_send_email_sets_reply_to_and_encodes_unicode(sink: Controller, maildir: Path) -> None:
    """Reply-To is set when given; a non-ASCII subject and body survive the round trip."""
    send_email(_payload(subject="Grüße — 東京", body="naïve café\n", reply_to="bob@example.org"))
    (stored,) = _messages(maildir)
    message = email.message_from_bytes(stored.read_bytes(), policy=email.policy.default)
    assert message["Reply-To"] == "bob@example.org"
    assert message["Subject"] == "Grüße — 東京"
    assert message.get_content().replace("\r\n", "\n") == "naïve café\n"


def test_send_email_over_implicit_tls(
    smtp_env: int, certs_a: CertPaths, maildir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS_MODE=implicit speaks TLS from the first byte and verifies the certificate."""
    monkeypatch.setenv("TASKGATE_SMTP_TLS_MODE", "implicit")
    smtp_settings.cache_clear()

    def accept(
        _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, _data: Any
    ) -> AuthResult:
        return AuthResult(success=True, handled=False)

    controller = Controller(
        MaildirHandler(maildir),
        hostname="127.0.0.1",
        port=smtp_env,
        server_hostname="localhost",
        ssl_context=server_context(certs_a.cert("https"), certs_a.key("https")),
        authenticator=accept,
        auth_require_tls=False,  # aiosmtpd only counts STARTTLS; this socket is TLS throughout
    )
    controller.start()
    try:
        assert send_email(_payload())["delivered"] is True
    finally:
        controller.stop()
    assert len(_messages(maildir)) == 1


def test_build_message_refuses_line_breaks_in_headers() -> None:
    """Even if a value slipped past the schema, EmailMessage refuses CR/LF in a header."""
    payload = SendEmail.model_construct(
        to="alice@example.com",
        subject="Hi\r\nBcc: victim@example.net",
        body="x",
        smtp_password=SecretStr(PASSWORD),
        reply_to=None,
    )
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_message(payload, sender=SENDER)


# --- payload validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to", "alice@example.com\r\nBcc: victim@example.net"),
        ("to", "alice@example.com\nBcc: victim@example.net"),
        ("to", "alice@example.com, victim@example.net"),
        ("to", "Alice <alice@example.com>"),
        ("reply_to", "bob@example.org\r\nBcc: victim@example.net"),
        ("subject", "Hi\r\nBcc: victim@example.net"),
        ("subject", "Hi\nBcc: victim@example.net"),
        ("subject", "Hi\rBcc: victim@example.net"),
        ("subject", "x" * 201),
        ("subject", ""),
        ("body", "x" * 50_001),
        ("body", "bidi \u202e override"),
    ],
)
def test_payload_refuses_header_injection_and_bad_values(field: str, value: str) -> None:
    """Line breaks, lists, display names, oversize and invisible controls are refused."""
    with pytest.raises(ValidationError) as info:
        _payload(**{field: value})
    assert "victim" not in str(info.value)  # errors never echo the input


@pytest.mark.parametrize("password", ["", "canary\0word", "canary\r\nRSET", "canary" * 200])
def test_payload_refuses_unusable_passwords(password: str) -> None:
    """Empty, control characters (they would break AUTH PLAIN) and oversize are refused."""
    with pytest.raises(ValidationError) as info:
        _payload(smtp_password=SecretStr(password))
    assert "canary" not in str(info.value)


def test_payload_refuses_unknown_fields() -> None:
    """Unknown fields (a smuggled bcc, say) are refused."""
    with pytest.raises(ValidationError):
        _payload(bcc="victim@example.net")


def test_payload_keeps_password_secret_in_repr() -> None:
    """The validated payload's repr hides the password."""
    assert PASSWORD not in repr(_payload())


# --- TLS and session refusals -----------------------------------------------------------


def test_certificate_from_another_ca_is_refused(
    smtp_env: int, certs_b: CertPaths, maildir: Path
) -> None:
    """A server certificate not signed by the configured CA fails the handshake; not retried."""
    controller = _start(certs_b, smtp_env, maildir)
    try:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            send_email(_payload())
    finally:
        controller.stop()
    assert not _retryable(info.value)
    assert _messages(maildir) == []


def test_implicit_tls_with_certificate_from_another_ca_is_refused(
    smtp_env: int, certs_b: CertPaths, maildir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Implicit TLS verifies the certificate too."""
    monkeypatch.setenv("TASKGATE_SMTP_TLS_MODE", "implicit")
    smtp_settings.cache_clear()
    controller = Controller(
        MaildirHandler(maildir),
        hostname="127.0.0.1",
        port=smtp_env,
        server_hostname="localhost",
        ssl_context=server_context(certs_b.cert("https"), certs_b.key("https")),
    )
    controller.start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            send_email(_payload())
    finally:
        controller.stop()


def test_server_without_starttls_is_refused(smtp_env: int, maildir: Path) -> None:
    """A server that does not offer STARTTLS (or had it stripped) gets nothing; not retried."""
    controller = Controller(
        MaildirHandler(maildir), hostname="127.0.0.1", port=smtp_env, server_hostname="localhost"
    )
    controller.start()
    try:
        with pytest.raises(SmtpDeliveryError) as info:
            send_email(_payload())
    finally:
        controller.stop()
    assert info.value.reason == "starttls_unavailable"
    assert not _retryable(info.value)
    assert _messages(maildir) == []


def test_wrong_password_is_an_auth_failure_and_not_retried(
    smtp_env: int, certs_a: CertPaths, maildir: Path
) -> None:
    """A refused login raises auth_failed, carries no password or server text, is not retried."""
    controller = _start(certs_a, smtp_env, maildir, password="the-real-one")
    try:
        with pytest.raises(SmtpDeliveryError) as info:
            send_email(_payload())
    finally:
        controller.stop()
    assert info.value.reason == "auth_failed"
    assert "535" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__  # smtplib's error (with server text) is not chained
    assert not _retryable(info.value)
    assert _messages(maildir) == []


def test_connection_refused_is_retried(smtp_env: int) -> None:
    """No server listening: a ConnectionError, which the retry policy retries."""
    with pytest.raises(ConnectionError) as info:
        send_email(_payload())
    assert _retryable(info.value)


@pytest.mark.parametrize(
    ("greeting", "error"),
    [(b"", smtplib.SMTPServerDisconnected), (b"554 5.3.2 not now\r\n", smtplib.SMTPConnectError)],
)
def test_dropped_or_refused_greeting_is_retried(
    smtp_env: int, greeting: bytes, error: type[Exception]
) -> None:
    """A server that hangs up or refuses service at the greeting is retried as is."""
    with socket.create_server(("127.0.0.1", smtp_env)) as listener:

        def answer_once() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.sendall(greeting)

        thread = threading.Thread(target=answer_once, daemon=True)
        thread.start()
        with pytest.raises(error) as info:
            send_email(_payload())
        thread.join(timeout=10)
    assert _retryable(info.value)


class _RefusingHandler(MaildirHandler):
    """Answers RCPT or DATA with a configured reply."""

    def __init__(self, maildir: Path, *, rcpt: str = "", data: str = "") -> None:
        super().__init__(maildir)
        self.rcpt_reply = rcpt
        self.data_reply = data

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply.format(address=address)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self.data_reply or await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize(
    ("replies", "error", "reason", "retry"),
    [
        ({"rcpt": "550 5.1.1 <{address}>: no such user"}, SmtpDeliveryError, "smtp_refused", False),
        ({"rcpt": "450 4.2.1 <{address}>: try later"}, SmtpTemporaryError, "smtp_temporary", True),
        ({"data": "451 4.3.0 local error"}, SmtpTemporaryError, "smtp_temporary", True),
        ({"data": "554 5.6.0 rejected"}, SmtpDeliveryError, "smtp_refused", False),
    ],
)
def test_server_replies_map_to_errors_without_server_text(
    smtp_env: int,
    certs_a: CertPaths,
    maildir: Path,
    replies: dict[str, str],
    error: type[SmtpDeliveryError],
    reason: str,
    retry: bool,
) -> None:
    """5xx is final, 4xx is retried; the server's text (which may quote the address) is dropped."""
    handler = _RefusingHandler(maildir, **replies)
    controller = _start(certs_a, smtp_env, maildir, handler=handler)
    try:
        with pytest.raises(error) as info:
            send_email(_payload())
    finally:
        controller.stop()
    assert info.value.reason == reason
    assert type(info.value) is error
    assert "alice" not in str(info.value)
    assert _retryable(info.value) is retry


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported"), "smtp_unsupported"),
        (smtplib.SMTPException("No suitable authentication method found."), "smtp_error"),
        (smtplib.SMTPRecipientsRefused({}), "smtp_error"),
    ],
)
def test_other_smtplib_failures_become_final_errors(
    exc: smtplib.SMTPException, reason: str
) -> None:
    """smtplib failures without a reply code become final, text-free errors."""
    refused = demo_email._refused(exc)
    assert type(refused) is SmtpDeliveryError
    assert refused.reason == reason
    assert not _retryable(refused)


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


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASKGATE_SMTP_TLS_MODE", "plain"),
        ("TASKGATE_SMTP_TLS_MODE", "none"),
        ("TASKGATE_SMTP_PORT", "0"),
        ("TASKGATE_SMTP_PORT", "smtp"),
        ("TASKGATE_SMTP_SENDER", "Taskgate <taskgate@localhost>"),
        ("TASKGATE_SMTP_SENDER", "no-at-sign"),
        ("TASKGATE_SMTP_HOST", "mail\r\nhost"),
    ],
)
def test_settings_refuse_unsafe_values(
    smtp_env: int, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """No plaintext mode, sane ports, one plain sender; the error names the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        smtp_settings()
    assert info.value.setting == variable


def test_settings_refuse_missing_ca_file(
    smtp_env: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A CA file that does not exist stops delivery before any connection."""
    monkeypatch.setenv("TASKGATE_SMTP_CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError) as info:
        send_email(_payload())
    assert info.value.setting == "TASKGATE_SMTP_CA_FILE"


def test_settings_ca_file_falls_back_to_stack_ca(
    smtp_env: int, monkeypatch: pytest.MonkeyPatch, certs_a: CertPaths, tmp_path: Path
) -> None:
    """Without TASKGATE_SMTP_CA_FILE: TASKGATE_CA_FILE, then <TASKGATE_STATE_DIR>/certs/ca.pem."""
    monkeypatch.delenv("TASKGATE_SMTP_CA_FILE")
    monkeypatch.setenv("TASKGATE_CA_FILE", str(certs_a.ca))
    assert smtp_settings().resolved_ca_file == certs_a.ca
    smtp_settings.cache_clear()
    monkeypatch.delenv("TASKGATE_CA_FILE")
    monkeypatch.setenv("TASKGATE_STATE_DIR", str(certs_a.folder.parent))
    assert smtp_settings().resolved_ca_file == certs_a.ca


def test_settings_defaults(smtp_env: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Defaults: localhost:8025 over STARTTLS as taskgate, CA under .taskgate/certs."""
    for name in list(os.environ):
        if name.startswith("TASKGATE_SMTP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".taskgate" / "certs").mkdir(parents=True)
    (tmp_path / ".taskgate" / "certs" / "ca.pem").write_text("placeholder")
    settings = smtp_settings()
    assert (settings.host, settings.port, settings.tls_mode) == ("localhost", 8025, "starttls")
    assert (settings.username, settings.sender) == ("taskgate", "taskgate@localhost")
    assert settings.resolved_ca_file == Path(".taskgate/certs/ca.pem")


def test_importing_reads_no_settings() -> None:
    """Importing the module with broken SMTP settings succeeds: they are read at first call."""
    env = {**os.environ, "TASKGATE_SMTP_TLS_MODE": "plain", "TASKGATE_SMTP_PORT": "x"}
    done = subprocess.run(
        [sys.executable, "-c", "import workers.demo.email"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


def test_task_is_declared_once_with_secret_password_and_retry_policy() -> None:
    """email.send is registered once, its password declared secret, auth errors not retried."""
    importlib.import_module("workers.demo.email")
    importlib.import_module("workers.demo.email")
    assert SPEC is not None
    assert default_catalogue.get("email.send") is SPEC
    assert SPEC.fn is send_email
    assert SPEC.schema is SendEmail
    assert SPEC.secret_fields == ("smtp_password",)
    assert SPEC.retry.max_attempts == 5
    for retried in (
        smtplib.SMTPServerDisconnected(),
        smtplib.SMTPConnectError(421, "busy"),
        ConnectionResetError(),
        TimeoutError(),
    ):
        assert _retryable(retried)
    assert not _retryable(smtplib.SMTPAuthenticationError(535, "no"))
    assert not _retryable(ssl.SSLCertVerificationError())


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

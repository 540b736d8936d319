"""Tests for ``email.send`` against a real aiosmtpd server on loopback: delivery.

Messages delivered over STARTTLS and implicit TLS into the sink's maildir, the password
nowhere stored or logged, the payload and headers refused, the SMTP settings and the
task's catalogue entry. Certificates come from ``certs.material.init_certs``.
"""

from __future__ import annotations

import email
import email.policy
import importlib
import json
import logging
import os
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from pydantic import SecretStr, ValidationError

from certs.material import CertPaths
from security.errors import ConfigError
from security.tls import server_context
from taskgate.devstack.smtp_sink import MaildirHandler
from tests.support.smtp import PASSWORD, SENDER, SPEC
from tests.support.smtp import auth_plain_forms as _auth_plain_forms
from tests.support.smtp import delivered_messages as _messages
from tests.support.smtp import email_payload as _payload
from tests.support.smtp import retryable as _retryable
from workers.contract.catalogue import default_catalogue
from workers.demo.email import SendEmail, build_message, send_email, smtp_settings

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

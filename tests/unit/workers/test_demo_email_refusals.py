"""Tests for ``email.send``'s TLS and session refusals, against a real aiosmtpd server.

A second, unrelated CA provides the "wrong certificate"; a server without STARTTLS, a
wrong password, refused connections and greetings, and server replies map to errors that
are retried or final, without the server's text. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from certs.material import CertPaths, init_certs
from security.tls import server_context
from taskgate.devstack.smtp_sink import MaildirHandler
from tests.support.smtp import PASSWORD
from tests.support.smtp import delivered_messages as _messages
from tests.support.smtp import email_payload as _payload
from tests.support.smtp import retryable as _retryable
from tests.support.smtp import start_test_sink as _start
from workers.demo import email as demo_email
from workers.demo.email import SmtpDeliveryError, SmtpTemporaryError, send_email, smtp_settings


@pytest.fixture(scope="module")
def certs_b(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    """Another CA: its certificates must not verify against certs_a's CA."""
    folder = tmp_path_factory.mktemp("smtp-other") / "certs"
    init_certs(folder)
    return CertPaths(folder)


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

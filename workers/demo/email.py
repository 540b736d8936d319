"""``email.send``: deliver one plain-text message over SMTP with verified TLS.

Connection details come from ``TASKGATE_SMTP_*`` (:class:`SmtpSettings`), read at the first
call, never at import. Only encrypted sessions exist: STARTTLS (the default; a server that
does not offer it is refused, so a stripped offer cannot downgrade the session) or implicit
TLS. The server certificate is verified against ``TASKGATE_SMTP_CA_FILE`` and the host name.

The password arrives as a vault-resolved ``SecretStr`` and is unwrapped only inside the
``login`` call. SMTP replies are never copied into errors: a reply can echo the recipient,
so failures carry the reply code and a stable ``reason`` only.
"""

from __future__ import annotations

import contextlib
import functools
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from security.errors import ConfigError, TaskgateError
from security.sanitise import CleanStr, SafeEmail
from security.tls import check_readable, client_context
from workers.contract.catalogue import RetryPolicy, task
from workers.once import once

__all__ = [
    "RETRY_ON",
    "SendEmail",
    "SmtpDeliveryError",
    "SmtpSettings",
    "SmtpTemporaryError",
    "build_message",
    "deliver",
    "send_email",
    "smtp_settings",
    "task_message_id",
]

ENV_PREFIX = "TASKGATE_SMTP_"
_ADDRESS_FORBIDDEN = set(' \t<>()[]\\,;:"')


class SmtpSettings(BaseSettings):
    """Where ``email.send`` delivers. ``ca_file`` falls back to the stack's CA."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    host: Annotated[str, CleanStr(max_length=253, min_length=1)] = "localhost"
    port: int = Field(default=8025, ge=1, le=65535)
    username: Annotated[str, CleanStr(max_length=254, min_length=1)] = "taskgate"
    sender: Annotated[str, CleanStr(max_length=254, min_length=3)] = "taskgate@localhost"
    ca_file: Path | None = None
    tls_mode: Literal["starttls", "implicit"] = "starttls"
    timeout: float = Field(default=30.0, gt=0, le=300)
    # Shared stack settings (no TASKGATE_SMTP_ prefix), used only to default ca_file.
    state_dir: Path = Field(default=Path(".taskgate"), validation_alias="TASKGATE_STATE_DIR")
    stack_ca_file: Path | None = Field(default=None, validation_alias="TASKGATE_CA_FILE")

    @field_validator("sender")
    @classmethod
    def _one_plain_address(cls, value: str) -> str:
        # Configuration, not payload, so a dotless domain (taskgate@localhost) is fine.
        local, _, domain = value.rpartition("@")
        if not local or not domain or set(value) & _ADDRESS_FORBIDDEN:
            raise ValueError("must be one plain local@domain address")
        return value

    @property
    def resolved_ca_file(self) -> Path:
        """The CA that must have signed the SMTP server's certificate."""
        return self.ca_file or self.stack_ca_file or self.state_dir / "certs" / "ca.pem"


@functools.cache
def smtp_settings() -> SmtpSettings:
    """Build (once per process) and check the SMTP settings; refusals are ``ConfigError``."""
    try:
        settings = SmtpSettings()
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        raise ConfigError(f"{ENV_PREFIX}{field.upper()}", first["msg"], "correct it") from None
    check_readable(
        settings.resolved_ca_file, setting=f"{ENV_PREFIX}CA_FILE", what="CA certificate (PEM)"
    )
    return settings


class SmtpDeliveryError(TaskgateError):
    """The SMTP server refused the session or the message (not retried).

    The message names the SMTP reply code only; the server's text is dropped because it
    can quote the recipient.
    """

    default_reason = "smtp_refused"


class SmtpTemporaryError(SmtpDeliveryError):
    """A 4xx reply to MAIL, RCPT or DATA: the server asks to try again later (retried)."""

    default_reason = "smtp_temporary"


# Authentication failures are deliberately absent: retrying a wrong password only gets
# the account locked. ``smtplib.SMTPException`` is an ``OSError``, so OSError is absent too.
RETRY_ON: tuple[type[BaseException], ...] = (
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    ConnectionError,
    TimeoutError,
    SmtpTemporaryError,
)


class SendEmail(BaseModel):
    """Payload of ``email.send``: one recipient, a one-line subject, a plain-text body."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    to: SafeEmail
    subject: Annotated[str, CleanStr(max_length=200, min_length=1)]
    body: Annotated[str, CleanStr(max_length=50_000, multiline=True)]
    smtp_password: SecretStr = Field(min_length=1, max_length=1024)
    reply_to: SafeEmail | None = None

    @field_validator("smtp_password")
    @classmethod
    def _no_control_characters(cls, value: SecretStr) -> SecretStr:
        # A NUL would split the AUTH PLAIN triple; CR/LF would end the SMTP line.
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value.get_secret_value()):
            raise ValueError("password contains a control character")
        return value


def build_message(
    payload: SendEmail,
    *,
    sender: str,
    now: datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """The RFC 5322 message; ``EmailMessage`` itself refuses CR/LF in any header.

    ``message_id`` (see :func:`task_message_id`) makes every run of one task send the same
    ``Message-ID``, so a receiver can drop a duplicate; without it a random one is made."""
    domain = sender.rpartition("@")[2]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = payload.to
    if payload.reply_to is not None:
        message["Reply-To"] = payload.reply_to
    message["Subject"] = payload.subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id or make_msgid(domain=domain)
    message.set_content(payload.body)
    return message


def _refused(exc: smtplib.SMTPException) -> SmtpDeliveryError:
    """Translate an smtplib failure into an error that carries no server text."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return SmtpDeliveryError(
            f"SMTP authentication failed (reply {exc.smtp_code})", reason="auth_failed"
        )
    code = 0
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = next((reply[0] for reply in exc.recipients.values()), 0)
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
    if 400 <= code < 500:
        return SmtpTemporaryError(f"SMTP server deferred the message (reply {code})")
    if code:
        return SmtpDeliveryError(f"SMTP server refused the message (reply {code})")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SmtpDeliveryError(
            "SMTP server lacks a required extension", reason="smtp_unsupported"
        )
    return SmtpDeliveryError(f"SMTP session failed ({type(exc).__name__})", reason="smtp_error")


def _connect(settings: SmtpSettings, context: ssl.SSLContext, helo: str) -> smtplib.SMTP:
    if settings.tls_mode == "implicit":
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            local_hostname=helo,
            timeout=settings.timeout,
            context=context,
        )
    client = smtplib.SMTP(
        settings.host, settings.port, local_hostname=helo, timeout=settings.timeout
    )
    try:
        client.ehlo()
        if not client.has_extn("starttls"):
            raise SmtpDeliveryError(
                "SMTP server does not offer STARTTLS", reason="starttls_unavailable"
            )
        client.starttls(context=context)
        client.ehlo()
    except BaseException:
        client.close()
        raise
    return client


def deliver(message: EmailMessage, *, recipient: str, password: SecretStr) -> None:
    """Send ``message`` to ``recipient`` through the configured server, over verified TLS."""
    settings = smtp_settings()
    context = client_context(settings.resolved_ca_file, None, None)
    helo = settings.sender.rpartition("@")[2]
    try:
        client = _connect(settings, context, helo)
        try:
            client.login(settings.username, password.get_secret_value())
            client.send_message(message, from_addr=settings.sender, to_addrs=[recipient])
            # The message was accepted: a failed goodbye must not cause a resend.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
        finally:
            client.close()
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError):
        raise  # retried as they are
    except smtplib.SMTPException as exc:
        raise _refused(exc) from None


@task(
    "email.send",
    schema=SendEmail,
    secret_fields=("smtp_password",),
    rate_limit="30/minute",
    # 50 000 characters of body can take up to 6 bytes each once JSON-escaped.
    max_payload_bytes=320 * 1024,
    retry=RetryPolicy(max_attempts=5, backoff_base=5.0, backoff_max=300.0, retry_on=RETRY_ON),
    soft_time_limit=90,
    time_limit=120,
)
def send_email(payload: SendEmail) -> dict[str, Any]:
    """Send one plain-text email through the configured SMTP server over verified TLS.

    Inside a worker the delivery runs once per task (:func:`workers.once.once`): a run of
    the same task after a crash finds it recorded and does not send again; its
    ``Message-ID`` is derived from the task id either way. Called directly (no task), it
    simply sends."""
    sender = smtp_settings().sender
    task_id = _current_task_id()
    message_id = task_message_id(task_id, sender) if task_id else None
    message = build_message(payload, sender=sender, message_id=message_id)

    def send() -> None:
        deliver(message, recipient=payload.to, password=payload.smtp_password)

    again = False
    if task_id:
        again = not once("deliver", send).ran
    else:
        send()
    result: dict[str, Any] = {
        "delivered": True,
        "message_id": str(message["Message-ID"]),
        "recipients": 1,
    }
    if again:
        result["already_delivered"] = True
    return result


def task_message_id(task_id: str, sender: str) -> str:
    """The ``Message-ID`` of task ``task_id``'s email: the same on every run of the task."""
    return f"<taskgate.{task_id}@{sender.rpartition('@')[2]}>"


def _current_task_id() -> str | None:
    from celery import current_task

    request = getattr(current_task, "request", None)
    task_id = getattr(request, "id", None)
    return str(task_id) if task_id else None

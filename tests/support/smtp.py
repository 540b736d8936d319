"""Mail for the ``email.send`` and SMTP sink tests: credentials, payloads, a sink to start.

The canary password in every form it takes on the wire during AUTH, ``email.send``
payloads, which errors the task retries, the messages a maildir holds, and the local sink
started with a certificate, a port and a password.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from pydantic import SecretStr

from certs.material import CertPaths
from taskgate.devstack.smtp_sink import Credentials, MaildirHandler, start_sink
from workers.contract.catalogue import default_catalogue
from workers.demo.email import SendEmail

PASSWORD = "canary-Pa55word-7f3e9c"
USERNAME = "taskgate"
SENDER = "taskgate@localhost"
SPEC = default_catalogue.get("email.send")


def auth_plain_forms(password: str) -> list[bytes]:
    """Every encoding in which the password crosses the wire during AUTH."""
    plain = f"\0{USERNAME}\0{password}".encode()
    return [password.encode(), base64.b64encode(plain), base64.b64encode(password.encode())]


def email_payload(**overrides: Any) -> SendEmail:
    """A valid ``email.send`` payload with the canary password, with ``overrides``."""
    values: dict[str, Any] = {
        "to": "alice@example.com",
        "subject": "Quarterly report",
        "body": "Hello Alice,\n\nthe report is attached in spirit.\n",
        "smtp_password": SecretStr(PASSWORD),
    }
    values.update(overrides)
    return SendEmail.model_validate(values)


def retryable(exc: BaseException) -> bool:
    """Whether ``email.send`` retries after ``exc``."""
    if SPEC is None:
        raise RuntimeError("email.send is not registered")
    return isinstance(exc, SPEC.retry.retry_on)


def delivered_messages(maildir: Path) -> list[Path]:
    """The messages delivered to ``maildir``, oldest first."""
    return sorted(maildir.glob("*.eml")) if maildir.exists() else []


def start_test_sink(
    certs: CertPaths,
    port: int,
    maildir: Path,
    *,
    password: str | None = PASSWORD,
    handler: MaildirHandler | None = None,
) -> Controller:
    """Start the sink on ``port`` with ``certs``' https pair; ``password=None`` accepts any."""
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

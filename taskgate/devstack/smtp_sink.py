"""A local SMTP sink for ``taskgate up``: accepts mail over STARTTLS and writes ``.eml`` files.

It delivers nothing anywhere. It exists so the ``email.send`` demo task has a real server
to talk to, with the same rules a production relay would enforce:

* STARTTLS before anything but EHLO/NOOP/QUIT (``require_starttls``), so AUTH and MAIL
  never travel in the clear; AUTH is required before MAIL (``auth_required``).
* AUTH accepts only the configured user name and, by default, only a password whose
  SHA-256 equals ``TASKGATE_SMTP_SINK_PASSWORD_SHA256`` (compared in constant time).
  ``--accept-any-password`` (any non-empty password) is an explicit opt-in for demos.
  The password is never logged, stored or kept on the session: the authenticator hands
  aiosmtpd the user name only, and aiosmtpd's own logger is kept above DEBUG.
* It listens on loopback only, caps message size and recipients, and writes each message
  (exactly as received) to ``<maildir>/<time>-<random>.eml`` with mode 0600.

Run it as ``python -m taskgate.devstack.smtp_sink --port 8025 --cert https.pem --key https-key.pem
--maildir .taskgate/mail``; tests call :func:`start_sink` and ``.stop()`` the controller.
``--reply-delay SECONDS`` answers each message that long after storing it, as a slow relay
would (the Redis crash test uses it to have sends in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from certs.material import CertPaths
from security.errors import ConfigError
from security.tls import check_private_key, check_readable, server_context
from taskgate.devstack.procs import Child, free_port, start_child

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_RECIPIENTS",
    "PASSWORD_HASH_ENV",
    "Credentials",
    "MaildirHandler",
    "SinkStartError",
    "launch_sink",
    "main",
    "start_sink",
]

PASSWORD_HASH_ENV = "TASKGATE_SMTP_SINK_PASSWORD_SHA256"  # noqa: S105 - a variable name
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_RECIPIENTS = 100
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

log = logging.getLogger("taskgate.smtp_sink")


@dataclass(frozen=True)
class Credentials:
    """Who may log in. ``password_sha256=None`` accepts any non-empty password."""

    username: str
    password_sha256: bytes | None

    @classmethod
    def from_hex(cls, username: str, hexdigest: str) -> Credentials:
        """Credentials checking the password against a hex SHA-256 digest."""
        if not _HEX_SHA256.fullmatch(hexdigest.strip()):
            raise ConfigError(PASSWORD_HASH_ENV, "is not a hex SHA-256 digest", "set 64 hex digits")
        return cls(username, bytes.fromhex(hexdigest.strip()))

    def check(self, username: bytes, password: bytes) -> bool:
        """Constant-time check; both parts are always compared."""
        user_ok = hmac.compare_digest(username, self.username.encode())
        if self.password_sha256 is None:
            password_ok = bool(password)
        else:
            digest = hashlib.sha256(password).digest()
            password_ok = hmac.compare_digest(digest, self.password_sha256)
        return user_ok and password_ok


class _Authenticator:
    """aiosmtpd authenticator for the built-in PLAIN and LOGIN mechanisms."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __call__(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        # aiosmtpd passes every argument positionally.
        if not isinstance(data, LoginPassword):  # pragma: no cover - built-ins always pass it
            return AuthResult(success=False, handled=False)
        ok = self._credentials.check(data.login, data.password)
        # Only the login goes back: aiosmtpd stores auth_data on the session.
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)


class MaildirHandler:
    """Writes every accepted message into ``maildir`` as a private ``.eml`` file.

    ``reply_delay``: seconds between storing a message and answering its DATA, as a slow
    relay would - the message is delivered while the sender still waits for the answer.
    """

    def __init__(self, maildir: Path, *, reply_delay: float = 0.0) -> None:
        maildir.mkdir(mode=0o700, parents=True, exist_ok=True)
        maildir.chmod(0o700)
        self.maildir = maildir
        self.reply_delay = reply_delay

    async def handle_RCPT(
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        path = self.write(envelope.original_content or b"")
        log.info("stored message %s", path.name)
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        return "250 2.0.0 Message accepted"

    def write(self, content: bytes) -> Path:
        """Write ``content`` atomically (temporary name, then rename) with mode 0600."""
        name = f"{time.time_ns()}-{secrets.token_hex(6)}.eml"
        temporary = self.maildir / f".{name}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        final = self.maildir / name
        os.replace(temporary, final)
        return final


def _require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError("--host", f"{host} is not a loopback address", "use 127.0.0.1")


def start_sink(
    *,
    host: str = "127.0.0.1",
    port: int,
    cert: Path,
    key: Path,
    maildir: Path,
    credentials: Credentials,
    handler: MaildirHandler | None = None,
) -> Controller:
    """Start the sink in a background thread; call ``.stop()`` on the result to end it.

    ``handler`` replaces the default :class:`MaildirHandler` (tests use subclasses that
    answer with errors). ``port=0`` is not supported by aiosmtpd's controller: pick a
    free port first.
    """
    _require_loopback(host)
    check_readable(cert, setting="--cert", what="server certificate (PEM)")
    check_private_key(key, setting="--key")
    controller = Controller(
        handler or MaildirHandler(maildir),
        hostname=host,
        port=port,
        server_hostname="localhost",  # the greeting name; avoids a getfqdn() DNS lookup
        ident="taskgate smtp sink",
        tls_context=server_context(cert, key),
        require_starttls=True,
        authenticator=_Authenticator(credentials),
        auth_required=True,
        auth_require_tls=True,
        data_size_limit=MAX_MESSAGE_BYTES,
        timeout=60,
    )
    controller.start()
    return controller


class SinkStartError(RuntimeError):
    """The sink process did not come up."""


def launch_sink(
    state_dir: Path, certs: CertPaths, env: dict[str, str], *, children: list[Child]
) -> dict[str, Any]:
    """Start the sink as a child of ``taskgate up`` (appended to ``children`` at once, so
    stopping the stack stops it) on a free loopback port, with a fresh password; wait until
    it listens. Returns what ``stack.json`` says about it."""
    port = free_port()
    password = secrets.token_urlsafe(24)
    maildir = state_dir / "mail"
    sink_env = dict(env)
    sink_env["TASKGATE_SMTP_SINK_PASSWORD_SHA256"] = hashlib.sha256(password.encode()).hexdigest()
    argv = [sys.executable, "-m", "taskgate.devstack.smtp_sink", "--host", "127.0.0.1", "--port"]
    argv += [str(port), "--cert", str(certs.cert("https")), "--key", str(certs.key("https"))]
    argv += ["--maildir", str(maildir)]
    child = start_child("smtp", argv, log_path=state_dir / "logs" / "smtp.log", env=sink_env)
    children.append(child)
    deadline = time.monotonic() + 20
    while "listening" not in child.log_tail(5):
        if not child.alive() or time.monotonic() > deadline:
            raise SinkStartError(f"the SMTP sink did not start:\n{child.log_tail(20)}")
        time.sleep(0.1)
    return {
        "host": "127.0.0.1",
        "port": port,
        "username": "taskgate",
        "password": password,
        "maildir": str(maildir.resolve()),
    }


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m taskgate.devstack.smtp_sink",
        description="Local SMTP sink (STARTTLS + AUTH required) writing .eml files.",
        epilog=f"The password is checked against the SHA-256 hex digest in ${PASSWORD_HASH_ENV}.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--cert", type=Path, required=True, help="server certificate (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="its private key (PEM, 0600)")
    parser.add_argument("--maildir", type=Path, required=True, help="where .eml files go")
    parser.add_argument("--username", default="taskgate")
    parser.add_argument(
        "--reply-delay",
        type=float,
        default=0.0,
        help="seconds to wait after storing a message before answering (a slow relay)",
    )
    parser.add_argument(
        "--accept-any-password",
        action="store_true",
        help=f"accept any non-empty password instead of checking ${PASSWORD_HASH_ENV}",
    )
    return parser.parse_args(argv)


def _credentials(args: argparse.Namespace) -> Credentials:
    if args.accept_any_password:
        return Credentials(args.username, None)
    digest = os.environ.get(PASSWORD_HASH_ENV, "")
    if not digest:
        raise ConfigError(PASSWORD_HASH_ENV, "is not set", "set it or pass --accept-any-password")
    return Credentials.from_hex(args.username, digest)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sink until SIGTERM or SIGINT. Exit 2 on a configuration problem."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # aiosmtpd logs every command at INFO and data at DEBUG: keep it to warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    args = _parse(argv)
    try:
        controller = start_sink(
            host=args.host,
            port=args.port,
            cert=args.cert,
            key=args.key,
            maildir=args.maildir,
            credentials=_credentials(args),
            handler=MaildirHandler(args.maildir, reply_delay=args.reply_delay),
        )
    except ConfigError as exc:
        print(f"smtp sink: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"smtp sink listening on {args.host}:{args.port} (STARTTLS)", flush=True)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

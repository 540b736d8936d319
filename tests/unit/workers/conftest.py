"""Fixtures for the workers' unit tests: a local SMTP sink and the settings that reach it.

``certs_a`` (a CA and its certificates, once per module), ``maildir``, ``port``,
``smtp_env`` (``TASKGATE_SMTP_*`` pointing at the sink) and ``sink`` (the sink running);
the ``email.send`` and SMTP sink tests share them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from certs.material import CertPaths, init_certs
from taskgate.devstack.procs import free_port
from tests.support.smtp import SENDER, USERNAME, start_test_sink
from workers.demo.email import smtp_settings


@pytest.fixture(scope="module")
def certs_a(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    """A CA and the certificates it issued; the SMTP settings trust it."""
    folder = tmp_path_factory.mktemp("smtp") / "certs"
    init_certs(folder)
    return CertPaths(folder)


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    """Where the sink delivers (not made yet)."""
    return tmp_path / "mail"


@pytest.fixture
def port() -> int:
    """A free loopback port for the sink."""
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


@pytest.fixture
def sink(smtp_env: int, certs_a: CertPaths, maildir: Path) -> Iterator[Controller]:
    """The sink on ``smtp_env``'s port with ``certs_a``'s certificate, stopped after the test."""
    controller = start_test_sink(certs_a, smtp_env, maildir)
    yield controller
    controller.stop()

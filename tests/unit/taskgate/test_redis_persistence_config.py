"""How the redis.conf `taskgate up` writes keeps data on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs.material import CertPaths
from taskgate.devstack.redis_server import RedisServerError, redis_config


def _conf(tmp_path: Path, appendfsync: str = "everysec") -> list[str]:
    certs, data = CertPaths(tmp_path / "certs"), tmp_path / "data"
    return redis_config(6390, certs, data, appendfsync=appendfsync).splitlines()


def test_every_write_is_appended_and_no_snapshots_are_taken_besides(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    assert "appendonly yes" in conf
    assert "appendfsync everysec" in conf
    assert 'save ""' in conf


def test_aof_rewrites_store_their_snapshot_without_lzf(tmp_path: Path) -> None:
    """The data is mostly ciphertext: compressing it costs more than twice the CPU of a
    rewrite for about a seventh of its size (docs/decisions/0037)."""
    assert "rdbcompression no" in _conf(tmp_path)


def test_appendfsync_always_is_taken_and_an_unknown_policy_refused(tmp_path: Path) -> None:
    assert "appendfsync always" in _conf(tmp_path, appendfsync="always")
    with pytest.raises(RedisServerError, match="appendfsync must be one of"):
        _conf(tmp_path, appendfsync="sometimes")

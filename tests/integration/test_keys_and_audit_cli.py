"""`taskgate keys` rotation procedure and `taskgate audit` verification, end to end."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from security.audit import AuditRecord, AuditWriter
from security.audit.chain import Head, chain_records, compute_mac
from security.errors import KeyRetiredError
from security.keys import Purpose
from security.keystore import KeyRing, load_keys
from security.sealing import open_envelope, seal
from taskgate.cli.main import app
from tests.support.audit import entry_stream_id

pytestmark = pytest.mark.integration


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    clean = {k: None for k in os.environ if k.startswith("TASKGATE_")}
    result = CliRunner().invoke(app, args, env={**clean, **(env or {})})
    return result.exit_code, result.output


def test_keys_rotation_keeps_old_messages_until_retired(tmp_path: Path) -> None:
    """Sealed before rotate still opens; new seals use the new key; after retire it is refused."""
    state = str(tmp_path)
    assert _run(["keys", "init", "--state-dir", state])[0] == 0
    ring = load_keys(tmp_path / "keys", role="gateway")
    old_kid = ring.broker.current().kid
    envelope = seal(
        b"x", task_id="t1", task_name="n", keys=ring.broker, signer=ring.signing.current(), ttl=600
    )

    assert (
        _run(["keys", "rotate", "--purpose", "broker", "--state-dir", state, "--offline"])[0] == 0
    )
    rotated = load_keys(tmp_path / "keys", role="gateway")
    assert rotated.broker.current().kid != old_kid
    assert open_envelope(envelope, keys=rotated.broker, verifiers=rotated.signing).plaintext == b"x"

    code, _out = _run(["keys", "retire", old_kid, "--state-dir", state, "--offline"])
    assert code == 0
    retired = load_keys(tmp_path / "keys", role="gateway")
    with pytest.raises(KeyRetiredError, match="retired"):
        open_envelope(envelope, keys=retired.broker, verifiers=retired.signing)


def test_keys_list_shows_ids_never_material(tmp_path: Path) -> None:
    """`keys list` prints kids and fingerprints but no key material."""
    _run(["keys", "init", "--state-dir", str(tmp_path)])
    code, out = _run(["keys", "list", "--state-dir", str(tmp_path)])
    assert code == 0
    for key_file in (tmp_path / "keys").glob("*.key"):
        material = key_file.read_text().strip()
        assert material not in out
        assert base64.b64decode(material).hex() not in out
    assert out.count(" live ") == len(Purpose)


def test_keys_retire_of_last_live_key_is_refused(tmp_path: Path) -> None:
    """Retiring the only live key of a purpose would lock everything out: refused, exit 1."""
    _run(["keys", "init", "--state-dir", str(tmp_path)])
    kid = load_keys(tmp_path / "keys", role="gateway").vault.current().kid
    code, out = _run(["keys", "retire", kid, "--state-dir", str(tmp_path), "--offline"])
    assert code == 1
    assert "last live" in out or "live" in out


def test_audit_cli_verifies_exports_tails_and_catches_deletion(
    redis_client: redis.Redis, keyring: KeyRing, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """verify passes on an intact chain, fails naming the record after XDEL; export/tail work."""
    writer = AuditWriter(redis_client, keyring.audit)
    for i in range(5):
        writer.append(
            AuditRecord.make(actor="admin", action="test.cli", outcome="ok", target=f"t{i}")
        )
    env = {k: v for k, v in stack_env.items() if k.startswith("TASKGATE_")}

    code, out = _run(["audit", "verify"], env)
    assert code == 0, out
    assert "ok: 5 records" in out

    cp_file = tmp_path / "checkpoint.json"
    assert _run(["audit", "checkpoint", "-o", str(cp_file)], env)[0] == 0
    assert json.loads(cp_file.read_text())["seq"] == 5

    code, out = _run(["audit", "export"], env)
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [entry["target"] for entry in lines] == [f"t{i}" for i in range(5)]
    code, out = _run(["audit", "tail", "-n", "2"], env)
    assert [json.loads(line)["target"] for line in out.strip().splitlines()] == ["t3", "t4"]

    middle = lines[2]["id"]
    redis_client.xdel("tg:audit", middle)
    code, out = _run(["audit", "verify"], env)
    assert code == 1
    assert "BROKEN" in out
    assert lines[3]["id"] in out  # the first record after the gap is named
    assert "seq_gap" in out


def test_audit_cli_checkpoint_catches_a_cut_tail(
    redis_client: redis.Redis, keyring: KeyRing, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """Cutting the newest record and rewinding the head is caught only with a checkpoint."""
    writer = AuditWriter(redis_client, keyring.audit)
    entries = [
        writer.append(
            AuditRecord.make(actor="admin", action="test.cut", outcome="ok", target=f"t{i}")
        )
        for i in range(4)
    ]
    env = {k: v for k, v in stack_env.items() if k.startswith("TASKGATE_")}
    cp_file = tmp_path / "cp.json"
    assert _run(["audit", "checkpoint", "-o", str(cp_file)], env)[0] == 0
    redis_client.xdel("tg:audit", entry_stream_id(entries[-1]))
    redis_client.set("tg:audit:head", f"{entries[-2].seq} {entries[-2].mac}")
    assert _run(["audit", "verify"], env)[0] == 0  # documented limit without a checkpoint
    code, out = _run(["audit", "verify", "--checkpoint", str(cp_file)], env)
    assert code == 1
    assert "truncated" in out


def test_audit_cli_refuses_a_worker_record_posing_as_the_gateway(
    redis_client: redis.Redis,
    keyring: KeyRing,
    worker_keys: KeyRing,
    stack_env: dict[str, str],
) -> None:
    """Records appended with the worker's bundle verify as the worker's; one the worker
    MACs with its own key but that names the gateway as writer breaks the chain there
    (writer_mismatch), and `audit verify` says so."""
    AuditWriter(redis_client, keyring.audit).append(
        AuditRecord.make(actor="client:1", action="task.submit", outcome="allowed", target="t0")
    )
    last = AuditWriter(redis_client, worker_keys.audit).append(
        AuditRecord.make(actor="worker", action="task.succeeded", outcome="ok", target="t0")
    )
    assert last.writer == "worker"
    env = {k: v for k, v in stack_env.items() if k.startswith("TASKGATE_")}
    code, out = _run(["audit", "verify"], env)
    assert code == 0, out

    worker_key = worker_keys.audit.current()
    forged_record = AuditRecord.make(
        actor="admin", action="admin.clients.create", outcome="ok", target="evil"
    )
    (entry,) = chain_records(Head(last.seq, last.mac), [forged_record], worker_key)
    fields = entry.to_fields() | {"writer": "gateway"}
    fields["mac"] = compute_mac(worker_key, fields)
    stream_id = redis_client.xadd("tg:audit", fields)  # type: ignore[arg-type]
    redis_client.set("tg:audit:head", f"{entry.seq} {fields['mac']}")
    try:
        code, out = _run(["audit", "verify"], env)
        assert code == 1
        assert "writer_mismatch" in out
        assert (stream_id.decode() if isinstance(stream_id, bytes) else stream_id) in out
    finally:  # the session gateway shares this log: leave no forged entry behind
        redis_client.delete("tg:audit", "tg:audit:head")

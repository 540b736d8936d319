"""What a test redis-server refused, kept beside its log for the ACL-denial checks."""

from __future__ import annotations

from taskgate.devstack.redis_server import RedisServer

__all__ = ["dump_acl_log"]


def dump_acl_log(server: RedisServer) -> None:
    """Keep what Redis refused during the session (``ACL LOG``) beside its log."""
    with server.tls.client() as client:
        entries = client.acl_log(count=256)
    lines = [
        f"{e.get('username')} {e.get('reason')} {e.get('context')} {e.get('object')} "
        f"cmd={e.get('client-info', {}).get('cmd')} count={e.get('count')}"
        for e in entries
    ]
    with (server.data_dir / "acl-log.txt").open("a") as fh:
        fh.write("".join(f"{line}\n" for line in lines))

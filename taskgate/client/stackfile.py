"""Find the local stack `taskgate up` runs: its state folder and ``stack.json``.

The folder is the one named explicitly, else ``TASKGATE_STATE_DIR``, else ``.taskgate`` in
the working directory. ``stack.json`` (mode 0600) names the gateway URL, the CA, the Redis
URL, each role's certificate, key and password file, and the demo client's credentials.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

__all__ = ["StackFileError", "StackInfo", "find_state_dir"]

STACK_FILE = "stack.json"


class StackFileError(RuntimeError):
    """No usable ``stack.json`` where the state folder should be."""


def find_state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit``, else ``TASKGATE_STATE_DIR``, else ``./.taskgate``."""
    if explicit is not None and str(explicit):
        return Path(explicit)
    env = os.environ.get("TASKGATE_STATE_DIR", "").strip()
    return Path(env) if env else Path(".taskgate")


@dataclass(frozen=True)
class StackInfo:
    """What ``stack.json`` says about a running stack (the demo secret kept out of reprs)."""

    state_dir: Path
    gateway_url: str
    redis_url: str
    ca_file: Path
    demo_client_id: str | None = None
    demo_client_secret: SecretStr | None = None
    roles: dict[str, Path] = field(default_factory=dict)
    redis_users: dict[str, dict[str, str]] = field(default_factory=dict)
    up_pid: int | None = None
    operator_token_file: Path | None = None

    @classmethod
    def load(cls, state_dir: str | os.PathLike[str] | None = None) -> StackInfo:
        """Read ``<state_dir>/stack.json``; :class:`StackFileError` if missing or broken."""
        folder = find_state_dir(state_dir)
        path = folder / STACK_FILE
        try:
            doc: Any = json.loads(path.read_text())
        except FileNotFoundError:
            raise StackFileError(f"no {path} (start a stack with `taskgate up`)") from None
        except (OSError, ValueError) as exc:
            raise StackFileError(f"cannot read {path} ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise StackFileError(f"{path} is not a stack description")
        try:
            demo = doc.get("demo_client") or {}
            pids = doc.get("pids") or {}
            return cls(
                state_dir=folder,
                gateway_url=str(doc["gateway_url"]),
                redis_url=str(doc["redis_url"]),
                ca_file=Path(doc["ca_file"]),
                demo_client_id=demo.get("client_id"),
                demo_client_secret=SecretStr(demo["client_secret"])
                if demo.get("client_secret")
                else None,
                roles={str(k): Path(v) for k, v in (doc.get("roles") or {}).items()},
                redis_users=dict(doc.get("redis_users") or {}),
                up_pid=pids.get("up") if isinstance(pids.get("up"), int) else None,
                operator_token_file=Path(doc["operator_token_file"])
                if doc.get("operator_token_file")
                else None,
            )
        except (KeyError, TypeError, AttributeError):
            raise StackFileError(f"{path} lacks gateway_url, redis_url or ca_file") from None

    @property
    def running(self) -> bool:
        """Whether the `taskgate up` that wrote the file is still alive (same host)."""
        if self.up_pid is None:
            return False
        try:
            os.kill(self.up_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

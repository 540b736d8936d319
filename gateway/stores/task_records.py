"""The gateway's fields of a task record, MAC'd: who owns the task and which seal is current.

``tg:task:{id}`` is shared: workers write its progress (state, timings, attempts, error);
the gateway alone writes :data:`TASK_FIELDS` - ``owner`` and ``name``, the current seal's
issue and expiry times (``seal_iat``, ``seal_exp``: the gateway-signed times in the
envelope) and ``replays`` (requeues by an operator) - with a state MAC over them
(label ``task``, bound to the task id) in ``state_mac``. The gateway acts on these fields
only after :func:`verify_task`: it opens results for the owner, lists a client's own
tasks, revokes, and requeues a dead letter only for the seal the record names.

The current seal also names the task's final marker (``workers.contract.wire.replay_field``): the
create-only record that stops a finished run's message from running again.
"""

from __future__ import annotations

from collections.abc import Mapping

from security.keys import KeySet, SymmetricKey
from security.stored_state import Label, sign_record, verify_record
from workers.contract.wire import replay_bucket, replay_bucket_expiry, replay_field

__all__ = [
    "MAC_FIELD",
    "TASK_FIELDS",
    "Seal",
    "seal_of",
    "signed_fields",
    "verify_task",
]

TASK_FIELDS = ("owner", "name", "seal_iat", "seal_exp", "replays")
MAC_FIELD = "state_mac"


def signed_fields(
    keys: KeySet[SymmetricKey],
    task_id: str,
    *,
    owner: str,
    name: str,
    seal_iat: float | None,
    seal_exp: float | None,
    replays: int,
) -> dict[str, str]:
    """The gateway's fields of the record and their MAC, ready for ``HSET``."""
    fields = {
        "owner": owner,
        "name": name,
        "seal_iat": "" if seal_iat is None else repr(float(seal_iat)),
        "seal_exp": "" if seal_exp is None else repr(float(seal_exp)),
        "replays": str(replays),
    }
    return {**fields, MAC_FIELD: sign_record(keys, Label.TASK, task_id, fields)}


def verify_task(keys: KeySet[SymmetricKey], task_id: str, record: Mapping[str, str]) -> None:
    """Raise :class:`~security.errors.StoredStateError` unless the record's gateway fields
    are exactly what the gateway MAC'd for this task id."""
    verify_record(
        keys,
        Label.TASK,
        task_id,
        {name: record.get(name) for name in TASK_FIELDS},
        record.get(MAC_FIELD),
    )


class Seal:
    """The current seal of a verified record: its times and its final marker."""

    def __init__(self, task_id: str, iat: float, exp: float) -> None:
        self.task_id = task_id
        self.iat = iat
        self.exp = exp

    @property
    def bucket(self) -> str:
        return replay_bucket(self.exp)

    @property
    def bucket_expiry(self) -> int:
        return replay_bucket_expiry(self.exp)

    @property
    def field(self) -> str:
        return replay_field(self.task_id, self.iat)


def seal_of(task_id: str, record: Mapping[str, str]) -> Seal | None:
    """The current seal named by a *verified* record (None for a best-effort task)."""
    iat, exp = record.get("seal_iat") or "", record.get("seal_exp") or ""
    if not iat or not exp:
        return None
    return Seal(task_id, float(iat), float(exp))

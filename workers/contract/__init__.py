"""What the gateway may know of the worker side, dependency-free (``security`` only), so
the gateway imports it without Celery: the wire format, the task catalogue, task states,
dead-letter records, the Redis key layout and its ACL roles, and the metrics every role counts.
Nothing outside this package of ``workers`` may be imported by the gateway.

Modules:

* :mod:`workers.contract.acl`: Redis ACL lines for taskgate's roles, rendered from the key
  registry.
* :mod:`workers.contract.catalogue`: Declaring tasks: one declaration serves gateway validation
  and worker execution.
* :mod:`workers.contract.deadletters`: The dead-letter store: where a task goes after its last
  attempt, still sealed.
* :mod:`workers.contract.enqueue`: One way onto a broker queue: the audit record, the message
  and its writes, in one call.
* :mod:`workers.contract.heartbeat`: Worker liveness from heartbeats: who counts as alive,
  readable by gateway and workers.
* :mod:`workers.contract.key_names`: The names of every Redis key, key prefix and pub/sub
  channel taskgate, Celery and kombu use, and the builders the rest of the code calls to make
  them.
* :mod:`workers.contract.keys`: Every Redis key, key prefix and pub/sub channel taskgate, Celery
  and kombu use.
* :mod:`workers.contract.metrics`: The deployment-wide metrics: their names and labels, and how
  counts travel to Redis.
* :mod:`workers.contract.states`: The states of a task record (the ``state`` field of
  ``tg:task:{id}``).
* :mod:`workers.contract.wire`: The contract between gateway and workers: content types,
  bindings, Redis key layout.
"""

from __future__ import annotations

from workers.contract.acl import FORBIDDEN, PLACEHOLDER, ROLE_COMMANDS, render_acl, role_line
from workers.contract.keys import REGISTRY, ROLES, KeySpec, Role
from workers.contract.states import FINISHED, TaskState

__all__ = [
    "FINISHED",
    "FORBIDDEN",
    "PLACEHOLDER",
    "REGISTRY",
    "ROLES",
    "ROLE_COMMANDS",
    "KeySpec",
    "Role",
    "TaskState",
    "render_acl",
    "role_line",
]

"""What the gateway may know of the worker side: the Redis key layout and its ACL roles.

:mod:`workers.contract.keys` declares every key, prefix and channel; :mod:`workers.contract.acl`
renders the Redis ACL lines of the roles from it; :mod:`workers.contract.metrics` names the
metrics every role counts and how the counts are stored; :mod:`workers.contract.states`
the states of a task record. All are dependency-free (``security`` only), so the gateway
imports them without Celery.
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

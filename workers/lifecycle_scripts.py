"""The Lua scripts behind :class:`workers.lifecycle.Lifecycle`: the start gate and the
finish transition. Each is atomic (check-and-mark in one script) and one round trip; the
keys and arguments they take are laid out by ``workers.lifecycle``.
"""

from security.lua import lua_script

__all__ = ["FINISH_SCRIPT", "GATE_SCRIPT"]

GATE_SCRIPT = lua_script("workers", "lifecycle_gate.lua")

FINISH_SCRIPT = lua_script("workers", "lifecycle_finish.lua")

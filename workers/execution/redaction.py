"""What Celery may see of a task's exception: its type's name, never its message.

Celery logs a failed or retried task's exception (``raised unexpected: ValueError('...')``,
``Retry in 2s: ConnectionError('...')``) and stores it in the result backend. A message can
quote the payload (a TLS error names the URL's host; a task's own text may echo its input),
so the worker hands Celery :func:`redacted` stand-ins instead: an exception of a class that
bears the original type's name (the result's ``exc_type``, which the task view shows) and
whose only argument is that name.

Celery's tracer checks that an exception pickles before it stores one (falling back to the
nearest base class that does), and billiard carries a pool process's outcome to the main
process pickled over their private pipe. The stand-in classes are therefore found by name
through this module's ``__getattr__``, which makes the class on first use in any process.
Nothing from Redis or the network is ever unpickled: no Celery content type accepts pickle.
"""

from __future__ import annotations

__all__ = ["RedactedError", "redacted"]


class RedactedError(Exception):
    """The base of every stand-in: ``type(e).__name__`` is the original exception's type."""


_CLASSES: dict[str, type[RedactedError]] = {}
_MAX_CLASSES = 512  # task code raises a bounded set of types; past this, the generic base


def redacted(exc: BaseException) -> RedactedError:
    """A stand-in for ``exc`` carrying its type's name and nothing of its message."""
    name = type(exc).__name__
    cls = _stand_in(name)
    return cls(name) if cls is not None else RedactedError(name if name.isidentifier() else "Error")


def _stand_in(name: str) -> type[RedactedError] | None:
    """The stand-in class named ``name``, made on first use (None: a name it cannot take)."""
    cls = _CLASSES.get(name)
    if cls is not None:
        return cls
    if not name.isidentifier() or name.startswith("_") or name in globals():
        return None
    if len(_CLASSES) >= _MAX_CLASSES:
        return None
    cls = type(name, (RedactedError,), {"__module__": __name__, "__qualname__": name})
    _CLASSES[name] = cls
    return cls


def __getattr__(name: str) -> type[RedactedError]:
    cls = _stand_in(name)
    if cls is None:
        raise AttributeError(name)
    return cls

"""The request class of every taskgate task: a sealed body is opened once, not twice.

Celery's worker decodes a protocol-2 body in its main process (the strategy looks for
``args`` in ``message.payload``, and ``Request`` reads the arguments from it), then
sends the *raw* body to the pool process, which decodes it again. For a sealed body
that is a second signature check and decryption per task. Here the main process's
decode - the one that refuses forged or unsigned messages, audited, before the task
reaches the pool (``workers.consumer``) - is the only one: the pool receives the opened call,
as Celery does for messages it decoded itself (protocol 1).

Nothing new crosses the pipe: Celery already sends the decoded arguments to the pool
inside the request dict; the raw body no longer goes along. The task still checks the
seal's binding against its own id and name before it runs (``workers.execution``).
"""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request

from workers.wire import TASK_CONTENT_TYPE

__all__ = ["SealedRequest"]


class SealedRequest(Request):
    """A request whose sealed body reaches the pool already opened."""

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        # celery-types does not declare Request's private attributes.
        me: Any = self
        if not me._decoded and me._content_type == TASK_CONTENT_TYPE:
            # The opened (args, kwargs, embed) Celery holds already: what
            # fast_trace_task runs when it is given no content type.
            me._body = me._payload
            me._content_type = me._content_encoding = None
            me._decoded = True

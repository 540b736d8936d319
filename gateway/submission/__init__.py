"""The submission path: its ordered stages, the batchers that share round trips, the
idempotency leases and rate limits, the codec and the publisher that puts a sealed task on
the queue.

Modules:

* :mod:`gateway.submission.audit_batcher`: Group commit for the audit chain: concurrent requests
  share one append round trip.
* :mod:`gateway.submission.best_effort`: The best-effort lane: a task run by the gateway itself,
  after the 202, with no broker.
* :mod:`gateway.submission.checks`: Submission stage 2, round trip 1: the token's client and
  revocations (stored state, checked against its MACs), rate limits, backpressure and
  idempotency in one script call.
* :mod:`gateway.submission.codec`: How the gateway encodes task bodies and decodes results for
  the workers' wire format.
* :mod:`gateway.submission.context`: The context that flows through the submission's stages, and
  the shape of a stage.
* :mod:`gateway.submission.idempotency`: Idempotency-Key reservations are short leases; accepted
  submissions keep their key a day.
* :mod:`gateway.submission.publisher`: Put Celery (protocol 2) messages on a Redis queue without
  kombu's publish path.
* :mod:`gateway.submission.ratelimit`: Rate limits on the submission hot path, counted inside
  the request's check round trip.
* :mod:`gateway.submission.refusals`: What a submission's refusal leaves: its holdings freed,
  its audit record, its counts.
* :mod:`gateway.submission.script_batcher`: Concurrent Lua script calls share one pipelined
  round trip.
* :mod:`gateway.submission.stages`: The submission path: one ordered list of stages, each
  ``await stage(ctx, state) -> ctx``.
"""

from __future__ import annotations

__all__ = [
    "audit_batcher",
    "best_effort",
    "checks",
    "codec",
    "context",
    "idempotency",
    "publisher",
    "ratelimit",
    "refusals",
    "script_batcher",
    "stages",
]

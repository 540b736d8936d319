"""The submission stages that need no Redis, called one by one: authorize, validate,
guard_leaks, swap, seal_message; and the runner, end to end, with the secret canary.

Each stage's contract: the context fields it sets on success, the typed error it raises
on refusal (the runner stops there). Redis-facing stages: ``test_submission_checks.py``
and ``test_submission_commit.py``.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest
import redis

from gateway.http.errors import ApiError
from gateway.http.problems import InvalidPayload
from gateway.state import GatewayState
from gateway.submission.stages import (
    STAGES,
    authorize,
    guard_leaks,
    run_stages,
    seal_message,
    swap,
    validate,
)
from security.errors import InputRejectedError, LeakDetectedError, SealBindingError
from security.sealing import open_envelope
from security.vault import REF_KEY, VAULT_PREFIX
from tests.support.replies import as_bytes
from tests.support.submissions import MakeSubmission
from tests.unit.gateway.stage_tasks import STAGE_QUEUE

CANARY = "canary-" + secrets.token_hex(12)


def _secret_body(note: str = "a plain note") -> bytes:
    return json.dumps({"note": note, "token": CANARY}).encode()


async def test_authorize_sets_the_body_hash_and_no_idempotency_key_without_the_header(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """Authorized without an Idempotency-Key: the body's SHA-256 is kept, no key is named."""
    ctx = await make_submission(body=b'{"note": "x"}')
    ctx = await authorize(ctx, gateway_state)
    assert ctx.body_hash == hashlib.sha256(b'{"note": "x"}').hexdigest()
    assert ctx.idem_redis_key is None


async def test_authorize_names_the_idempotency_key_by_client_and_digest(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """The Redis key holds the client id and a digest of the header, never the header itself."""
    ctx = await make_submission(idempotency_key="order 42/retry")
    ctx = await authorize(ctx, gateway_state)
    assert ctx.idem_redis_key is not None
    assert ctx.client_id in ctx.idem_redis_key
    assert hashlib.sha256(b"order 42/retry").hexdigest() in ctx.idem_redis_key
    assert "order 42" not in ctx.idem_redis_key


@pytest.mark.parametrize("token_scopes", ["tasks:read", "tasks:submit:stage.other"])
async def test_authorize_refuses_a_token_without_the_tasks_scope(
    make_submission: MakeSubmission, gateway_state: GatewayState, token_scopes: str
) -> None:
    """403 forbidden when neither tasks:submit:<name> nor tasks:submit:* was granted."""
    ctx = await make_submission(token_scopes=token_scopes)
    with pytest.raises(ApiError) as err:
        await authorize(ctx, gateway_state)
    assert (err.value.status, err.value.kind) == (403, "forbidden")
    assert ctx.body_hash == ""


@pytest.mark.parametrize("key", ["k", "x" * 255, "inner space", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"])
async def test_authorize_accepts_every_well_formed_idempotency_key(
    make_submission: MakeSubmission, gateway_state: GatewayState, key: str
) -> None:
    """1 to 255 visible ASCII characters, inner spaces allowed: a Redis key is named."""
    ctx = await authorize(await make_submission(idempotency_key=key), gateway_state)
    assert ctx.idem_redis_key is not None


async def test_authorize_accepts_the_tasks_own_scope(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """A token scoped to exactly this task passes."""
    ctx = await make_submission(token_scopes="tasks:submit:stage.touch")
    assert (await authorize(ctx, gateway_state)).body_hash


@pytest.mark.parametrize("key", ["", " lead", "trail ", "tab\tkey", "é", "x" * 256, "nl\n"])
async def test_authorize_refuses_a_malformed_idempotency_key(
    make_submission: MakeSubmission, gateway_state: GatewayState, key: str
) -> None:
    """400 for an empty, padded, non-ASCII, control-character or over-long key."""
    ctx = await make_submission(idempotency_key=key)
    with pytest.raises(ApiError) as err:
        await authorize(ctx, gateway_state)
    assert (err.value.status, err.value.kind) == (400, "bad-request")
    assert ctx.idem_redis_key is None


async def test_validate_reveals_secrets_into_the_payload_for_the_vault(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """A valid body becomes ``ctx.payload``: plain JSON data, secret values in clear."""
    ctx = await make_submission(body=_secret_body())
    ctx = await validate(ctx, gateway_state)
    assert ctx.payload == {"note": "a plain note", "token": CANARY}


@pytest.mark.parametrize(
    "body",
    [b'{"note": 5}', b"{}", b'{"note": "n", "extra": 1}', b'{"note": "n", "token": 7}'],
)
async def test_validate_refuses_a_body_outside_the_schema(
    make_submission: MakeSubmission, gateway_state: GatewayState, body: bytes
) -> None:
    """422 invalid-payload with field paths and kinds, never the rejected input."""
    ctx = await make_submission(body=body)
    with pytest.raises(ApiError) as err:
        await validate(ctx, gateway_state)
    assert (err.value.status, err.value.kind) == (422, "invalid-payload")
    assert err.value.extensions["errors"]
    assert ctx.payload == {}


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null"])
async def test_validate_refuses_a_body_that_is_not_an_object(
    make_submission: MakeSubmission, gateway_state: GatewayState, body: bytes
) -> None:
    """A JSON array, string or null is a 422, before the schema is consulted."""
    ctx = await make_submission(body=body)
    with pytest.raises(ApiError, match="must be a JSON object"):
        await validate(ctx, gateway_state)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"note": "n"', "bad_json"),
        (b'{"note": "a", "note": "b"}', "duplicate_key"),
        (b'{"note": NaN}', "not_finite"),
        (b'{"note": "\xff"}', "bad_encoding"),
        (b'{"note": "' + b"x" * 80 + b'"}', "too_large"),
    ],
)
async def test_validate_refuses_malformed_or_oversized_json_by_reason(
    make_submission: MakeSubmission, gateway_state: GatewayState, body: bytes, reason: str
) -> None:
    """Parsing limits raise InputRejectedError with a stable reason (stage.small: 64 bytes)."""
    ctx = await make_submission("stage.small", body=body)
    with pytest.raises(InputRejectedError) as err:
        await validate(ctx, gateway_state)
    assert err.value.reason == reason


async def test_guard_leaks_lets_a_declared_secret_field_through(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """A credential in the declared secret field is what the vault is for: no refusal."""
    ctx = await validate(await make_submission(body=_secret_body()), gateway_state)
    assert await guard_leaks(ctx, gateway_state) is ctx


async def test_guard_leaks_refuses_a_credential_in_an_undeclared_field(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """LeakDetectedError names the field and the kind, never the value."""
    leaked = "ghp_" + secrets.token_hex(18)
    body = json.dumps({"note": leaked}).encode()
    ctx = await validate(await make_submission(body=body), gateway_state)
    with pytest.raises(LeakDetectedError) as err:
        await guard_leaks(ctx, gateway_state)
    assert err.value.field == "note"
    assert leaked not in str(err.value)
    assert leaked[4:] not in repr(err.value)


async def test_guard_leaks_refuses_a_secret_on_a_task_without_secret_fields(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """``token`` is secret-looking by name: stage.other declares no secret fields."""
    body = json.dumps({"note": "n", "token": CANARY}).encode()
    ctx = await validate(await make_submission("stage.other", body=body), gateway_state)
    with pytest.raises(LeakDetectedError) as err:
        await guard_leaks(ctx, gateway_state)
    assert err.value.field == "token"
    assert CANARY not in str(err.value)


async def test_swap_moves_the_secret_to_a_sealed_vault_entry(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """The payload keeps a reference; the clear payload is dropped; the entry is the task's."""
    ctx = await validate(await make_submission(body=_secret_body()), gateway_state)
    ctx = await swap(ctx, gateway_state)
    assert ctx.payload == {}
    assert ctx.swapped is not None
    (entry,) = ctx.swapped.entries
    assert ctx.swapped.payload["token"] == {REF_KEY: ctx.swapped.ref_ids[0]}
    assert entry.redis_key == f"{VAULT_PREFIX}{ctx.task_id}:{ctx.swapped.ref_ids[0]}"
    assert CANARY.encode() not in entry.blob


async def test_swap_refuses_a_smuggled_reference(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """A client-sent ``$secret`` mapping would point at another task's vault: refused."""
    ctx = await make_submission()
    ctx.payload = {"note": {REF_KEY: "A" * 22}}
    with pytest.raises(InputRejectedError):
        await swap(ctx, gateway_state)
    assert ctx.swapped is None


async def test_seal_message_binds_the_payload_to_task_id_and_name(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """The sealed body opens with the broker keys, for this task only, and holds the
    reference rather than the secret."""
    ctx = await make_submission(body=_secret_body("note-in-the-clear"))
    for stage in (validate, swap, seal_message):
        ctx = await stage(ctx, gateway_state)
    assert b"note-in-the-clear" not in ctx.sealed
    opened = open_envelope(
        ctx.sealed, keys=gateway_state.keys.broker, verifiers=gateway_state.keys.signing
    )
    opened.check_binding(ctx.task_id, "stage.touch")
    with pytest.raises(SealBindingError):
        opened.check_binding(ctx.task_id, "stage.other")
    args, kwargs, *_ = json.loads(opened.plaintext)
    assert args == []
    assert kwargs["payload"]["note"] == "note-in-the-clear"
    assert REF_KEY in kwargs["payload"]["token"]
    assert CANARY not in opened.plaintext.decode()


async def test_run_stages_accepts_a_submission_end_to_end(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """Every stage in order: limits counted, sealed, and the broker holds one message."""
    ctx = await run_stages(await make_submission(body=_secret_body()), gateway_state)
    assert [s.name for s in ctx.limits] == ["client", "task"]
    assert ctx.sealed
    assert redis_client.llen(STAGE_QUEUE) == 1
    assert redis_client.hget(f"tg:task:{ctx.task_id}", "state") == b"queued"


async def test_run_stages_stops_at_the_first_refusal(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """A stage that raises ends the run: a leak refusal means no vault entry, no message."""
    body = json.dumps({"note": "n", "token": CANARY}).encode()
    ctx = await make_submission("stage.other", body=body)
    with pytest.raises(LeakDetectedError):
        await run_stages(ctx, gateway_state)
    assert ctx.swapped is None
    assert not ctx.sealed
    assert redis_client.llen(STAGE_QUEUE) == 0
    assert not redis_client.keys(f"{VAULT_PREFIX}*")


async def test_run_stages_runs_only_the_stages_it_is_given(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The stage list is the path: without commit, nothing is queued."""
    ctx = await run_stages(await make_submission(), gateway_state, STAGES[:-1])
    assert ctx.sealed
    assert redis_client.llen(STAGE_QUEUE) == 0


async def test_the_canary_stays_in_the_vault_blob_and_nowhere_else(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """After an accepted submission the secret canary appears in no Redis key, and in no
    value but its vault entry's sealed blob - where it is not in clear either."""
    ctx = await run_stages(await make_submission(body=_secret_body()), gateway_state)
    needle = CANARY.encode()
    assert needle not in ctx.sealed
    keys = [as_bytes(key) for key in redis_client.keys("*")]
    vault = {k for k in keys if k.startswith(VAULT_PREFIX.encode())}
    assert len(vault) == 1
    for key in keys:
        assert needle not in key
        assert needle not in _dump(redis_client, key), key


async def test_the_canary_never_appears_in_a_refusal(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """Every refusal of a body carrying the canary keeps it out of the error's text."""
    bodies = {
        "stage.other": json.dumps({"note": "n", "token": CANARY}),  # leak guard
        "stage.touch": json.dumps({"note": CANARY, "token": 5}),  # schema
        "stage.small": json.dumps({"note": "n" * 40, "token": CANARY}),  # too large
    }
    seen = []
    for task, body in bodies.items():
        ctx = await make_submission(task, body=body.encode())
        with pytest.raises(Exception) as err:  # noqa: PT011 - any refusal; its text is checked
            await run_stages(ctx, gateway_state)
        seen.append(type(err.value))
        assert CANARY not in str(err.value)
        assert CANARY not in repr(err.value)
        assert CANARY not in repr(getattr(err.value, "extensions", ""))
    assert seen == [LeakDetectedError, InvalidPayload, InputRejectedError]


async def test_the_submission_context_repr_holds_no_secret(
    make_submission: MakeSubmission,
) -> None:
    """``repr(ctx)`` hides the body as it hides payload, swapped and sealed."""
    ctx = await make_submission(body=_secret_body())
    assert CANARY not in repr(ctx)


def _dump(client: redis.Redis, key: bytes) -> bytes:
    """Every value the key holds, as bytes (stream entries, hashes, sets, lists)."""
    kind = client.type(key)
    if kind == b"string":
        return as_bytes(client.get(key) or b"")
    if kind == b"hash":
        return repr(client.hgetall(key)).encode()
    if kind == b"list":
        return repr(client.lrange(key, 0, -1)).encode()
    if kind == b"zset":
        return repr(client.zrange(key, 0, -1, withscores=True)).encode()
    if kind == b"set":
        return repr(client.smembers(key)).encode()
    if kind == b"stream":
        return repr(client.xrange(key)).encode()
    raise AssertionError(f"unexpected type {kind!r} of {key!r}")

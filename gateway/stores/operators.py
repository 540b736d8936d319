"""Named operators: people who run taskgate, each with a role and a credential of their own.

An operator is ``admin`` (everything) or ``auditor`` (read-only: task metadata, the audit
log, verify and export; never a result or a secret). Every admin action - over HTTP, in the
console, through the CLI - is audited under the operator's name.

Records live in Redis: a hash ``tg:operator:{name}`` per operator and the set
``tg:operators``. The operator CLI writes them (it holds the state key); the gateway only
reads them. Each record carries a state MAC (label ``operator``, bound to the name), so a
role cannot be raised by someone who can write Redis but lacks the state key.

A credential is ``tga_<name>.<256 random bits>``: the name says which record to check,
the stored value is only its SHA-256 (``security.passwords``: 256 random bits need no slow
hash). It is shown once, by :meth:`OperatorRegistry.add`.

The admin token made by ``taskgate up`` (or configured as ``TASKGATE_ADMIN_TOKEN_HASH``)
is the operator ``admin`` with the admin role; it has no dot, so the two never mix. The
name ``admin`` cannot be added to Redis.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio
from redis.exceptions import WatchError

from security.errors import ConfigError, StoredStateError, TaskgateError
from security.keys import KeySet, SymmetricKey
from security.passwords import ADMIN_TOKEN_PREFIX, hash_admin_token, verify_admin_token
from security.stored_state import MAC_FIELD, Label, sign_record, verify_record
from workers.contract.keys import OPERATORS_SET, operator_key

__all__ = [
    "BOOTSTRAP_NAME",
    "OPERATOR_FIELDS",
    "Operator",
    "OperatorError",
    "OperatorRegistry",
    "Role",
    "operator_name_of",
]

Role = Literal["admin", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "auditor")
BOOTSTRAP_NAME = "admin"
OPERATOR_FIELDS = ("role", "token_hash", "created_at", "revoked", "revoked_at")
_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}", re.ASCII)
# Names other audit actors use: an operator may never be mistaken for one of them.
_RESERVED = frozenset({BOOTSTRAP_NAME, "anonymous", "gateway", "operator", "worker", "system"})


class OperatorError(TaskgateError):
    """An operator operation was refused: ``bad_name``, ``bad_role``, ``exists``,
    ``unknown_operator``. Messages never contain a credential."""

    default_reason = "operator"


@dataclass(frozen=True)
class Operator:
    """An authenticated (or listed) operator."""

    name: str
    role: Role
    created_at: float = 0.0
    revoked: bool = False

    @property
    def actor(self) -> str:
        """The audit actor: the operator's name."""
        return self.name

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": _iso(self.created_at) if self.created_at else None,
            "revoked": self.revoked,
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_name(name: object) -> str:
    """A valid, unreserved operator name (lowercase, 1-32 characters)."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise OperatorError(
            "operator name must be 1-32 characters of a-z 0-9 _ -, starting with a letter",
            reason="bad_name",
        )
    if name in _RESERVED:
        raise OperatorError(f"the name {name} is reserved", reason="bad_name")
    return name


def operator_name_of(credential: str) -> str | None:
    """The operator name a named credential claims, or None (the bootstrap admin token,
    or not an operator credential at all)."""
    if not credential.startswith(ADMIN_TOKEN_PREFIX):
        return None
    name, dot, rest = credential[len(ADMIN_TOKEN_PREFIX) :].partition(".")
    if not dot or not rest or _NAME_RE.fullmatch(name) is None:
        return None
    return name


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


class OperatorRegistry:
    """Add, list, revoke and authenticate named operators (and the bootstrap admin).

    ``admin_hash``: the bootstrap admin token's hash, or None if there is none.
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        keys: KeySet[SymmetricKey],
        *,
        admin_hash: str | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._admin_hash = admin_hash

    async def add(self, name: str, role: str, *, now: float | None = None) -> tuple[Operator, str]:
        """Create an operator; return it and its credential (shown this once)."""
        name = check_name(name)
        if role not in ROLES:
            raise OperatorError("role must be admin or auditor", reason="bad_role")
        credential = f"{ADMIN_TOKEN_PREFIX}{name}.{secrets.token_urlsafe(32)}"
        stamp = time.time() if now is None else now
        fields = {
            "role": role,
            "token_hash": hash_admin_token(credential),
            "created_at": repr(stamp),
            "revoked": "0",
            "revoked_at": "",
        }
        fields[MAC_FIELD] = sign_record(self._keys, Label.OPERATOR, name, fields)
        key = operator_key(name)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if await pipe.exists(key):
                    raise OperatorError(f"operator {name} exists", reason="exists")
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                mapping: dict[Any, Any] = dict(fields)
                pipe.hset(key, mapping=mapping)
                pipe.sadd(OPERATORS_SET, name)
                await pipe.execute()
            except WatchError:
                raise OperatorError(f"operator {name} exists", reason="exists") from None
        return self._to_operator(name, fields), credential

    async def renew(self, name: str, *, now: float | None = None) -> tuple[Operator, str]:
        """Give an existing operator a new credential (the old one stops working at once)
        and lift a revocation; return it and the credential (shown this once)."""
        fields = await self._load(name)
        if fields is None:
            raise OperatorError(f"no operator {name}", reason="unknown_operator")
        credential = f"{ADMIN_TOKEN_PREFIX}{name}.{secrets.token_urlsafe(32)}"
        stamp = time.time() if now is None else now
        fields = {n: fields.get(n, "") for n in OPERATOR_FIELDS}
        fields |= {
            "token_hash": hash_admin_token(credential),
            "created_at": repr(stamp),
            "revoked": "0",
            "revoked_at": "",
        }
        fields[MAC_FIELD] = sign_record(self._keys, Label.OPERATOR, name, fields)
        mapping: dict[Any, Any] = dict(fields)
        await self._redis.hset(operator_key(name), mapping=mapping)
        return self._to_operator(name, fields), credential

    async def revoke(self, name: str, *, now: float | None = None) -> Operator:
        """Revoke an operator: its credential stops working at once (the record stays,
        so the audit log's names still mean someone)."""
        fields = await self._load(name)
        if fields is None:
            raise OperatorError(f"no operator {name}", reason="unknown_operator")
        stamp = time.time() if now is None else now
        fields = {n: fields.get(n, "") for n in OPERATOR_FIELDS}
        fields |= {"revoked": "1", "revoked_at": repr(stamp)}
        fields[MAC_FIELD] = sign_record(self._keys, Label.OPERATOR, name, fields)
        mapping: dict[Any, Any] = dict(fields)
        await self._redis.hset(operator_key(name), mapping=mapping)
        return self._to_operator(name, fields)

    async def scan(self) -> tuple[list[Operator], list[tuple[str, StoredStateError]]]:
        """Every operator whose record verifies (by name), and the refused ones."""
        names = sorted(_text(m) for m in await self._redis.smembers(OPERATORS_SET))
        names = [n for n in names if _NAME_RE.fullmatch(n)]
        found: list[Operator] = []
        refused: list[tuple[str, StoredStateError]] = []
        for name in names:
            try:
                fields = await self._load(name)
            except StoredStateError as exc:
                refused.append((name, exc))
                continue
            if fields is not None:
                found.append(self._to_operator(name, fields))
        return found, refused

    async def authenticate(self, credential: str) -> Operator | None:
        """The operator holding ``credential``, or None (unknown, wrong, revoked).

        A record that fails its MAC raises :class:`StoredStateError`.
        """
        if not isinstance(credential, str) or not credential.startswith(ADMIN_TOKEN_PREFIX):
            return None
        name = operator_name_of(credential)
        if name is None:
            if self._admin_hash is None or "." in credential:
                return None
            try:
                ok = verify_admin_token(credential, self._admin_hash)
            except ConfigError:
                return None
            return Operator(BOOTSTRAP_NAME, "admin") if ok else None
        fields = await self._load(name)
        if fields is None or not verify_admin_token(credential, fields["token_hash"]):
            return None
        operator = self._to_operator(name, fields)
        return None if operator.revoked else operator

    async def current(self, name: str) -> Operator | None:
        """The operator ``name`` as it stands now (None if unknown or revoked): a console
        session re-checks its operator on every request, so a revocation ends it."""
        if name == BOOTSTRAP_NAME:
            return Operator(BOOTSTRAP_NAME, "admin") if self._admin_hash else None
        fields = await self._load(name)
        if fields is None:
            return None
        operator = self._to_operator(name, fields)
        return None if operator.revoked else operator

    async def _load(self, name: str) -> dict[str, str] | None:
        if _NAME_RE.fullmatch(name) is None:
            return None
        raw = await self._redis.hgetall(operator_key(name))
        if not raw:
            return None
        fields = _decode(raw)
        covered = {n: fields.get(n) for n in OPERATOR_FIELDS}
        verify_record(self._keys, Label.OPERATOR, name, covered, fields.get(MAC_FIELD))
        return fields

    @staticmethod
    def _to_operator(name: str, fields: Mapping[str, str]) -> Operator:
        role = fields.get("role")
        if role not in ROLES:
            raise OperatorError("stored operator role is not known", reason="bad_role")
        try:
            created = float(fields.get("created_at") or 0)
        except ValueError:
            created = 0.0
        return Operator(name, role, created, fields.get("revoked") != "0")

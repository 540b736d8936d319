"""Domain errors raised by ``security/`` (and reused by gateway and workers).

Every error carries a stable machine-readable ``reason`` (for the audit log and the
server log) and a human ``str()`` that never contains a secret or payload value.
The HTTP layer (``gateway/http/errors.py``) maps them to problem+json; the worker maps them
to reject / retry / dead-letter. What a *client* sees is deliberately coarser than
``reason``: one opaque failure per family, as ``cryptography.fernet.InvalidToken`` does.

The tree::

    TaskgateError
    ├── ConfigError              unsafe or missing setting (.setting, .fix) -> exit 2
    ├── KeyRingError             missing / short / exposed / unknown / retired key
    │   └── KeyRetiredError
    ├── SealError                a sealed envelope that must not be opened
    │   ├── NotSealedError       not an envelope at all
    │   ├── SealExpiredError
    │   └── SealBindingError     opened, but bound to another task id or name
    ├── VaultError               secret reference unusable (expired, deleted, other task)
    ├── TokenError               access token refused (any reason; .reason says which)
    ├── StoredStateError         a stored record failed its state MAC (.record, .reason)
    ├── InputRejectedError       payload refused by validation/sanitising (.field)
    │   ├── LeakDetectedError    secret-looking value in a field not declared secret
    │   └── UnsafeURLError       URL refused by the SSRF guard
    └── AuditError               audit chain cannot be written or does not verify
        └── AuditChainBrokenError  (.index, .record_id)
"""

from __future__ import annotations

__all__ = [
    "AuditChainBrokenError",
    "AuditError",
    "ConfigError",
    "InputRejectedError",
    "KeyRetiredError",
    "KeyRingError",
    "LeakDetectedError",
    "NotSealedError",
    "SealBindingError",
    "SealError",
    "SealExpiredError",
    "StoredStateError",
    "TaskgateError",
    "TokenError",
    "UnsafeURLError",
    "VaultError",
]


class TaskgateError(Exception):
    """Base of every taskgate domain error.

    ``reason`` is a short stable code such as ``"expired"`` or ``"bad_signature"``;
    ``message`` is safe to log (never a secret or payload value).
    """

    default_reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason


class ConfigError(TaskgateError):
    """A setting is missing or unsafe; the process must refuse to start (exit 2)."""

    default_reason = "config"

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        super().__init__(f"{setting}: {problem}; {fix}", reason="config")
        self.setting = setting
        self.problem = problem
        self.fix = fix


class KeyRingError(TaskgateError):
    """A key is missing, too short, readable by others, unknown or unusable."""

    default_reason = "key"


class KeyRetiredError(KeyRingError):
    """The envelope or token was made with a key that has since been retired."""

    default_reason = "key_retired"


class SealError(TaskgateError):
    """A sealed envelope failed to open: tampered, unsigned, wrong key, malformed."""

    default_reason = "invalid_seal"


class NotSealedError(SealError):
    """The data is not a taskgate envelope at all."""

    default_reason = "not_sealed"


class SealExpiredError(SealError):
    """The envelope opened but is past its expiry."""

    default_reason = "expired"


class SealBindingError(SealError):
    """The envelope opened but belongs to another task id or task name."""

    default_reason = "binding_mismatch"


class VaultError(TaskgateError):
    """A secret reference cannot be resolved (expired, deleted, bound elsewhere)."""

    default_reason = "secret_unavailable"


class TokenError(TaskgateError):
    """An access token was refused. ``reason`` names why; clients only see 'invalid'."""

    default_reason = "invalid_token"


class StoredStateError(TaskgateError):
    """A record read from Redis failed its state MAC (or has none): it was written or
    changed by someone without the state key, and nothing in it may be acted on.

    ``record`` names the kind of record (``client``, ``task``, ...); ``reason`` says which
    check failed. Neither the message nor the attributes contain a stored value.
    """

    default_reason = "bad_mac"

    def __init__(self, message: str, *, record: str, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.record = record


class InputRejectedError(TaskgateError):
    """A payload value was refused. ``field`` is a dotted path; the value is never kept."""

    default_reason = "invalid_input"

    def __init__(self, message: str, *, field: str = "", reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.field = field


class LeakDetectedError(InputRejectedError):
    """A secret-looking value was found in a field not declared secret."""

    default_reason = "leak_detected"


class UnsafeURLError(InputRejectedError):
    """A URL was refused by the SSRF guard (scheme, credentials, or address)."""

    default_reason = "unsafe_url"


class AuditError(TaskgateError):
    """The audit log could not be written or read."""

    default_reason = "audit"


class AuditChainBrokenError(AuditError):
    """Verification found a record that breaks the chain."""

    default_reason = "chain_broken"

    def __init__(self, message: str, *, index: int, record_id: str, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.index = index
        self.record_id = record_id

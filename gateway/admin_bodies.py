"""Request bodies of the admin API, with the registry's own rules stated in the schema so
the OpenAPI document tells the truth (the create-client scopes name the catalogue's tasks)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["NewClient", "Revocation", "new_client_model"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"
_SCOPE = r"^(?:tasks:submit:(?:\*|[a-z0-9._-]{1,100})|tasks:read|audit:read)$"
_RATE = r"^(?:[1-9][0-9]{0,5}|1000000)/(?:[1-9][0-9]{0,3} )?(?:second|minute|hour|day)s?$"


class NewClient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    scopes: list[Annotated[str, Field(pattern=_SCOPE)]] = Field(min_length=1, max_length=256)
    rate_limit: str = Field(default="120/minute", max_length=64, pattern=_RATE)
    max_queued: int = Field(default=100, ge=1, le=100_000)


class Revocation(BaseModel):
    """Revoke by ``jti`` (with how long it must stay revoked) or by the token itself."""

    model_config = ConfigDict(extra="forbid")

    jti: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    token: str | None = Field(default=None, max_length=8192)


def new_client_model(task_names: Iterable[str]) -> type[NewClient]:
    """:class:`NewClient` whose scope pattern names the catalogue's tasks, so the OpenAPI
    document says which ``tasks:submit:<task>`` scopes exist (others are refused)."""
    tasks = "|".join(re.escape(name) for name in sorted(task_names))
    submit = rf"\*|{tasks}" if tasks else r"\*"
    pattern = rf"^(?:tasks:submit:(?:{submit})|tasks:read|audit:read)$"
    scopes = list[Annotated[str, Field(pattern=pattern)]]
    model: type[NewClient] = create_model(
        "NewClient",
        __base__=NewClient,
        scopes=(scopes, Field(min_length=1, max_length=256)),
    )
    return model

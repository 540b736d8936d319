"""The task the benchmarks submit: ~1 KiB of text plus one secret field, doing nothing.

Loaded by the bench gateway and worker through ``TASKGATE_TASK_MODULES``. The blob is
sanitised text (the full validation path runs), the API key is swapped into the vault
at the gateway and resolved at the worker, exactly like a real task's secret.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, SecretStr

from security.sanitise import CleanStr
from tests.bench.workload import SECRET_FIELDS, TASK_NAME
from workers.contract.catalogue import task


class NoopPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    blob: Annotated[str, CleanStr(max_length=4000, multiline=True)]
    api_key: SecretStr


@task(TASK_NAME, schema=NoopPayload, secret_fields=SECRET_FIELDS, rate_limit="1000000/minute")
def noop(payload: NoopPayload) -> dict[str, int]:
    """Touch the payload (the secret arrived resolved) and return its sizes."""
    return {"blob": len(payload.blob), "key": len(payload.api_key.get_secret_value())}

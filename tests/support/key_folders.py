"""Key folders for the key-store tests: reading a manifest and a ring, and refusals.

The clock the folders are made at, the symmetric purposes, the manifest read and
written by hand, a ring's key ids, and the ``KeyRingError`` a call must raise.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from security.errors import KeyRingError
from security.keys import Purpose
from security.keystore import MANIFEST, KeyRing, load_keys

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
SYMMETRIC = tuple(p for p in Purpose if p is not Purpose.SIGNING)


def b64(raw: bytes) -> str:
    """Standard base64 text of ``raw``, as key files hold it."""
    return base64.b64encode(raw).decode()


def manifest_doc(keys_dir: Path) -> dict[str, object]:
    """The keys folder's manifest, parsed."""
    doc: dict[str, object] = json.loads((keys_dir / MANIFEST).read_text())
    return doc


def write_manifest(keys_dir: Path, doc: object) -> None:
    """Replace the keys folder's manifest with ``doc``."""
    (keys_dir / MANIFEST).write_text(json.dumps(doc))


def kids(ring: KeyRing, purpose: Purpose) -> list[str]:
    """The key ids of ``purpose`` in ``ring``, oldest first."""
    keys = ring.signing if purpose is Purpose.SIGNING else ring.purpose(purpose)
    return [k.kid for k in keys]


def refused(reason: str, call: object, *args: object, **kwargs: object) -> KeyRingError:
    """Run ``call`` and return the KeyRingError it must raise with ``reason``."""
    with pytest.raises(KeyRingError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    assert info.value.reason == reason, info.value.message
    return info.value


def first_kid(keys_dir: Path, purpose: Purpose) -> str:
    """The oldest key id of ``purpose`` in the keys folder."""
    return kids(load_keys(keys_dir, role="gateway"), purpose)[0]

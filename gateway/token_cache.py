"""Remember tokens this process already verified, until they expire.

A hit needs the exact same token bytes, so it proves nothing new can be wrong with the
signature or claims; only ``exp`` can change the verdict, and it is checked on every hit.
Revocation and the client's disabled flag are NOT cached: they are checked in Redis on
every request. Keys are fixed for a process's life (rotation takes a restart).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from security.keys import KeySet, SymmetricKey
from security.tokens import AccessClaims, TokenPolicy, verify_token

__all__ = ["VerifiedTokens"]


class VerifiedTokens:
    """An LRU of verified tokens -> claims (bounded; entries die at the token's expiry)."""

    def __init__(self, *, size: int = 4096) -> None:
        self._size = size
        self._cache: OrderedDict[str, AccessClaims] = OrderedDict()

    def verify(
        self,
        token: str,
        *,
        keys: KeySet[SymmetricKey],
        policy: TokenPolicy,
        now: float | None = None,
    ) -> AccessClaims:
        """Claims for ``token``: from the cache if still unexpired, else verified in full."""
        moment = time.time() if now is None else now
        claims = self._cache.get(token)
        if claims is not None:
            if claims.exp > moment:
                self._cache.move_to_end(token)
                return claims
            del self._cache[token]
        claims = verify_token(token, keys=keys, policy=policy, now=now)
        self._cache[token] = claims
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return claims

"""HS256 tokens from the secret the platform and the billing service share (the claims API.md names)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Dict, Optional, Union


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_token(
    secret: Union[str, bytes],
    *,
    role: str = "service",
    tenant_id: str = "platform",
    sub: str = "platform-service",
    ttl_seconds: int = 300,
    audience: Optional[str] = None,
    issuer: Optional[str] = None,
) -> str:
    """A JWT signed with HS256: `sub`, `tenant_id`, `role`, `exp` (and `aud`/`iss` when the service checks them)."""
    key = secret.encode() if isinstance(secret, str) else secret
    claims: Dict[str, Any] = {
        "sub": sub,
        "tenant_id": tenant_id,
        "role": role,
        "exp": int(time.time()) + int(ttl_seconds),
    }
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


class _Tokens:
    """A token per role, minted again a minute before it expires (or the one given)."""

    def __init__(
        self,
        jwt_secret: Optional[Union[str, bytes]],
        token: Optional[str],
        audience: Optional[str],
        issuer: Optional[str],
    ) -> None:
        if (jwt_secret is None) == (token is None):
            raise ValueError("give either jwt_secret= (the shared secret) or token= (a JWT), not both")
        self._secret = jwt_secret
        self._token = token
        self._audience = audience
        self._issuer = issuer
        self._cache: Dict[str, "tuple[str, float]"] = {}

    def for_role(self, role: str) -> str:
        if self._token is not None:
            return self._token
        cached = self._cache.get(role)
        now = time.time()
        if cached is None or cached[1] - now < 60:
            ttl = 300
            assert self._secret is not None
            token = mint_token(
                self._secret, role=role, ttl_seconds=ttl, audience=self._audience, issuer=self._issuer
            )
            cached = (token, now + ttl)
            self._cache[role] = cached
        return cached[0]

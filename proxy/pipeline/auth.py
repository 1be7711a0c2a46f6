"""Who is calling: bearer keys from the config, compared in constant time, and which models
each key may use."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from fnmatch import translate

from proxy.config import KeyConfig
from proxy.core.errors import ErrorCode, ErrorType, ProxyError
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str  # the tenant: cache entries and logs are scoped by it, never by the secret
    digest: bytes
    allowed: re.Pattern[str] | None  # None: every model

    def may_use(self, model: str) -> bool:
        return self.allowed is None or self.allowed.match(model) is not None


def _api_key(config: KeyConfig) -> ApiKey:
    if config.key is not None:
        digest = hashlib.sha256(config.key.encode()).digest()
    else:
        assert config.key_sha256 is not None
        digest = bytes.fromhex(config.key_sha256)
    allowed = None
    if config.models is not None:
        allowed = re.compile("|".join(f"(?:{translate(glob)})" for glob in config.models) or "(?!)")
    return ApiKey(config.name, digest, allowed)


MAX_ACCEPTED = 1024
_UNAUTHORIZED = "Missing or invalid API key: send `Authorization: Bearer <key>`"


def _unauthorized() -> ProxyError:
    return ProxyError(401, _UNAUTHORIZED, type=ErrorType.authentication, code=ErrorCode.invalid_api_key)


class KeyRing:
    def __init__(self, keys: list[KeyConfig]) -> None:
        self.keys = [_api_key(k) for k in keys]
        # Authorization headers already accepted, so a client's every request after its first is
        # one dict lookup, not a hash and a pass over every key. Only accepted headers are kept
        # (a wrong key always takes the constant-time path), a bounded number, and a reload
        # builds a new ring, so a removed key stops working at once.
        self._accepted: dict[str, ApiKey] = {}

    def authenticate(self, authorization: str | None) -> ApiKey:
        if not authorization:
            raise _unauthorized()
        known = self._accepted.get(authorization)
        if known is not None:
            return known
        found = self._lookup(authorization)
        if len(self._accepted) < MAX_ACCEPTED:
            self._accepted[authorization] = found
        return found

    def _lookup(self, authorization: str) -> ApiKey:
        if not authorization[:7].lower() == "bearer ":
            raise _unauthorized()
        try:
            digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
        except UnicodeEncodeError:  # bytes that were not UTF-8 (aiohttp keeps them as surrogates): no key of ours
            raise _unauthorized() from None
        found: ApiKey | None = None
        for key in self.keys:  # no early exit: every key is compared every time
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise _unauthorized()
        return found


class AuthorizeStage:
    """Stage: every model the request may reach must be in the key's allowlist."""

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        key, route = call.key, call.route
        if key is not None and key.allowed is not None and route is not None:
            for target, param in route.named:
                if not key.may_use(target.label):
                    raise ProxyError(
                        403,
                        f"API key {key.name!r} may not use model {target.label!r}",
                        type=ErrorType.permission,
                        param=param,
                        code=ErrorCode.insufficient_scope,
                    )
        return next(call)

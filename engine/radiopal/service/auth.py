"""CDS Hooks client authentication: the EHR's signed JWT, verified with PyJWT.

What is checked (CDS Hooks 2.0 "Trusting CDS Clients"):

* ``Authorization: Bearer <JWT>`` on every call (discovery, services, feedback);
* header ``alg`` is RS384 or ES384 (``none`` and HMAC are refused) and ``kid`` is present;
* the key is the JWKS key with that ``kid`` — from a JWKS URL or file configured at start (``jku`` headers are not
  followed: keys come only from the configured set);
* ``aud`` is exactly the URL of the endpoint called (``{base}/cds-services/{id}``), ``iss`` is in the allow-list,
  ``exp`` is present and not past, ``jti`` is present and not seen before (replay), ``iat`` when given is not in
  the future (30 s leeway for clock skew).

The verified ``iss``, ``sub`` and ``jti`` go into the audit record of the call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ServiceError

__all__ = ["ALLOWED_ALGORITHMS", "Authenticator", "Claims"]

ALLOWED_ALGORITHMS = ("RS384", "ES384")
_KEY_TYPES = {"RS384": "RSA", "ES384": "EC"}
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Claims:
    """The verified claims the service keeps."""

    iss: str
    sub: str | None
    jti: str
    kid: str
    alg: str
    exp: int

    def to_dict(self) -> dict[str, Any]:
        return {"iss": self.iss, "sub": self.sub, "jti": self.jti, "kid": self.kid, "alg": self.alg}


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(401, "unauthorized", message,
                        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'})


class Authenticator:
    """Verifies client JWTs against a JWKS (URL or file) and an issuer allow-list; thread-safe."""

    def __init__(self, jwks: str, issuers: Iterable[str], *, leeway: int = LEEWAY_SECONDS,
                 replay_store: Any = None) -> None:
        """``replay_store`` (the audit log) remembers used JWT ids across processes; without it, within this one."""
        import jwt

        self.issuers = tuple(issuers)
        if not self.issuers:
            raise ValueError("at least one allowed issuer is needed")
        self.leeway = leeway
        self.jwks = jwks
        self._client: Any = None
        self._keys: dict[str, Any] = {}
        if jwks.startswith(("https://", "http://")):
            self._client = jwt.PyJWKClient(jwks, cache_keys=True, lifespan=300, timeout=10)
        else:
            try:
                data = json.loads(Path(jwks).read_text(encoding="utf-8"))
                keyset = jwt.PyJWKSet.from_dict(data)
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ValueError(f"cannot read the JWKS file {jwks}: {exc}") from exc
            self._keys = {k.key_id: k for k in keyset.keys if k.key_id}
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.replay_store = replay_store

    def _key(self, kid: str) -> Any:
        import jwt

        if self._client is None:
            key = self._keys.get(kid)
            if key is None:
                raise _unauthorized(f"no key with kid {kid!r} in the configured JWKS")
            return key
        try:
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise ServiceError(503, "jwks-unavailable", "the configured JWKS could not be fetched") from exc
        except jwt.PyJWKClientError as exc:
            raise _unauthorized(f"no key with kid {kid!r} in the configured JWKS") from exc

    def verify(self, authorization: str | None, audience: str) -> Claims:
        """Check the ``Authorization`` header for the endpoint URL ``audience``; raise a 401 :class:`ServiceError`."""
        import jwt

        if not authorization:
            raise _unauthorized("missing Authorization: Bearer <JWT>")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("the Authorization header must be 'Bearer <JWT>'")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _unauthorized("the bearer token is not a JWT") from exc
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise _unauthorized(f"JWT alg {alg!r} is not allowed (only {', '.join(ALLOWED_ALGORITHMS)})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _unauthorized("the JWT header has no kid")
        key = self._key(kid)
        if key.key_type != _KEY_TYPES[alg]:
            raise _unauthorized(f"key {kid!r} is an {key.key_type} key, which cannot verify {alg}")
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[alg], audience=audience, issuer=list(self.issuers), leeway=self.leeway,
                options={"require": ["iss", "aud", "exp", "jti"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthorized("the JWT has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise _unauthorized(f"the JWT aud is not this endpoint ({audience})") from exc
        except jwt.InvalidIssuerError as exc:
            raise _unauthorized("the JWT iss is not an allowed issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"the JWT has no {exc.claim} claim") from exc
        except jwt.InvalidSignatureError as exc:
            raise _unauthorized("the JWT signature does not verify") from exc
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise _unauthorized(f"invalid JWT: {exc}") from exc
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _unauthorized("the JWT jti must be a non-empty string")
        self._check_replay(str(claims["iss"]), jti, float(claims["exp"]))
        sub = claims.get("sub")
        return Claims(str(claims["iss"]), str(sub) if sub is not None else None, jti, kid, alg, int(claims["exp"]))

    def _check_replay(self, iss: str, jti: str, exp: float) -> None:
        now = time.time()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            until = self._seen.get((iss, jti))
            if until is not None and until > now:
                raise _unauthorized("the JWT jti was already used (replay)")
            self._seen[(iss, jti)] = exp + self.leeway
        if self.replay_store is not None and not self.replay_store.claim_token_id(iss, jti, exp + self.leeway):
            raise _unauthorized("the JWT jti was already used (replay)")

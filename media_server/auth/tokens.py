"""Token checks: static bearer tokens, JWTs (HS256 secret or RS256/ES256 from a JWKS file),
and the gateway's own signed, expiring viewer tokens for one stream.

Missing or bad credentials are 401; a valid token without the needed right is 403.
Static tokens are compared in constant time and grant every right; a JWT grants the
scopes it carries (`scope`, space-separated, or a `scp`/`scopes` list).
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from media_server.config import AuthSettings, ConfigError

READ = "streams:read"
WRITE = "streams:write"
ISSUE = "tokens:issue"
#: Operating the process itself (profiling attaches ptrace to it): apart from streams.
ADMIN = "admin"
ALL_SCOPES = frozenset({READ, WRITE, ISSUE, ADMIN})

VIEWER_AUDIENCE = "media_server:viewer"
LEEWAY = 30  # seconds of clock skew tolerated on exp/nbf/iat


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unauthorized(message: str) -> AuthError:
    return AuthError(401, "unauthorized", message)


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    stream: str | None = None  # set for viewer tokens: the one stream they open


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._static = [t.encode() for t in settings.tokens]
        self._jwks = _load_jwks(settings) if settings.jwks_file else None
        key = settings.viewer_secret
        # Without a configured secret, viewer tokens last as long as the process.
        self._viewer_key = key.encode() if key else secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        """Whether the control plane asks for credentials at all."""
        s = self.settings
        return bool(self._static or s.jwt_secret or self._jwks)

    @property
    def viewing_needs_token(self) -> bool:
        """Explicitly set, or else whenever the control plane asks for credentials: a
        gateway that guards its API guards what it shows too."""
        wanted = self.settings.viewer_tokens
        return self.enabled if wanted is None else wanted

    def control(self, token: str | None, scope: str) -> Principal | None:
        """The caller of a control-plane request, or AuthError; None when auth is off."""
        if not self.enabled:
            return None
        if not token:
            raise unauthorized("send Authorization: Bearer <token>")
        principal = self._authenticate(token)
        if scope not in principal.scopes:
            raise AuthError(403, "forbidden", f"the token lacks the '{scope}' right")
        return principal

    def viewer(self, token: str | None, stream_id: str) -> Principal | None:
        """May this caller watch `stream_id`? None when viewing is open."""
        if not self.viewing_needs_token:
            return None
        if not token:
            raise unauthorized("this stream needs a viewer token (?token= or a bearer header)")
        try:
            claims = jwt.decode(
                token,
                self._viewer_key,
                algorithms=["HS256"],
                audience=VIEWER_AUDIENCE,
                options={"require": ["exp", "sub", "aud"]},
            )  # no leeway: the gateway signs these itself, on its own clock
        except jwt.ExpiredSignatureError:
            raise unauthorized("the viewer token has expired") from None
        except jwt.PyJWTError:
            if not self.enabled:  # no control-plane credentials exist to fall back on
                raise unauthorized("the viewer token is not valid") from None
            # Not a viewer token: an operator's control-plane token may watch any stream.
            return self.control(token, READ)
        if claims["sub"] != stream_id:
            raise AuthError(403, "forbidden", "the viewer token is for another stream")
        return Principal(f"viewer:{stream_id}", frozenset(), stream_id)

    def issue_viewer_token(self, stream_id: str, ttl: float) -> tuple[str, float]:
        now = time.time()
        expires = now + min(ttl, self.settings.viewer_token_ttl)
        claims = {"sub": stream_id, "aud": VIEWER_AUDIENCE, "iat": int(now), "exp": int(expires)}
        return jwt.encode(claims, self._viewer_key, algorithm="HS256"), float(int(expires))

    def _authenticate(self, token: str) -> Principal:
        given = token.encode()
        matched = False
        for known in self._static:  # constant time, and no early exit on a match
            matched |= hmac.compare_digest(known, given)
        if matched:
            return Principal("static-token", ALL_SCOPES)
        if token.count(".") == 2 and (self.settings.jwt_secret or self._jwks):
            return self._from_jwt(token)
        raise unauthorized("the token is not valid")

    def _from_jwt(self, token: str) -> Principal:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            key: Any
            if alg == "HS256" and s.jwt_secret:
                key = s.jwt_secret.encode()
            elif alg in ("RS256", "ES256") and self._jwks is not None:
                key = self._jwk(header.get("kid"), alg)
            else:
                raise unauthorized(f"tokens signed with {alg!r} are not accepted")
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                leeway=LEEWAY,
                options={"require": ["exp"], "verify_aud": s.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("the token is for another audience") from None
        except jwt.PyJWTError:
            raise unauthorized("the token is not valid") from None
        return Principal(str(claims.get("sub", "jwt")), _scopes(claims))

    def _jwk(self, kid: object, alg: str) -> Any:
        assert self._jwks is not None
        for key in self._jwks.keys:
            if (kid is None or key.key_id == kid) and key.algorithm_name in (alg, None):
                return key.key
        raise unauthorized("the token's signing key is unknown")


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", claims.get("scopes", [])))
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(str(item) for item in items) & ALL_SCOPES


def _load_jwks(settings: AuthSettings) -> jwt.PyJWKSet:
    path = settings.jwks_file
    assert path is not None
    try:
        return jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, jwt.PyJWTError) as exc:
        raise ConfigError(f"invalid setting 'auth.jwks_file': cannot load {path}: {exc}") from None

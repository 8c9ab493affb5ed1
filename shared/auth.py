"""Bearer JWTs and roles (docs/security.md).

RS256 tokens. Locally a development key pair under `<data_dir>/keys` (made on
first use) signs the tokens of `make token`. In production the identity
provider's JWKS (`PASSERELLE_JWT_JWKS_URL`) gives the keys, found by each
token's `kid`, or one public key file is configured. Every route declares the
roles it accepts with `requires(...)`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from shared.keys import create_private_file, keys_lock
from shared.settings import Settings


class Role(StrEnum):
    intake_officer = "intake_officer"
    funding_officer = "funding_officer"
    funding_approver = "funding_approver"
    followup_officer = "followup_officer"
    partner = "partner"
    auditor = "auditor"
    admin = "admin"


STAFF_ROLES = frozenset(r.value for r in Role if r != Role.partner)


def human(issuer: str, sub: str) -> str:
    """The actor recorded for a person's act: `user:<issuer>#<subject>`.

    Both parts: a subject is unique only within its issuer. An OpenID issuer is a URL without a
    fragment, so the first `#` separates them. Events stored before this form say `user:<subject>`
    or `partner:<partner id>` (see `shared.domain.same_human`).
    """
    return f"user:{issuer}#{sub}"


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: frozenset[str]
    partner_id: str | None = None
    issuer: str = ""  # the token's `iss`: a subject is unique only within its issuer

    @property
    def actor(self) -> str:
        """The human who acts (issuer and subject); a partner organisation is an attribute of
        that human (`partner_id`, kept beside the actor in the event metadata), never the actor."""
        return human(self.issuer, self.sub)

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def mixes_partner_and_staff(self) -> bool:
        """A token holding the partner role and a staff role: refused (a partner's token carries
        the partner role alone), so that nobody is both a partner and the staff checking it."""
        return Role.partner in self.roles and bool(self.roles & STAFF_ROLES)

    @property
    def partner_scope(self) -> str | None:
        """The partner this caller is limited to (a token with the partner role), None for staff.

        A partner token without a partner id is limited to "-", which matches nothing.
        """
        if self.has(Role.partner):
            return self.partner_id or "-"
        return None


def _dev_key_paths(settings: Settings) -> tuple[Path, Path]:
    private = settings.jwt_private_key_path or settings.keys_dir / "jwt-dev.pem"
    public = settings.jwt_public_key_path or settings.keys_dir / "jwt-dev.pub.pem"
    return private, public


def ensure_dev_keys(settings: Settings) -> tuple[Path, Path]:
    """Make the development key pair once (a file lock guards concurrent first starts)."""
    private, public = _dev_key_paths(settings)
    if public.exists() and (private.exists() or settings.jwt_public_key_path):
        return private, public
    with keys_lock(private.parent):
        if not (private.exists() and public.exists()):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            private.unlink(missing_ok=True)  # a pair: a private key whose public half is lost is made again
            create_private_file(private, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            public.write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def issue_token(settings: Settings, role: str, sub: str | None = None, partner_id: str | None = None,
                ttl_seconds: int = 8 * 3600, roles: list[str] | None = None) -> str:
    """A token signed with the development key (for `make token`, the demo and tests)."""
    private, _ = ensure_dev_keys(settings)
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub or f"{role}-{uuid.uuid4().hex[:8]}",
        "roles": roles or [role],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if partner_id:
        claims["partner_id"] = partner_id
    return jwt.encode(claims, private.read_bytes(), algorithm="RS256")


class TokenVerifier:
    """Checks a bearer token's RS256 signature and its claims (issuer, audience, expiry).

    With a JWKS URL the key is the identity provider's key named by the token's `kid`.
    The set is cached (`jwt_jwks_lifespan`) and fetched again when a token names a `kid`
    the cache does not hold, so the provider can rotate its keys without a restart here.
    Without one, a single public key: `jwt_public_key_path`, or the development pair.
    With both a JWKS URL and a public key file (development: the provider's keys and the
    development key of `make token`), a token naming a `kid` is checked against the provider's
    set (issuer `jwt_jwks_issuer`), a token without one against the public key (issuer `jwt_issuer`).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.jwks: jwt.PyJWKClient | None = None
        self.public_key = None
        if settings.jwt_jwks_url:
            self.jwks = jwt.PyJWKClient(settings.jwt_jwks_url, lifespan=settings.jwt_jwks_lifespan, timeout=5,
                                        cooldown_duration=settings.jwt_jwks_cooldown)
        if settings.jwt_public_key_path or not settings.jwt_jwks_url:
            _, public = ensure_dev_keys(settings)
            # Loaded once: parsing the PEM on every request cost as much as checking the signature.
            self.public_key = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(
                public.read_bytes())

    def verify(self, token: str) -> Principal:
        """The token's principal. Raises jwt.InvalidTokenError (401), or jwt.PyJWKClientConnectionError
        when the identity provider cannot be reached (503: the token may well be good)."""
        issuer = self.settings.jwt_issuer
        if self.jwks is not None and (self.public_key is None or "kid" in jwt.get_unverified_header(token)):
            issuer = self.settings.jwt_jwks_issuer or self.settings.jwt_issuer
            try:
                key = self.jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError:
                raise
            except jwt.PyJWKSetError as exc:  # the provider answered, with no usable key set
                raise jwt.PyJWKClientConnectionError(f"unusable key set: {exc}") from exc
            except jwt.PyJWKClientError as exc:  # no kid, or a kid the provider does not have
                raise jwt.InvalidTokenError(str(exc)) from exc
        else:
            key = self.public_key
        claims = jwt.decode(
            token, key, algorithms=["RS256"], audience=self.settings.jwt_audience,
            issuer=issuer, options={"require": ["exp", "sub", "iss", "aud"]},
        )
        roles = claims.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise jwt.InvalidTokenError("roles must be a list of strings")
        partner_id = claims.get("partner_id")
        if partner_id is not None and (not isinstance(partner_id, str) or not 1 <= len(partner_id) <= 200):
            raise jwt.InvalidTokenError("partner_id must be a string of 1 to 200 characters")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise jwt.InvalidTokenError("sub must be a non-empty string")
        return Principal(sub=claims["sub"], roles=frozenset(roles), partner_id=partner_id,
                         issuer=str(claims["iss"]))


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="passerelle"'})


async def principal(request: Request) -> Principal:
    # async: resolved on the event loop, not in a worker thread (a JWT check is microseconds)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("a bearer token is required")
    verifier: TokenVerifier = request.app.state.verifier
    try:
        if verifier.jwks is None:
            found = verifier.verify(token.strip())
        else:  # may fetch the key set: not on the event loop
            found = await run_in_threadpool(verifier.verify, token.strip())
    except jwt.PyJWKClientConnectionError as exc:
        raise HTTPException(503, f"the identity provider's keys cannot be read now: {exc}",
                            headers={"Retry-After": "5"}) from None
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"invalid token: {exc}") from None
    if found.mixes_partner_and_staff:
        raise HTTPException(403, "a partner's token carries the partner role alone: this token also holds "
                                 f"{', '.join(sorted(found.roles & STAFF_ROLES))}")
    request.state.principal = found
    return found


def requires(*roles: Role | str):
    """A dependency: the caller must hold one of `roles` (admin always may)."""
    allowed = frozenset(str(r) for r in roles) | {Role.admin.value}

    async def check(found: Annotated[Principal, Depends(principal)]) -> Principal:
        if not found.has(*allowed):
            raise HTTPException(403, f"this needs one of the roles: {', '.join(sorted(allowed))}")
        return found

    check.roles = sorted(allowed)  # type: ignore[attr-defined]  # read by the architecture test
    return check

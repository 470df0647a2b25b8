"""API tokens: random secrets shown once, stored as sha256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import ApiToken, utcnow
from backend.services.errors import Conflict, NotFound

TOKEN_PREFIX = "psk_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, *, admin: bool = False) -> str:
    """Store a new token's hash under `name`; return the token (the only time it is seen). An
    `admin` token may also cancel, extend and delete other people's studies."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("token name must be 1..100 characters")
    if session.scalar(sa.select(ApiToken).where(ApiToken.name == name)) is not None:
        raise Conflict(f"a token named {name!r} already exists; revoke it or pick another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token), is_admin=admin))
    session.commit()
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(sa.select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, name: str) -> ApiToken:
    token = session.scalar(sa.select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise NotFound(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.commit()
    return token


def verify_token(session: Session, token: str) -> ApiToken | None:
    """The active token matching `token`, else None. The hash is looked up, then compared with
    hmac.compare_digest so the final check does not leak timing."""
    digest = hash_token(token)
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.token_hash, digest) else None

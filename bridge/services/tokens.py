"""Bearer tokens of SCIM clients and admin API clients.

A token is ``dbr_<prefix>_<secret>``: the prefix finds the row, the SHA-256 of the
whole token is compared in constant time. The plain token exists only in the
answer to ``create``; the store keeps the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from bridge.clock import Clock, utcnow
from bridge.services import audit
from bridge.services.errors import Conflict, InvalidValue, NotFound
from bridge.store.models import ApiToken, TokenKind

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork
    from bridge.store.db import Store

TOKEN_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
TOKEN_FORMAT = re.compile(r"^dbr_(?P<prefix>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid bearer token belongs to."""

    id: str
    name: str
    kind: TokenKind


@dataclass
class TokenService:
    uow: UnitOfWork

    def create(self, name: str, kind: TokenKind | str) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the plain token, which is never stored."""
        kind = TokenKind(kind)
        if not TOKEN_NAME.match(name):
            raise InvalidValue(f"token name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-'")
        existing = self.uow.session.scalar(select(ApiToken).where(ApiToken.name == name))
        if existing is not None:
            state = "revoked" if existing.revoked_at else "active"
            raise Conflict(f"a token named {name!r} exists already ({state})")
        prefix, plain = _new_secret()
        token = ApiToken(name=name, kind=kind, prefix=prefix, token_hash=hash_token(plain))
        self.uow.session.add(token)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "token.create", "token", token.id, name,
                     {"kind": [None, kind.value], "prefix": [None, prefix]})
        return token, plain

    def rotate(self, name: str) -> tuple[ApiToken, str]:
        """A new secret for the same client: the old token is refused from now on, while the
        name, and so the source (``scim:NAME``) that owns the client's users, stays."""
        token = self.get(name)
        if token.revoked_at is not None:
            raise Conflict(f"token {name!r} is revoked; create a token under a new name", field="name")
        before = token.prefix
        token.prefix, plain = _new_secret()
        token.token_hash = hash_token(plain)
        token.last_used_at = None
        self.uow.session.flush()
        self.uow.changes.token(token.id)  # the old secret: refused at once on every replica
        audit.record(self.uow.session, self.uow.actor, "token.rotate", "token", token.id, name,
                     {"prefix": [before, token.prefix]})
        return token, plain

    def all(self) -> list[ApiToken]:
        return list(self.uow.session.scalars(select(ApiToken).order_by(ApiToken.name)))

    def get(self, name: str) -> ApiToken:
        token = self.uow.session.scalar(select(ApiToken).where(ApiToken.name == name)) \
            if "\x00" not in name else None  # (no row holds one; PostgreSQL refuses it even in a query)
        if token is None:
            raise NotFound(f"no token named {name!r}", field="name")
        return token

    def revoke(self, name: str) -> ApiToken:
        """Revoke for good (a revoked name stays taken); revoking twice changes nothing."""
        token = self.get(name)
        if token.revoked_at is None:
            token.revoked_at = self.uow.now()
            self.uow.session.flush()
            self.uow.changes.token(token.id)  # refused at once on every replica
            audit.record(self.uow.session, self.uow.actor, "token.revoke", "token", token.id, name,
                         {"revoked_at": [None, token.revoked_at.isoformat()]})
        return token


def _new_secret() -> tuple[str, str]:
    """A public prefix and the whole token: 48 random bits to find the row, 256 to prove it."""
    prefix = secrets.token_hex(6)
    return prefix, f"dbr_{prefix}_{secrets.token_urlsafe(32)}"


def authenticate(store: Store, presented: str, kind: TokenKind, clock: Clock = utcnow) -> TokenIdentity | None:
    """The identity of a valid, unrevoked token of ``kind``; None for anything else."""
    match = TOKEN_FORMAT.match(presented.strip())
    if not match:
        return None
    with store.read() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.prefix == match["prefix"]))
        if token is None:
            hmac.compare_digest(hash_token(presented), hash_token(""))  # same work as a hit
            return None
        if not hmac.compare_digest(hash_token(presented), token.token_hash):
            return None
        if token.revoked_at is not None or token.kind != kind:
            return None
        identity = TokenIdentity(id=token.id, name=token.name, kind=token.kind)
        now = clock()
        stale = token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION
    if stale:
        with store.write() as session:
            row = session.get(ApiToken, identity.id)
            if row is not None:
                row.last_used_at = now
    return identity

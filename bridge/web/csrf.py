"""The synchronizer token shared by the server-rendered pages (invitation, status login):
one random value per session, compared in constant time."""

from __future__ import annotations

import hmac
import secrets

from flask import session


def csrf_token() -> str:
    """The session's token, made on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok(sent: str | None) -> bool:
    """A form field or header carries the session's token (a session without one never matches)."""
    expected = session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(str(sent or ""), str(expected))

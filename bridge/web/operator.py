"""The operator login of the status page, and the operator session the admin API accepts.

An operator is a user who holds the right ``dirbridge.operate`` at ``instance``
(admins hold every right). The login is the portal's login
(bridge.accounts.login): lockout per account and address, the IP allow-list,
LDAP binds of directory users, expired passwords and TOTP all behave as in
``POST /api/v1/auth/login``; with ``status.require_totp`` (the default) an
operator without a confirmed TOTP credential is refused after the password.

The session is Flask's signed cookie (``dirbridge_session``: HttpOnly,
SameSite=Strict, set up in bridge.web.invite; Secure when ``server.public_url`` is
https and also whenever the request itself came over https, directly or as a trusted
proxy says with X-Forwarded-Proto: see ``HttpsSessionInterface``). It holds the user's id and the end of the login
(``status.session_minutes``) and when it was issued (``iat``, float seconds), never a
password. Every request checks the right again, so revoking it or deactivating the user
ends the session at once; a session issued before the user's ``sessions_valid_after``
is refused for good. That column is set by a logout (which so ends the operator's
sessions on every browser and replica, a copied cookie too), a password change or
reset, a lock and a deactivation (bridge.services). Forms
carry a CSRF token; the admin API wants it in the ``X-CSRF-Token`` header for
unsafe methods.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Response, abort, g, redirect, render_template, request, session, url_for
from flask.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import func

from bridge.accounts.context import context_for
from bridge.accounts.credentials import set_new_password
from bridge.accounts.errors import PasswordRejected
from bridge.accounts.login import login
from bridge.mapping.apply import OPERATE_RIGHT
from bridge.runtime import Runtime
from bridge.services import Actor
from bridge.services.errors import NotFound
from bridge.store.models import TotpCredential, User
from bridge.web import runtime
from bridge.web.csrf import csrf_ok, csrf_token

log = logging.getLogger(__name__)

OPERATE_SCOPE = "instance"
SESSION_KEY = "operator"
CHANGE_KEY = "password_change"  # a login with a temporary password, waiting for the new one
CHANGE_SECONDS = 300
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CHANNEL = "status-page"

blueprint = Blueprint("operator", __name__, template_folder="templates")


class HttpsSessionInterface(SecureCookieSessionInterface):
    """The signed-cookie session, whose cookie is Secure when the config says so
    (``public_url`` https) or when this request came over https: an operator reaching
    dirbridge over https (behind a proxy in ``server.trusted_proxies``, whose
    X-Forwarded-Proto ProxyFix applies) never gets a session cookie a later plain-http
    request would carry."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app) or request.is_secure)


@blueprint.record_once
def _https_sessions(state: BlueprintSetupState) -> None:
    app = state.app
    assert isinstance(app, Flask)
    if type(app.session_interface) is SecureCookieSessionInterface:
        app.session_interface = HttpsSessionInterface()


def _now(rt: Runtime) -> float:
    """The runtime's clock in seconds, for a session's issue time and end: the same clock
    the accounts code ends sessions by (``sessions_valid_after``)."""
    return rt.clock().timestamp()


@dataclass(frozen=True)
class Operator:
    user_id: str
    user_name: str
    expires_at: float
    issued_at: float = 0.0


def may_operate(rt: Runtime, user_id: str) -> bool:
    """The user is active and holds ``dirbridge.operate`` at ``instance`` (interactively)."""
    from bridge.mapping.engine import authorizer

    try:
        return authorizer(rt).check(user_id, OPERATE_RIGHT, OPERATE_SCOPE, interactive=True).allowed
    except NotFound:
        return False


def session_ended(rt: Runtime, user_id: str, issued_at: float) -> bool:
    """The user is gone or locked, or the session was issued before the user's
    ``sessions_valid_after`` (compared to the microsecond: a login in the second of a
    logout still counts)."""
    with rt.store.read() as db:
        user = db.get(User, user_id)
        if user is None:
            return True
        if user.sessions_valid_after is not None and issued_at < user.sessions_valid_after.timestamp():
            return True
        return user.lock_reason is not None and (user.locked_until is None
                                                 or user.locked_until > context_for(rt).now())


def operator_sessions_sweep(rt: Runtime) -> dict[str, Any]:
    """End for good the sessions of everyone who logged in to the status page within a
    session's lifetime and no longer holds the operator right: a revoked right then ends
    their sessions within five minutes (the job's schedule) even when no request comes, so
    that giving the right back later does not bring an old (or copied) cookie back.
    A request that meets the missing right ends them at once (``current_operator``)."""
    from sqlalchemy import select

    from bridge.store.models import AuditEvent

    since = rt.clock() - timedelta(minutes=rt.config.status.session_minutes)
    with rt.store.read() as db:
        logins = db.execute(select(AuditEvent.target_id, func.max(AuditEvent.at)).where(
            AuditEvent.action == "login.ok", AuditEvent.channel == CHANNEL, AuditEvent.at >= since,
            AuditEvent.target_id.is_not(None)).group_by(AuditEvent.target_id)).all()
        ended_after = {u.id: u.sessions_valid_after for u in db.scalars(
            select(User).where(User.id.in_([user_id for user_id, _ in logins])))}
    ended = 0
    for user_id, last_login in logins:
        if user_id is None:
            continue
        valid_after = ended_after.get(user_id)
        if user_id not in ended_after or (valid_after is not None and valid_after > last_login):
            continue  # gone, or its sessions ended already (one issued at the end itself is valid)
        if not may_operate(rt, user_id):
            _end_sessions(rt, user_id, "the operator right was revoked")
            ended += 1
    return {"checked": len(logins), "ended": ended}


def _end_sessions(rt: Runtime, user_id: str, why: str) -> None:
    request_id = g.get("request_id") if g else None
    with rt.services.unit(Actor(name=CHANNEL, channel=CHANNEL, request_id=request_id)) as uow:
        try:
            user = uow.users.get(user_id)
        except NotFound:
            return
        uow.accounts.end_sessions(user)
    log.info("operator sessions ended: %s", why, extra={"user_id": user_id})


def current_operator() -> Operator | None:
    """The logged-in operator of this request, or None (no session, expired, right gone,
    user locked or deactivated, sessions ended after it was issued). An invalid session
    is dropped."""
    found = g.get("operator_checked")
    if found is not None:
        return found or None
    g.operator_checked = False
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    rt = runtime()
    try:
        operator = Operator(str(data.get("id", "")), str(data.get("name", "")), float(data.get("exp", 0)),
                            float(data.get("iat", 0)))
    except (TypeError, ValueError):
        session.pop(SESSION_KEY, None)
        return None
    if not rt.config.status.enabled or operator.expires_at < _now(rt) or not operator.user_id \
            or session_ended(rt, operator.user_id, operator.issued_at):
        session.pop(SESSION_KEY, None)
        return None
    if not may_operate(rt, operator.user_id):
        # The right was taken away: this session, and every other one issued until now, ends
        # for good, so that giving the right back later does not bring an old cookie back.
        _end_sessions(rt, operator.user_id, "the operator right was revoked")
        session.pop(SESSION_KEY, None)
        return None
    g.operator_checked = operator
    return operator


def api_session() -> tuple[str | None, tuple[Response, int] | None]:
    """For the admin API: (the operator's name, None) with a valid operator session,
    (None, a 403 answer) when an unsafe method lacks the CSRF header, (None, None)
    without a session."""
    operator = current_operator()
    if operator is None:
        return None, None
    if request.method not in SAFE_METHODS and not csrf_ok(request.headers.get(CSRF_HEADER)):
        from bridge.web.api.common import error_response

        return None, error_response(403, "csrfFailed", f"an operator session needs the {CSRF_HEADER} header "
                                                       "(the csrf-token of the status page) for this method")
    return operator.user_name, None


def security_headers(response: Response, nonce: str | None = None) -> Response:
    """No script (unless one with this request's nonce), styles only from here, no framing."""
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src {script}; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.after_request
def _headers(response: Response) -> Response:
    return security_headers(response)


def _form(status: int = 200, message: str | None = None, user_name: str = "") -> tuple[str, int]:
    return render_template("status_login.html", csrf=csrf_token(), message=message, user_name=user_name), status


@blueprint.get("/status/login")
def login_form():  # type: ignore[no-untyped-def]
    if not runtime().config.status.enabled:
        abort(404)
    if current_operator() is not None:
        return redirect(url_for("status.status"), code=303)
    return _form()


@blueprint.post("/status/login")
def login_submit():  # type: ignore[no-untyped-def]
    rt = runtime()
    if not rt.config.status.enabled:
        abort(404)
    if not csrf_ok(request.form.get("csrf")):
        return _form(400, "The form expired: please try again.")
    user_name = request.form.get("username", "")[:256]
    password = request.form.get("password", "")[:4096]
    code = request.form.get("code", "")[:64] or None
    outcome = login(context_for(rt), user_name, password, code, request.remote_addr, channel=CHANNEL,
                    actor=CHANNEL, request_id=g.get("request_id"))
    rt.metrics.logins.labels("ok" if outcome.ok else outcome.code).inc()
    if not outcome.ok:
        message = outcome.message[:1].upper() + outcome.message[1:] + "."
        return _form(outcome.status, message, user_name)
    assert outcome.user_id is not None
    refusal = _operator_refusal(rt, outcome.user_id)
    if refusal is not None:
        log.warning("status page login refused: %s", refusal, extra={"user_id": outcome.user_id,
                                                                      "request_id": g.get("request_id")})
        return _form(403, refusal[:1].upper() + refusal[1:] + ".", user_name)
    with rt.store.read() as db:
        user = db.get(User, outcome.user_id)
        assert user is not None
        name = user.user_name
    if outcome.password_change_required:
        # A temporary password (an admin's reset) opens nothing but the form that replaces it.
        session.clear()
        session[CHANGE_KEY] = {"id": outcome.user_id, "name": name, "exp": _now(rt) + CHANGE_SECONDS}
        return _change_form(200, "Your password is temporary: choose your own before you go on.")
    session.clear()  # a fresh session (and CSRF token) for the logged-in operator
    issued = _now(rt)
    session[SESSION_KEY] = {"id": outcome.user_id, "name": name, "iat": issued,
                            "exp": issued + rt.config.status.session_minutes * 60}
    csrf_token()
    log.info("operator logged in to the status page", extra={"user": name, "request_id": g.get("request_id")})
    return redirect(url_for("status.status"), code=303)


def _change_form(status: int, message: str, problems: list[str] | None = None) -> tuple[str, int]:
    return render_template("status_login.html", csrf=csrf_token(), message=message, change=True,
                           problems=problems or [], user_name=""), status


@blueprint.post("/status/password")
def change_password():  # type: ignore[no-untyped-def]
    """The new password of an operator who logged in with a temporary one: the policy and
    the history apply; then the operator logs in again with it (and the code)."""
    rt = runtime()
    if not rt.config.status.enabled:
        abort(404)
    pending = session.get(CHANGE_KEY)
    if not isinstance(pending, dict) or float(pending.get("exp", 0)) < _now(rt):
        session.pop(CHANGE_KEY, None)
        return _form(400, "The form expired: please log in again.")
    if not csrf_ok(request.form.get("csrf")):
        return _change_form(400, "The form expired: please try again.")
    new, repeat = request.form.get("new_password", "")[:4096], request.form.get("new_password_repeat", "")[:4096]
    if new != repeat:
        return _change_form(400, "The two passwords differ.")
    ctx = context_for(rt)
    try:
        with rt.services.unit(Actor(name=f"user:{pending.get('name')}", channel=CHANNEL,
                                    request_id=g.get("request_id"))) as uow:
            set_new_password(ctx, uow, uow.users.get(str(pending.get("id"))), new)
    except PasswordRejected as exc:
        return _change_form(400, "Choose another password.", exc.in_language("en"))
    except NotFound:
        session.pop(CHANGE_KEY, None)
        return _form(400, "The form expired: please log in again.")
    session.clear()
    return _form(200, "Your password is changed: log in with it.", str(pending.get("name", "")))


def _operator_refusal(rt: Runtime, user_id: str) -> str | None:
    """Why a user whose login succeeded may still not use the page (told only after the
    password and the code were right)."""
    if not may_operate(rt, user_id):
        return (f"this account does not hold the right {OPERATE_RIGHT}: an administrator gives it with "
                "'dirbridge operator add USERNAME'")
    if rt.config.status.require_totp:
        with rt.store.read() as db:
            credential = db.get(TotpCredential, user_id)
            if credential is None or credential.confirmed_at is None:
                return ("the status page needs a second factor: enrol TOTP for this account first, on the server "
                        "with 'dirbridge user totp enrol USERNAME' (it shows a QR code for the app)")
    return None


@blueprint.post("/status/logout")
def logout():  # type: ignore[no-untyped-def]
    """Log out everywhere: every session of this operator issued until now is refused from
    now on, on every browser and replica (a copied cookie too)."""
    if not csrf_ok(request.form.get("csrf")):
        abort(400, description="the form expired or came from elsewhere")
    operator = current_operator()
    if operator is not None:
        rt = runtime()
        with rt.services.unit(Actor(name=CHANNEL, channel=CHANNEL, request_id=g.get("request_id"))) as uow:
            user = uow.users.get(operator.user_id)
            uow.accounts.end_sessions(user)
        log.info("operator logged out of the status page everywhere",
                 extra={"user": operator.user_name, "request_id": g.get("request_id")})
    session.clear()
    return redirect(url_for("status.operator.login_form"), code=303)


def template_values() -> dict[str, Any]:
    """What every logged-in page shows in its header."""
    operator = current_operator()
    return {"operator": operator, "csrf": csrf_token()}

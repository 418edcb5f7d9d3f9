"""The invitation pages: the link from the mail -> choose a password -> (when the
policy asks for it) enrol TOTP -> recovery codes.

The token travels in the query string and in a hidden form field, never in the
path, because access logs record the path. Forms carry a per-session CSRF token;
the session cookie is HttpOnly, SameSite=Strict and Secure behind https. Every
value shown is escaped by Jinja; the QR code is segno's own SVG.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, redirect, render_template, request, session, url_for
from markupsafe import Markup

from bridge.accounts import enrolment, invitations
from bridge.accounts.context import AccountsContext, context_for
from bridge.accounts.errors import InvitationInvalid, PasswordRejected, TotpInvalid
from bridge.accounts.messages import language_for
from bridge.accounts.passwords import enabled_criteria
from bridge.files import private_dir
from bridge.runtime import Runtime
from bridge.services import Actor, ServiceError
from bridge.store.models import User
from bridge.web import runtime
from bridge.web.csrf import csrf_ok, csrf_token

log = logging.getLogger(__name__)
blueprint = Blueprint("invite", __name__, template_folder="templates")

SECRET_FILE = "session.secret"
ENROL_SECONDS = 15 * 60  # how long the TOTP step stays open after the password was set

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Choose your password", "user": "User", "password": "New password",
        "confirm": "Repeat the password", "submit": "Set password", "mismatch": "the two passwords differ",
        "rules": "At least {min_length} characters, with at least {min_criteria} of: {criteria}.",
        "upper": "upper-case letters", "lower": "lower-case letters", "digit": "digits",
        "special": "special characters",
        "totp_title": "Set up the second factor",
        "totp_intro": "Scan the code with an authenticator app (or type the key), then enter the code it shows.",
        "key": "Key", "code": "Code", "totp_submit": "Confirm",
        "codes_title": "Your recovery codes",
        "codes_intro": "Keep these codes somewhere safe. Each one works once, when your device is not at hand. "
                       "They are shown only now.",
        "done_title": "All set", "done": "Your password is set. You can log in now.",
        "error_title": "This link cannot be used", "expired_step": "This step has expired: log in to continue.",
    },
    "de": {
        "title": "Passwort festlegen", "user": "Benutzer", "password": "Neues Passwort",
        "confirm": "Passwort wiederholen", "submit": "Passwort speichern",
        "mismatch": "die beiden Passwörter stimmen nicht überein",
        "rules": "Mindestens {min_length} Zeichen, mit mindestens {min_criteria} von: {criteria}.",
        "upper": "Großbuchstaben", "lower": "Kleinbuchstaben", "digit": "Ziffern", "special": "Sonderzeichen",
        "totp_title": "Zweiten Faktor einrichten",
        "totp_intro": "Scannen Sie den Code mit einer Authenticator-App (oder tippen Sie den Schlüssel ein) und "
                      "geben Sie den angezeigten Code ein.",
        "key": "Schlüssel", "code": "Code", "totp_submit": "Bestätigen",
        "codes_title": "Ihre Wiederherstellungscodes",
        "codes_intro": "Bewahren Sie diese Codes sicher auf. Jeder funktioniert einmal, wenn Ihr Gerät nicht zur "
                       "Hand ist. Sie werden nur jetzt angezeigt.",
        "done_title": "Fertig", "done": "Ihr Passwort ist gespeichert. Sie können sich jetzt anmelden.",
        "error_title": "Dieser Link kann nicht verwendet werden",
        "expired_step": "Dieser Schritt ist abgelaufen: melden Sie sich an, um fortzufahren.",
    },
}


def session_secret(rt: Runtime) -> bytes:
    """``status.session_secret`` when set (needed when several replicas serve the pages);
    else a random secret kept in the data directory, made on first use."""
    configured = rt.config.status.session_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    path = Path(rt.config.data_dir) / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    secret = secrets.token_bytes(32)
    try:
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return bytes.fromhex(path.read_text().strip())
    except OSError as exc:
        log.warning("cannot keep the session secret in %s (%s): sessions end with this process; "
                    "set status.session_secret", path, exc.strerror)
        return secret
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex())
    return secret


def init_app(app: Flask, rt: Runtime) -> None:
    """Register the pages and the session settings they need."""
    app.secret_key = session_secret(rt)
    app.config.update(
        SESSION_COOKIE_NAME="dirbridge_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=(rt.config.server.public_url or "").startswith("https://"),
    )
    app.register_blueprint(blueprint)


@blueprint.after_request
def _headers(response):  # type: ignore[no-untyped-def]
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the link's token must not leak onwards
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                   "form-action 'self'; frame-ancestors 'none'")
    return response


def _check_csrf() -> None:
    if not csrf_ok(request.form.get("csrf")):
        abort(400, description="the form expired or came from elsewhere: open the link again")


def _text(lang: str) -> dict[str, str]:
    return TEXT[lang]


def _lang_of(ctx: AccountsContext, user: User | None) -> str:
    return language_for(user.preferred_language if user else None, ctx.config.invites.default_language)


def password_rules(ctx: AccountsContext, lang: str) -> str:
    """The password policy in words, for every page where a password is chosen."""
    policy = ctx.config.policy.password
    text = _text(lang)
    return text["rules"].format(min_length=policy.min_length, min_criteria=policy.min_criteria,
                                criteria=", ".join(text[c] for c in enabled_criteria(policy)))


def _page(template: str, lang: str, status: int = 200, **values: Any):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    return render_template(template, t=_text(lang), lang=lang, product=ctx.config.invites.product_name,
                           **values), status


def _error(ctx: AccountsContext, exc: InvitationInvalid):  # type: ignore[no-untyped-def]
    lang = ctx.config.invites.default_language
    return _page("invite_error.html", lang, exc.status, message=exc.message, state=exc.state)


def _invitee(ctx: Any, token: str) -> tuple[str, str]:
    """The invited user's name and language; raises InvitationInvalid for a bad link."""
    with ctx.services.unit(Actor(name="invitee", channel="invite-page")) as uow:
        _, user = invitations.check_token(ctx, uow, token)
        return user.user_name, _lang_of(ctx, user)


@blueprint.get("/invite")
def show():  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    token = request.args.get("token", "")
    try:
        user_name, lang = _invitee(ctx, token)
    except InvitationInvalid as exc:
        return _error(ctx, exc)
    return _page("invite_password.html", lang, token=token, user_name=user_name, rules=password_rules(ctx, lang),
                 problems=[], csrf=csrf_token())


@blueprint.post("/invite")
def submit():  # type: ignore[no-untyped-def]
    _check_csrf()
    ctx = context_for(runtime())
    token = request.form.get("token", "")
    password, repeated = request.form.get("password", ""), request.form.get("password_confirm", "")
    try:
        user_name, lang = _invitee(ctx, token)
    except InvitationInvalid as exc:
        return _error(ctx, exc)
    problems: list[str] = []
    if password != repeated:
        problems = [_text(lang)["mismatch"]]
    else:
        try:
            user = invitations.accept(ctx, token, password, actor_channel="invite-page")
        except InvitationInvalid as exc:
            return _error(ctx, exc)
        except PasswordRejected as exc:
            problems = exc.in_language(lang)
    if problems:
        return _page("invite_password.html", lang, 400, token=token, user_name=user_name,
                     rules=password_rules(ctx, lang), problems=problems, csrf=csrf_token())
    if enrolment.required(ctx, user):
        session["enrol"] = {"user_id": user.id, "until": time.time() + ENROL_SECONDS, "lang": lang}
        return redirect(url_for("invite.totp"), code=303)
    return _page("invite_done.html", lang)


def _enrolling() -> tuple[str, str] | None:
    pending = session.get("enrol")
    if not isinstance(pending, dict) or pending.get("until", 0) < time.time():
        session.pop("enrol", None)
        return None
    return str(pending["user_id"]), str(pending.get("lang", "en"))


def _step_expired(ctx: AccountsContext):  # type: ignore[no-untyped-def]
    """The TOTP step opened without (or after) the password step of this session."""
    lang = ctx.config.invites.default_language
    return _page("invite_error.html", lang, 410, message=_text(lang)["expired_step"], state="expired")


@blueprint.get("/invite/totp")
def totp():  # type: ignore[no-untyped-def]
    pending = _enrolling()
    ctx = context_for(runtime())
    if pending is None:
        return _step_expired(ctx)
    user_id, lang = pending
    with ctx.services.unit(Actor(name="invitee", channel="invite-page")) as uow:
        user = uow.users.get(user_id)
        if enrolment.enrolled(uow, user):
            return _page("invite_done.html", lang)
        started = enrolment.start(ctx, uow, user)
        user_name = user.user_name
    return _page("invite_totp.html", lang, user_name=user_name, secret=started.secret,
                 qr=Markup(started.qr_svg), problems=[], csrf=csrf_token())  # segno's SVG: no user input


@blueprint.post("/invite/totp")
def totp_confirm():  # type: ignore[no-untyped-def]
    _check_csrf()
    pending = _enrolling()
    ctx = context_for(runtime())
    if pending is None:
        return _step_expired(ctx)
    user_id, lang = pending
    try:
        with ctx.services.unit(Actor(name="invitee", channel="invite-page")) as uow:
            codes = enrolment.confirm(ctx, uow, uow.users.get(user_id), request.form.get("code", ""))
    except TotpInvalid as exc:
        with ctx.services.store.read() as read:
            from bridge.accounts.totp import provisioning_uri, qr_svg
            from bridge.store.models import TotpCredential

            credential = read.get(TotpCredential, user_id)
            user = read.get(User, user_id)
            assert credential is not None and user is not None
            secret, user_name = ctx.vault.open(credential.secret), user.user_name
            uri = provisioning_uri(secret, user_name, ctx.config.policy.totp.issuer)
        return _page("invite_totp.html", lang, 400, user_name=user_name, secret=secret, qr=Markup(qr_svg(uri)),
                     problems=[exc.message], csrf=csrf_token())
    except ServiceError as exc:
        return _page("invite_error.html", lang, exc.status, message=exc.message, state="error")
    session.pop("enrol", None)
    return _page("invite_codes.html", lang, codes=codes)

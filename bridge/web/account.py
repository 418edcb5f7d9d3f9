"""The users' own pages under /account: log in, profile, a new e-mail address, a new
password, TOTP and recovery codes, and a forgotten password.

They follow the invitation pages: no JavaScript, a strict CSP, CSRF tokens in every
form, tokens of mailed links in the query string and a hidden field (never the path),
English and German. The login is the portal's (bridge.accounts.login: lockout, IP
allow-list, directory binds, TOTP); the session (``account`` in the signed cookie of
bridge.web.invite) holds the user's id, when it was issued and when it ends, and every
request checks it again like an operator session: a logout, a password change, a lock
or a deactivation ends it. A link from a mail is opened by GET (which changes nothing:
mail scanners fetch links) and used by the form it shows.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, g, redirect, render_template, request, session, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response as BaseResponse

from bridge.accounts import enrolment, selfservice
from bridge.accounts.context import AccountsContext, context_for
from bridge.accounts.errors import LinkInvalid, PasswordRejected, TooManyRequests, TotpInvalid
from bridge.accounts.login import login
from bridge.accounts.messages import language_for
from bridge.runtime import Runtime
from bridge.services import Actor, ServiceError
from bridge.services.accounts import is_directory_user
from bridge.services.errors import NotFound
from bridge.store.models import User
from bridge.web import runtime
from bridge.web.account_text import TEXT
from bridge.web.csrf import csrf_ok, csrf_token
from bridge.web.invite import password_rules
from bridge.web.operator import security_headers, session_ended

log = logging.getLogger(__name__)
blueprint = Blueprint("account", __name__, template_folder="templates", url_prefix="/account")

SESSION_KEY = "account"
CHANNEL = "account-page"
MAX_FIELD = 4096


@dataclass(frozen=True)
class AccountSession:
    user_id: str
    user_name: str
    issued_at: float
    expires_at: float
    must_change: bool


@blueprint.before_request
def _enabled() -> Any:
    if not runtime().config.self_service.enabled:
        abort(404)
    if any("\x00" in value for value in (*request.form.values(), *request.args.values())):
        # no field may hold it (PostgreSQL refuses it in text): a clear 400, as the API's 422
        return _page(_browser_language(), "message", 400, message=TEXT[_browser_language()]["nul"])
    return None


@blueprint.after_request
def _headers(response: Response) -> Response:
    return security_headers(response)


def _ctx() -> AccountsContext:
    return context_for(runtime())


def _now(rt: Runtime) -> float:
    return rt.clock().timestamp()


def _browser_language() -> str:
    default = runtime().config.invites.default_language
    return request.accept_languages.best_match(["de", "en"]) or default


def _language_of(user: User | None) -> str:
    if user is None:
        return _browser_language()
    return language_for(user.preferred_language, _browser_language())


def _page(lang: str, page: str, status: int = 200, **values: Any) -> tuple[str, int]:
    ctx = _ctx()
    values.setdefault("problems", [])
    values.setdefault("notice", None)
    return render_template("account_page.html", t=TEXT[lang], lang=lang, page=page, csrf=csrf_token(),
                           product=ctx.config.invites.product_name, **values), status


def _form_ok() -> bool:
    return csrf_ok(request.form.get("csrf"))


def _field(name: str) -> str:
    return request.form.get(name, "")[:MAX_FIELD]


def _actor(current: AccountSession) -> Actor:
    return Actor(name=f"user:{current.user_name}", channel=CHANNEL, request_id=g.get("request_id"))


# -- the session ----------------------------------------------------------------------


def current_account() -> AccountSession | None:
    """This request's logged-in user, or None (no session, ended, user locked or gone)."""
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    rt = runtime()
    try:
        found = AccountSession(str(data["id"]), str(data["name"]), float(data["iat"]), float(data["exp"]),
                               bool(data.get("must_change", False)))
    except (KeyError, TypeError, ValueError):
        session.pop(SESSION_KEY, None)
        return None
    if found.expires_at < _now(rt) or session_ended(rt, found.user_id, found.issued_at):
        session.pop(SESSION_KEY, None)
        return None
    with rt.store.read() as db:
        user = db.get(User, found.user_id)
        if user is None or not user.active:
            session.pop(SESSION_KEY, None)
            return None
    return found


def _start_session(rt: Runtime, user: User, must_change: bool) -> None:
    session.clear()  # a fresh session and CSRF token for the logged-in user
    issued = _now(rt)
    session[SESSION_KEY] = {"id": user.id, "name": user.user_name, "iat": issued, "must_change": must_change,
                            "exp": issued + rt.config.self_service.session_minutes * 60}
    csrf_token()


def _user(current: AccountSession) -> User:
    with runtime().store.read() as db:
        user = db.get(User, current.user_id)
        if user is None:
            raise NotFound("the account is gone")
        db.expunge(user)
        return user


def _logged_in() -> tuple[AccountSession, User] | BaseResponse:
    """The session and its user, or a redirect to the login (or to the password form while
    the password is temporary)."""
    current = current_account()
    if current is None:
        return redirect(url_for("account.login_form"), code=303)
    if current.must_change and request.endpoint not in ("account.password_form", "account.password_submit",
                                                        "account.logout"):
        return redirect(url_for("account.password_form"), code=303)
    return current, _user(current)


def logged_in(view: Callable[[AccountSession, User], Any]) -> Callable[[], Any]:
    """A page of the logged-in user: the view gets the session and its user; without a
    session the browser goes to the login (while the password is temporary, to its form)."""

    @functools.wraps(view)
    def wrapped() -> Any:
        found = _logged_in()
        if isinstance(found, BaseResponse):
            return found
        return view(*found)

    return wrapped


# -- log in and out ---------------------------------------------------------------------


@blueprint.get("/login")
def login_form():  # type: ignore[no-untyped-def]
    if current_account() is not None:
        return redirect(url_for("account.home"), code=303)
    return _page(_browser_language(), "login", user_name="")


@blueprint.post("/login")
def login_submit():  # type: ignore[no-untyped-def]
    rt = runtime()
    lang = _browser_language()
    user_name = _field("username")[:256]
    if not _form_ok():
        return _page(lang, "login", 400, user_name=user_name, problems=[TEXT[lang]["form_expired"]])
    outcome = login(_ctx(), user_name, _field("password"), _field("code")[:64] or None, request.remote_addr,
                    channel=CHANNEL, actor=CHANNEL, request_id=g.get("request_id"))
    rt.metrics.logins.labels("ok" if outcome.ok else outcome.code).inc()
    if not outcome.ok:
        message = outcome.message[:1].upper() + outcome.message[1:] + "."
        return _page(lang, "login", outcome.status, user_name=user_name, problems=[message])
    with rt.store.read() as db:
        user = db.get(User, outcome.user_id)
        assert user is not None
        db.expunge(user)
    _start_session(rt, user, outcome.password_change_required)
    if outcome.password_change_required:
        return redirect(url_for("account.password_form"), code=303)
    if outcome.totp_enrolment_required:
        return redirect(url_for("account.totp_form"), code=303)
    return redirect(url_for("account.home"), code=303)


@blueprint.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    """Log out everywhere: every session of this user issued until now ends."""
    if not _form_ok():
        abort(400, description="the form expired or came from elsewhere")
    current = current_account()
    if current is not None:
        with runtime().services.unit(_actor(current)) as uow:
            uow.accounts.end_sessions(uow.users.get(current.user_id))
    session.clear()
    return redirect(url_for("account.login_form"), code=303)


# -- the profile and the e-mail address ---------------------------------------------------


def _home(user: User, status: int = 200, **values: Any) -> tuple[str, int]:
    lang = _language_of(user)
    with runtime().store.read() as db:
        from bridge.store.models import TotpCredential

        credential = db.get(TotpCredential, user.id)
        enrolled = credential is not None and credential.confirmed_at is not None
    return _page(lang, "home", status, user=user, owned=user.source != "local", enrolled=enrolled, **values)


@blueprint.get("")
@logged_in
def home(current: AccountSession, user: User):  # type: ignore[no-untyped-def]
    return _home(user)


@blueprint.post("/profile")
@logged_in
def profile_submit(current: AccountSession, user: User):  # type: ignore[no-untyped-def]
    lang = _language_of(user)
    if not _form_ok():
        return _home(user, 400, problems=[TEXT[lang]["form_expired"]])
    changes = {name: (_field(name).strip() or None) for name in selfservice.PROFILE_FIELDS if name in request.form}
    try:
        with runtime().services.unit(_actor(current)) as uow:
            selfservice.update_profile(_ctx(), uow, uow.users.get(current.user_id), changes)
    except ServiceError as exc:
        return _home(user, exc.status, problems=[exc.message])
    user = _user(current)
    return _home(user, notice=TEXT[_language_of(user)]["saved"])


@blueprint.post("/email")
@logged_in
def email_submit(current: AccountSession, user: User):  # type: ignore[no-untyped-def]
    """A new address, the current password first: a session left open must not be enough
    to move the account's mail (and so its password resets) elsewhere."""
    lang = _language_of(user)
    if not _form_ok():
        return _home(user, 400, problems=[TEXT[lang]["form_expired"]])
    refused = _current_password_refused(user)
    if refused is not None:
        return _home(user, refused[0], problems=[refused[1]])
    try:
        asked = selfservice.request_email_change(_ctx(), current.user_id, _field("email")[:320], _actor(current))
    except TooManyRequests as exc:
        page = _home(user, 429, problems=[exc.message])
        return page[0], 429, {"Retry-After": str(exc.retry_after)}
    except ServiceError as exc:
        return _home(user, exc.status, problems=[exc.message])
    return _home(user, notice=TEXT[lang]["email_sent"].format(address=asked.new_email))


def _current_password_refused(user: User) -> tuple[int, str] | None:
    """None when the form's ``current_password`` is the user's; else (status, message).
    Checked as a login is (bridge.accounts.login): its failures count towards the lockout
    like any guess, so a stolen session cannot try passwords faster than a login can."""
    outcome = login(_ctx(), user.user_name, _field("current_password"), None, request.remote_addr,
                    channel=CHANNEL, actor=CHANNEL, request_id=g.get("request_id"))
    if outcome.ok or outcome.code == "totpRequired":  # the code was asked at this session's login
        return None
    return outcome.status, outcome.message[:1].upper() + outcome.message[1:] + "."


@blueprint.get("/email")
def email_link():  # type: ignore[no-untyped-def]
    """The link from the mail: shows what it would do; the button confirms (POST)."""
    ctx = _ctx()
    token = request.args.get("token", "")[:256]
    try:
        with ctx.services.unit(Actor(name="email-link", channel=CHANNEL)) as uow:
            link, user = selfservice.check_link(ctx, uow, token, selfservice.EMAIL_CHANGE)
            lang, address, user_name = _language_of(user), link.new_email, user.user_name
    except LinkInvalid as exc:
        return _page(_browser_language(), "link_error", exc.status, message=exc.message)
    return _page(lang, "email_confirm", token=token, address=address, user_name=user_name)


@blueprint.post("/email/confirm")
def email_confirm():  # type: ignore[no-untyped-def]
    lang = _browser_language()
    if not _form_ok():
        return _page(lang, "link_error", 400, message=TEXT[lang]["form_expired"])
    try:
        user = selfservice.confirm_email_change(_ctx(), _field("token")[:256], CHANNEL)
    except LinkInvalid as exc:
        return _page(lang, "link_error", exc.status, message=exc.message)
    except ServiceError as exc:
        return _page(lang, "link_error", exc.status, message=exc.message)
    lang = _language_of(user)
    return _page(lang, "message", message=TEXT[lang]["email_changed"].format(address=user.email))


# -- a new password ----------------------------------------------------------------------


def _password_page(user: User, status: int = 200, **values: Any) -> tuple[str, int]:
    lang = _language_of(user)
    rules = TEXT[lang]["directory_rules"] if is_directory_user(user) else password_rules(_ctx(), lang)
    return _page(lang, "password", status, user=user, rules=rules, **values)


@blueprint.get("/password")
@logged_in
def password_form(current: AccountSession, user: User):  # type: ignore[no-untyped-def]
    notice = TEXT[_language_of(user)]["temporary"] if current.must_change else None
    return _password_page(user, notice=notice)


@blueprint.post("/password")
@logged_in
def password_submit(current: AccountSession, user: User):  # type: ignore[no-untyped-def]
    """The current password first (through the login, so its failures count towards the
    lockout like any guess), then the new one by the policy, or by the directory's."""
    lang = _language_of(user)
    if not _form_ok():
        return _password_page(user, 400, problems=[TEXT[lang]["form_expired"]])
    new, repeat = _field("new_password"), _field("new_password_repeat")
    if new != repeat:
        return _password_page(user, 400, problems=[TEXT[lang]["mismatch"]])
    ctx = _ctx()
    refused = _current_password_refused(user)
    if refused is not None:
        return _password_page(user, refused[0], problems=[refused[1]])
    try:
        selfservice.change_password(ctx, user, _field("current_password"), new, _actor(current))
    except PasswordRejected as exc:
        return _password_page(user, 400, problems=exc.in_language(lang))
    except ServiceError as exc:
        return _password_page(user, exc.status, problems=[exc.message])
    _start_session(runtime(), _user(current), must_change=False)  # the change ended every earlier session
    return _home(_user(current), notice=TEXT[lang]["changed"])


# -- TOTP and recovery codes -----------------------------------------------------------------


def _codes_left(user_id: str) -> int:
    from sqlalchemy import func, select

    from bridge.store.models import RecoveryCode

    with runtime().store.read() as db:
        return db.scalar(select(func.count()).select_from(RecoveryCode).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0


@blueprint.get("/totp")
@logged_in
def totp_form(current: AccountSession, user: User):  # type: ignore[no-untyped-def]
    """Set TOTP up (a fresh secret each time the page opens), or show that it is."""
    ctx = _ctx()
    lang = _language_of(user)
    with ctx.services.unit(_actor(current)) as uow:
        row = uow.users.get(current.user_id)
        if enrolment.enrolled(uow, row):
            return _page(lang, "totp_on", left=_codes_left(row.id))
        started = enrolment.start(ctx, uow, row)
    notice = TEXT[lang]["totp_required"] if enrolment.required(ctx, user) else None
    return _page(lang, "totp", user=user, secret=started.secret, qr=Markup(started.qr_svg),  # segno's SVG
                 notice=notice)


@blueprint.post("/totp")
@logged_in
def totp_submit(current: AccountSession, user: User):  # type: ignore[no-untyped-def]
    lang = _language_of(user)
    if not _form_ok():
        return redirect(url_for("account.totp_form"), code=303)
    ctx = _ctx()
    refused = _current_password_refused(user)
    if refused is not None:  # a second factor set up from a stolen session would lock the user out
        return _totp_retry(ctx, current, user, refused[1], refused[0])
    try:
        with ctx.services.unit(_actor(current)) as uow:
            codes = enrolment.confirm(ctx, uow, uow.users.get(current.user_id), _field("code")[:64])
    except TotpInvalid as exc:
        return _totp_retry(ctx, current, user, exc.message)
    except ServiceError as exc:
        return _page(lang, "message", exc.status, message=exc.message)
    return _page(lang, "codes", codes=codes)


def _totp_retry(ctx: AccountsContext, current: AccountSession, user: User, problem: str,
                status: int = 400) -> tuple[str, int]:
    """The same pending secret again, with the problem (a new one would void the app's entry)."""
    from bridge.accounts.totp import provisioning_uri, qr_svg
    from bridge.store.models import TotpCredential

    with ctx.services.store.read() as db:
        credential = db.get(TotpCredential, current.user_id)
        if credential is None or credential.confirmed_at is not None:
            return _page(_language_of(user), "message", 409, message=problem)
        secret = ctx.vault.open(credential.secret)
    uri = provisioning_uri(secret, user.user_name, ctx.config.policy.totp.issuer)
    return _page(_language_of(user), "totp", status, user=user, secret=secret, qr=Markup(qr_svg(uri)),
                 problems=[problem])


@blueprint.post("/totp/recovery-codes")
@logged_in
def recovery_codes(current: AccountSession, user: User):  # type: ignore[no-untyped-def]
    lang = _language_of(user)
    if not _form_ok():
        return redirect(url_for("account.totp_form"), code=303)
    refused = _current_password_refused(user)
    if refused is not None:
        return _page(lang, "totp_on", refused[0], left=_codes_left(current.user_id), problems=[refused[1]])
    try:
        with runtime().services.unit(_actor(current)) as uow:
            codes = enrolment.new_recovery_codes(uow, uow.users.get(current.user_id))
    except ServiceError as exc:
        return _page(lang, "message", exc.status, message=exc.message)
    return _page(lang, "codes", codes=codes)


# -- a forgotten password -------------------------------------------------------------------


@blueprint.get("/forgot")
def forgot_form():  # type: ignore[no-untyped-def]
    return _page(_browser_language(), "forgot")


@blueprint.post("/forgot")
def forgot_submit():  # type: ignore[no-untyped-def]
    """The same answer whether the name or address is known or not (bridge.accounts.selfservice)."""
    lang = _browser_language()
    if not _form_ok():
        return _page(lang, "forgot", 400, problems=[TEXT[lang]["form_expired"]])
    ctx = _ctx()
    try:
        selfservice.request_password_reset(ctx, _field("login")[:320], request.remote_addr,
                                           Actor(name="reset-request", channel=CHANNEL,
                                                 request_id=g.get("request_id")))
    except TooManyRequests as exc:
        page = _page(lang, "forgot", 429, problems=[exc.message])
        return page[0], 429, {"Retry-After": str(exc.retry_after)}
    except ServiceError as exc:
        return _page(lang, "forgot", exc.status, problems=[exc.message])
    minutes = ctx.config.self_service.reset_minutes
    return _page(lang, "message", message=TEXT[lang]["forgot_sent"].format(minutes=minutes))


@blueprint.get("/reset")
def reset_form():  # type: ignore[no-untyped-def]
    ctx = _ctx()
    token = request.args.get("token", "")[:256]
    try:
        user_name, lang = selfservice.reset_user_name(ctx, token)
    except LinkInvalid as exc:
        return _page(_browser_language(), "link_error", exc.status, message=exc.message)
    return _page(lang, "reset", token=token, user_name=user_name, rules=password_rules(ctx, lang))


@blueprint.post("/reset")
def reset_submit():  # type: ignore[no-untyped-def]
    ctx = _ctx()
    token = _field("token")[:256]
    try:
        user_name, lang = selfservice.reset_user_name(ctx, token)
    except LinkInvalid as exc:
        return _page(_browser_language(), "link_error", exc.status, message=exc.message)
    values = {"token": token, "user_name": user_name, "rules": password_rules(ctx, lang)}
    if not _form_ok():
        return _page(lang, "reset", 400, problems=[TEXT[lang]["form_expired"]], **values)
    new, repeat = _field("new_password"), _field("new_password_repeat")
    if new != repeat:
        return _page(lang, "reset", 400, problems=[TEXT[lang]["mismatch"]], **values)
    try:
        selfservice.complete_password_reset(ctx, token, new, CHANNEL)
    except LinkInvalid as exc:
        return _page(lang, "link_error", exc.status, message=exc.message)
    except PasswordRejected as exc:
        return _page(lang, "reset", 400, problems=exc.in_language(lang), **values)
    except ServiceError as exc:
        return _page(lang, "reset", exc.status, problems=[exc.message], **values)
    session.pop(SESSION_KEY, None)
    return _page(lang, "message", message=TEXT[lang]["reset_done"], login_link=True)

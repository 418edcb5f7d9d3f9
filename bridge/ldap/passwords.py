"""Directory users' passwords, changed in the directory: a user's own change (bound as
the user, with the old password) and an admin's reset (with the source's bind account).

The directory's policy decides; its refusal comes back as ``DirectoryPasswordRejected``
with a ``code`` the caller can act on and a ``message`` a user can read, built from
what the directory said: the password policy response control (draft-behera-ldap-
password-policy, OpenLDAP's ppolicy overlay, 389-DS), the diagnostic message (389-DS's
"invalid password syntax - ...", Samba's "check_password_restrictions: ...") or Active
Directory's error code at the head of that message (``0000052D``, ``00000056``).

* openldap, 389ds, freeipa: the Password Modify extended operation (RFC 3062) with the
  password policy request control. A change goes over the user's own connection without
  a target identity, so it changes the password of whoever the bind authenticated.
* active_directory: ``unicodePwd`` (the password in double quotes, UTF-16-LE): a change is
  one modify deleting the old value and adding the new, bound as the user; a reset
  replaces it with the bind account. AD takes neither over an unencrypted connection,
  and 389-DS (FreeIPA) no Password Modify operation: both are refused before sending.

Passwords go through SASLprep (RFC 4013) as ldap3 prepares a bind's: what is stored is
what a later login sends. A password that SASLprep refuses (control characters) or an
empty one (an empty bind is an unauthenticated bind) is refused before any network use.
No password is logged or put in a message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPInvalidDnError, LDAPSASLPrepError
from ldap3.protocol.sasl.sasl import sasl_prep
from ldap3.utils.dn import parse_dn

from bridge.config import LdapSourceConfig
from bridge.ldap.auth import BindRefused, DirectoryUnavailable, bind_as, unbind_quietly

log = logging.getLogger(__name__)

PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"
#: the request control: no value; not critical (a directory without it changes the password anyway)
PPOLICY_REQUEST = (PPOLICY_OID, False, None)

#: the codes of DirectoryPasswordRejected
CODES = ("wrong_password", "too_short", "too_young", "in_history", "insufficient_quality", "must_supply_old",
         "not_allowed", "policy")

#: what a user reads for each code when the directory gave no more precise words
PLAIN: Mapping[str, str] = {
    "wrong_password": "The current password is not correct.",
    "too_short": "The new password is too short for the directory's password policy.",
    "too_young": "The password was changed too recently to be changed again yet.",
    "in_history": "The new password was used before: choose one that was not used recently.",
    "insufficient_quality": "The new password does not meet the directory's password quality rules.",
    "must_supply_old": "The directory needs the current password to change it.",
    "not_allowed": "The directory does not allow this password change.",
    "policy": "The directory refused the new password.",
}

#: ppolicy's PasswordPolicyResponseValue error -> (code, what a user reads)
PPOLICY_ERRORS: Mapping[int, tuple[str, str]] = {
    0: ("policy", "The password has expired."),
    1: ("policy", "The account is locked in the directory."),
    2: ("policy", "The password was reset by an administrator and must be changed first."),
    3: ("not_allowed", "The directory does not let users change their own password."),
    4: ("must_supply_old", PLAIN["must_supply_old"]),
    5: ("insufficient_quality", PLAIN["insufficient_quality"]),
    6: ("too_short", PLAIN["too_short"]),
    7: ("too_young", PLAIN["too_young"]),
    8: ("in_history", PLAIN["in_history"]),
}

#: words of diagnostic messages (389-DS, Samba, OpenLDAP) -> code; the first that matches
_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), c) for p, c in (
    (r"old password.*(doesn't|does not|not) match|old password.*(wrong|incorrect|invalid)", "wrong_password"),
    (r"provide the old password|supply.*old password|old password.*(required|needed)", "must_supply_old"),
    (r"too short|at least \d+ (characters|chars)", "too_short"),
    (r"history|already used|previous password", "in_history"),
    (r"too young|minimum age", "too_young"),
    (r"complexity|quality|syntax|trivial|categor|token|must contain|at least \d+", "insufficient_quality"),
    (r"changes disabled|can't be changed|cannot be changed|not allowed|may not change", "not_allowed"),
))

#: Active Directory's error at the head of the diagnostic message (a Win32 code in hex)
_AD_ERROR = re.compile(r"^\s*([0-9A-Fa-f]{8}):")
_AD_CODES: Mapping[int, str] = {0x56: "wrong_password", 0x52D: "policy", 0x5: "not_allowed"}
#: words of a refused AD bind: "data 532" expired, "773" must change, "775" locked, "533" disabled
_AD_BIND_DATA = re.compile(r"\bdata (532|533|701|773|775)\b")

#: what a directory answers when it is not there to decide
_UNAVAILABLE = {"busy", "unavailable", "timeLimitExceeded"}


class DirectoryPasswordRejected(Exception):
    """The directory refused the new password (policy) or the old one (wrong)."""

    code: str  # one of CODES
    message: str  # plain English for a user, from the directory's own answer; never a password

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code if code in CODES else "policy"
        self.message = message or PLAIN[self.code]
        super().__init__(self.message)


def change_own_password(source: LdapSourceConfig, user_dn: str, old_password: str, new_password: str) -> None:
    """Bind as the user (over the source's TLS settings, login_timeout) and change the password as the user;
    raises DirectoryPasswordRejected or DirectoryUnavailable (from bridge.ldap.auth)."""
    if not source.passwords.change:
        raise DirectoryPasswordRejected("not_allowed", "Password changes are turned off for this directory.")
    if not user_dn or not _is_dn(user_dn):
        raise DirectoryPasswordRejected("wrong_password")
    if not old_password:
        raise DirectoryPasswordRejected("must_supply_old", "The current password is needed to change it.")
    try:
        old = sasl_prep(old_password)
    except LDAPSASLPrepError:  # no bind through ldap3 can send it: it is not the password
        raise DirectoryPasswordRejected("wrong_password") from None
    new = _new_password(new_password)
    _require_encryption(source)
    try:
        conn = bind_as(source, user_dn, old, controls=[PPOLICY_REQUEST], read_only=False)
    except BindRefused as refused:
        raise _bind_refused(source, refused.result, user_dn) from None
    try:
        if source.preset == "active_directory":
            conn.modify(user_dn, {"unicodePwd": [(ldap3.MODIFY_DELETE, [_unicode_pwd(old)]),
                                                 (ldap3.MODIFY_ADD, [_unicode_pwd(new)])]})
        else:  # no user identity: the exop changes the password of the bound user, whatever the DN said
            conn.extend.standard.modify_password(old_password=old, new_password=new, controls=[PPOLICY_REQUEST])
        _outcome(source, conn.result, "change", user_dn, (old_password, new_password, old, new))
    except LDAPException as exc:
        raise DirectoryUnavailable(f"{source.name}: {type(exc).__name__}") from None
    finally:
        unbind_quietly(conn)


def reset_password(source: LdapSourceConfig, user_dn: str, new_password: str) -> None:
    """Set a new password with the source's service bind account (an admin reset, no old password)."""
    if not source.passwords.reset:
        raise DirectoryPasswordRejected("not_allowed", "Password resets are turned off for this directory.")
    if not user_dn or not _is_dn(user_dn):
        raise DirectoryPasswordRejected("policy", "The directory has no such user.")
    new = _new_password(new_password)
    _require_encryption(source)
    if not source.bind_dn or source.bind_password is None:
        raise DirectoryPasswordRejected("not_allowed", "This directory is read without a bind account: "
                                        "it cannot reset passwords.")
    try:
        conn = bind_as(source, source.bind_dn, source.bind_password.get_secret_value(), controls=[PPOLICY_REQUEST],
                       read_only=False)
    except BindRefused as refused:  # a configuration to fix, not the user's doing
        raise DirectoryUnavailable(f"{source.name}: the directory refused the bind of bind_dn "
                                   f"({refused.result.get('description')})") from None
    try:
        if source.preset == "active_directory":
            conn.modify(user_dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [_unicode_pwd(new)])]})
        else:
            conn.extend.standard.modify_password(user=user_dn, new_password=new, controls=[PPOLICY_REQUEST])
        _outcome(source, conn.result, "reset", user_dn, (new_password, new))
    except LDAPException as exc:
        raise DirectoryUnavailable(f"{source.name}: {type(exc).__name__}") from None
    finally:
        unbind_quietly(conn)


# -- before the network --------------------------------------------------------------


def _is_dn(dn: str) -> bool:
    try:
        parse_dn(dn)
    except (LDAPInvalidDnError, ValueError, IndexError):
        return False
    return True


def _new_password(password: str) -> str:
    if not password:
        raise DirectoryPasswordRejected("too_short", "The new password is empty.")
    try:
        return str(sasl_prep(password))
    except LDAPSASLPrepError:
        raise DirectoryPasswordRejected(
            "insufficient_quality", "The new password holds a character a password cannot have (a control "
            "character, a private-use character or a non-character).") from None


#: presets whose directories change passwords over an encrypted connection only: AD takes no
#: unicodePwd write in clear, 389-DS (and so FreeIPA) no Password Modify operation
ENCRYPTED_ONLY = {"active_directory": "Active Directory", "389ds": "389 Directory Server", "freeipa": "FreeIPA"}


def _require_encryption(source: LdapSourceConfig) -> None:
    if source.preset in ENCRYPTED_ONLY and source.tls.mode == "none":
        raise DirectoryPasswordRejected(
            "not_allowed", f"{ENCRYPTED_ONLY[source.preset]} changes passwords over an encrypted connection only, "
            "and this directory is reached without TLS (tls.mode = \"none\"): use ldaps or StartTLS.")


def _unicode_pwd(password: str) -> bytes:
    return f'"{password}"'.encode("utf-16-le")


# -- the network ---------------------------------------------------------------------


def _bind_refused(source: LdapSourceConfig, result: Mapping[str, Any], user_dn: str) -> Exception:
    description = str(result.get("description") or "")
    if description in _UNAVAILABLE:
        return DirectoryUnavailable(f"{source.name}: {description}")
    error = _ppolicy_error(result)
    if error in (0, 1, 2):  # expired, locked, reset: the directory said which (ppolicy)
        code, text = PPOLICY_ERRORS[error]
        return DirectoryPasswordRejected(code, text)
    found = _AD_BIND_DATA.search(str(result.get("message") or ""))
    if found:  # Active Directory tells why a right password was refused
        text = {"532": "The password has expired: an administrator must reset it.",
                "773": "The password must be reset by an administrator first.",
                "775": "The account is locked in the directory.",
                "533": "The account is disabled in the directory.",
                "701": "The account has expired in the directory."}[found.group(1)]
        return DirectoryPasswordRejected("policy", text)
    if description not in ("invalidCredentials", "invalidDNSyntax", "noSuchObject"):
        log.info("a password change of %s in %s: the bind was refused: %s", user_dn, source.name, description,
                 extra={"source": source.name})
    return DirectoryPasswordRejected("wrong_password")


# -- the answer ----------------------------------------------------------------------


def _outcome(source: LdapSourceConfig, result: Mapping[str, Any], what: str, user_dn: str,
             passwords: tuple[str, ...]) -> None:
    """Nothing when the directory did it; else the refusal, as DirectoryPasswordRejected."""
    if result.get("result") == 0:
        log.info("password %s of %s in %s", what, user_dn, source.name, extra={"source": source.name})
        return
    description = str(result.get("description") or "")
    if description in _UNAVAILABLE:
        raise DirectoryUnavailable(f"{source.name}: {description}")
    rejected = rejection(result, passwords, active_directory=source.preset == "active_directory")
    log.info("password %s of %s in %s refused by the directory: %s (%s)", what, user_dn, source.name,
             rejected.code, description, extra={"source": source.name})
    raise rejected


def rejection(result: Mapping[str, Any], passwords: tuple[str, ...] = (), *,
              active_directory: bool = False) -> DirectoryPasswordRejected:
    """What a refused change or reset means, from ldap3's ``result`` (its controls, its
    diagnostic message, its code). ``passwords`` never appear in the message."""
    diagnostic = str(result.get("message") or "")
    detail = _detail(diagnostic, passwords)
    error = _ppolicy_error(result)
    if error is not None and error != 5:  # precise: the control names the rule
        code, text = PPOLICY_ERRORS.get(error, ("policy", PLAIN["policy"]))
        return DirectoryPasswordRejected(code, detail or text)
    worded = next((c for p, c in _WORDS if p.search(diagnostic)), None)
    if error == 5:  # insufficient quality: 389-DS says so for its length rule as well
        return DirectoryPasswordRejected(worded or "insufficient_quality", detail or None)
    ad = _AD_ERROR.match(diagnostic) if active_directory else None
    if ad:
        code = _AD_CODES.get(int(ad.group(1), 16), "policy")
        if code == "policy":
            return DirectoryPasswordRejected(worded or "policy", detail or (
                "The new password does not meet the directory's rules for length, complexity or history "
                "(or the password was changed too recently)."))
        return DirectoryPasswordRejected(code, detail or None)
    if worded:
        return DirectoryPasswordRejected(worded, detail or None)
    description = str(result.get("description") or "")
    if description == "insufficientAccessRights":
        return DirectoryPasswordRejected("not_allowed", "The directory does not give the right to set this "
                                         "password (its access rules).")
    if description == "confidentialityRequired":
        return DirectoryPasswordRejected("not_allowed", "The directory changes passwords over an encrypted "
                                         "connection only (set tls.mode to ldaps or starttls).")
    if description == "noSuchObject":
        return DirectoryPasswordRejected("policy", "The directory has no such user.")
    said = "" if _AD_ERROR.match(diagnostic) else _sentence(diagnostic, passwords)  # Windows' words: no help
    reason = f"{PLAIN['policy'][:-1]} ({description or 'no reason given'})."
    return DirectoryPasswordRejected("policy", detail or said or reason)


def _ppolicy_error(result: Mapping[str, Any]) -> int | None:
    controls = result.get("controls") or {}
    control = controls.get(PPOLICY_OID) if isinstance(controls, Mapping) else None
    value = control.get("value") if isinstance(control, Mapping) else None
    return ppolicy_response_error(value) if isinstance(value, bytes) else None


def ppolicy_response_error(value: bytes) -> int | None:
    """The ``error`` of a PasswordPolicyResponseValue (BER), or None when it has none:
    SEQUENCE { warning [0] CHOICE {...} OPTIONAL, error [1] ENUMERATED OPTIONAL }."""
    try:
        tag, body, _ = _tlv(value, 0)
        if tag != 0x30:
            return None
        at = 0
        while at < len(body):
            tag, content, at = _tlv(body, at)
            if tag == 0x81 and content:  # [1] IMPLICIT ENUMERATED
                return int.from_bytes(content, "big", signed=True)
    except (IndexError, ValueError):
        return None
    return None


def _tlv(data: bytes, at: int) -> tuple[int, bytes, int]:
    """One BER element at ``at``: (tag, content, where the next starts)."""
    tag = data[at]
    length = data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported BER length")
        length = int.from_bytes(data[at:at + count], "big")
        at += count
    end = at + length
    if end > len(data):
        raise ValueError("truncated BER element")
    return tag, data[at:end], end


def _detail(diagnostic: str, passwords: tuple[str, ...]) -> str:
    """The directory's own words, as a sentence, when they say more than a code: 389-DS's
    "invalid password syntax - password must be at least 8 characters long" and Samba's
    "check_password_restrictions: the password is too short. ..."; "" for other words,
    and when they hold a password."""
    for marker in ("check_password_restrictions:", "invalid password syntax -"):
        if marker in diagnostic:
            return _sentence(diagnostic.split(marker, 1)[1], passwords)
    return ""


def _sentence(text: str, passwords: tuple[str, ...]) -> str:
    """``text`` as a sentence; "" when it is empty, long or holds one of ``passwords``."""
    text = text.strip().rstrip("!. ")
    lowered = text.casefold()
    if not text or len(text) > 300 or any(p and p.casefold() in lowered for p in passwords):
        return ""
    return text[0].upper() + text[1:] + "."

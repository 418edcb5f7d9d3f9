"""TOTP second factor (RFC 6238 via pyotp): secrets, otpauth URIs, QR codes, code
checks with one step of drift and no replay, and single-use recovery codes.

Recovery codes are 80-bit random values, so (like API tokens) a SHA-256 of them
is enough: nobody can search 2^80 candidates. Users type them as XXXX-XXXX-XXXX-XXXX.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno

STEP = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed by hand
RECOVERY_GROUPS, RECOVERY_GROUP_LEN = 4, 4
CODE_RE = re.compile(r"^\d{6}$")


def new_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits, as RFC 4226 recommends


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The otpauth URI as an SVG QR code (a complete document, safe to inline)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False, svgns=True,
                                     title="TOTP enrolment QR code")
    return buffer.getvalue().decode("ascii")


def counter_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP


def code_for(secret: str, counter: int) -> str:
    """The code of one time step (for tests and for the clock-skew check)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).generate_otp(counter)


def matching_counter(secret: str, code: str, now: datetime, last_counter: int | None) -> int | None:
    """The time step ``code`` belongs to, within one step of drift and newer than the last
    code accepted (a code already used, or an older one, is refused); None: no match."""
    code = code.strip().replace(" ", "")
    if not CODE_RE.match(code):
        return None
    current = counter_at(now)
    found = None
    for counter in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_for(secret, counter), code) and found is None:
            found = counter
    if found is None or (last_counter is not None and found <= last_counter):
        return None
    return found


def looks_like_recovery_code(text: str) -> bool:
    return len(normalise_recovery_code(text)) == RECOVERY_GROUPS * RECOVERY_GROUP_LEN


def normalise_recovery_code(text: str) -> str:
    return re.sub(r"[\s-]", "", text).upper()


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_GROUPS * RECOVERY_GROUP_LEN))
        codes.append("-".join(raw[i:i + RECOVERY_GROUP_LEN] for i in range(0, len(raw), RECOVERY_GROUP_LEN)))
    return codes


@dataclass(frozen=True)
class Enrolment:
    """What a user needs to add the secret to an authenticator app."""

    secret: str
    uri: str
    qr_svg: str

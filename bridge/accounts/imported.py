"""Password hashes brought over from another system, so users keep their password when
they move to dirbridge (prohandel moves its admins "with the password unchanged").

Accepted as they are exported: argon2 (``$argon2id$...``), bcrypt (``$2b$...``, ``$2a$``,
``$2y$``), PBKDF2 in Django's form (``pbkdf2_sha256$ITERATIONS$SALT$HASH``) and passlib's
(``$pbkdf2-sha256$ITERATIONS$SALT$HASH``) and 389-DS's (``{PBKDF2_SHA256}``, its default
scheme: iterations, a 64-byte salt and the hash in one base64 blob), and LDAP's salted SHA
(``{SSHA}``, ``{SSHA256}``, ``{SSHA512}``, as slapcat and 389-DS export userPassword). A login checks
the password against the hash it has; the first login that succeeds replaces it with the
configured argon2id (``needs_rehash``), so an imported hash lives until its user's next login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt

#: the digest length of each LDAP salted SHA scheme
_SSHA = {"{SSHA}": ("sha1", 20), "{SSHA256}": ("sha256", 32), "{SSHA512}": ("sha512", 64)}
_DJANGO = re.compile(r"^pbkdf2_(sha1|sha256|sha512)\$(\d{1,9})\$([^$]{1,256})\$([A-Za-z0-9+/=]{16,})$")
_PASSLIB = re.compile(r"^\$pbkdf2(-sha256|-sha512|)\$(\d{1,9})\$([A-Za-z0-9./]{1,256})\$([A-Za-z0-9./]{16,})$")
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|1[0-5])\$[./A-Za-z0-9]{53}$")  # cost 4 to 15: 2^15 rounds at most
#: the longest PBKDF2 output an imported hash may hold: each block of it costs the iterations again
MAX_DERIVED = 64
#: PBKDF2 iterations an imported hash may ask for (a hash is data: it must not cost a minute)
MAX_ITERATIONS = 2_000_000  # Django 5 uses 1,000,000


@dataclass(frozen=True)
class Scheme:
    name: str
    verify: Callable[[str, str], bool]  # (hash, password) -> match


def scheme_of(password_hash: str) -> Scheme | None:
    """The scheme of an imported hash, or None for one dirbridge cannot check (or that would
    cost too much to check: see MAX_ITERATIONS, MAX_DERIVED, the bcrypt cost)."""
    scheme = _scheme_of(password_hash)
    if scheme is None:
        return None
    try:  # a hash that passes the patterns but that its library refuses is no hash to keep
        scheme.verify(password_hash, "\x01 not the password")
    except ValueError:
        return None
    return scheme


def verify(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches an imported hash; a hash its library refuses is no match."""
    scheme = _scheme_of(password_hash)
    try:
        return scheme is not None and scheme.verify(password_hash, password)
    except ValueError:
        return False


def _scheme_of(password_hash: str) -> Scheme | None:
    if password_hash.startswith("$argon2"):
        return None  # argon2: the password hasher itself (bridge.accounts.passwords)
    if _BCRYPT.match(password_hash):
        return Scheme("bcrypt", _bcrypt)
    for prefix in _SSHA:
        if password_hash.upper().startswith(prefix) and _ssha_parts(password_hash) is not None:
            return Scheme(prefix.strip("{}").lower(), _ssha)
    if password_hash.upper().startswith(_DS389) and _ds389_parts(password_hash) is not None:
        return Scheme("pbkdf2-sha256", _ds389_pbkdf2)
    if (m := _DJANGO.match(password_hash)) and 0 < int(m.group(2)) <= MAX_ITERATIONS and len(m.group(4)) <= 88:
        return Scheme(f"pbkdf2-{m.group(1)}", _django_pbkdf2)
    if (m := _PASSLIB.match(password_hash)) and 0 < int(m.group(2)) <= MAX_ITERATIONS and len(m.group(4)) <= 88:
        return Scheme(f"pbkdf2{m.group(1) or '-sha1'}", _passlib_pbkdf2)
    return None


_DS389 = "{PBKDF2_SHA256}"


def _ds389_parts(password_hash: str) -> tuple[int, bytes, bytes] | None:
    try:
        blob = base64.b64decode(password_hash[len(_DS389):], validate=True)
    except (binascii.Error, ValueError):
        return None
    iterations = int.from_bytes(blob[:4], "big")
    if not 4 + 64 + 16 <= len(blob) <= 4 + 64 + 256 or not 0 < iterations <= MAX_ITERATIONS:
        return None
    return iterations, blob[4:68], blob[68:]


def _ds389_pbkdf2(password_hash: str, password: str) -> bool:
    parts = _ds389_parts(password_hash)
    if parts is None:
        return False
    iterations, salt, wanted = parts  # 389-DS stores 256 bytes; the first 64 decide (as many blocks as we pay)
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, min(len(wanted), MAX_DERIVED))
    wanted = wanted[:MAX_DERIVED]
    return hmac.compare_digest(got, wanted)


def _bcrypt(password_hash: str, password: str) -> bool:
    encoded = password.encode()
    if len(encoded) > 72:  # bcrypt reads 72 bytes; the library refuses more rather than cut
        encoded = encoded[:72]
    return bcrypt.checkpw(encoded, password_hash.encode())


def _ssha_parts(password_hash: str) -> tuple[str, bytes, bytes] | None:
    prefix = password_hash[:password_hash.index("}") + 1].upper()
    algorithm, size = _SSHA[prefix]
    try:
        blob = base64.b64decode(password_hash[len(prefix):], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(blob) <= size:
        return None
    return algorithm, blob[:size], blob[size:]


def _ssha(password_hash: str, password: str) -> bool:
    parts = _ssha_parts(password_hash)
    if parts is None:
        return False
    algorithm, digest, salt = parts
    return hmac.compare_digest(hashlib.new(algorithm, password.encode() + salt).digest(), digest)


def _django_pbkdf2(password_hash: str, password: str) -> bool:
    m = _DJANGO.match(password_hash)
    assert m is not None
    algorithm, iterations, salt, expected = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    try:
        wanted = base64.b64decode(expected, validate=True)
    except (binascii.Error, ValueError):
        return False
    got = hashlib.pbkdf2_hmac(algorithm, password.encode(), salt.encode(), iterations, len(wanted))
    return hmac.compare_digest(got, wanted)


def _ab64(text: str) -> bytes:
    """passlib's adapted base64 (``.`` for ``+``, no padding)."""
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _passlib_pbkdf2(password_hash: str, password: str) -> bool:
    m = _PASSLIB.match(password_hash)
    assert m is not None
    algorithm = {"-sha256": "sha256", "-sha512": "sha512", "": "sha1"}[m.group(1)]
    try:
        salt, wanted = _ab64(m.group(3)), _ab64(m.group(4))
    except (binascii.Error, ValueError):
        return False
    got = hashlib.pbkdf2_hmac(algorithm, password.encode(), salt, int(m.group(2)), len(wanted))
    return hmac.compare_digest(got, wanted)

"""The identity key of a name: what makes two userNames, or two group names, the same.

The store keeps one user per key and one group per key and source, so the key has to
be coarse enough that a second name a person, a directory or a legacy application
cannot tell from the first is refused as taken instead of shadowing it. Names that
differ only in case, width (``ｖ`` and ``v``), spacing (``john  doe``), a compatibility
form (``ﬁ`` and ``fi``) or characters that show as nothing (Unicode's
Default_Ignorable_Code_Point: zero-width space and joiners, soft hyphen, variation
selectors, Hangul fillers, tags...; and the blank braille pattern) share a key.
An LDAP directory compares by its own rules (RFC 4518 string preparation in slapd);
write-back asks it with both the name and its ``cleaned`` form (bridge.ldap.writeback)
rather than trusting this key to match them.
"""

from __future__ import annotations

import re
import unicodedata

#: keys are stored in 256 characters; a name whose key is longer is refused
MAX_KEY_LENGTH = 256

_SPACES = re.compile(r"\s+")
# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt) outside category Cf,
# which is dropped whole, and U+2800 BRAILLE PATTERN BLANK, which renders as a space.
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def cleaned(name: str) -> str:
    """``name`` as the key sees it, case kept: NFKC, the invisible characters removed,
    white-space runs as one space, trimmed."""
    if name.isascii():  # NFKC leaves ASCII as it is, and no ASCII character is Cf or invisible
        return _SPACES.sub(" ", name).strip()
    text = unicodedata.normalize("NFKC", name)
    text = _INVISIBLE.sub("", "".join(ch for ch in text if unicodedata.category(ch) != "Cf"))
    return _SPACES.sub(" ", text).strip()


def identity_key(name: str) -> str:
    """``cleaned``, case-folded (the dotted capital I folded to a plain i, as directories
    do), NFKC again because case folding can leave a string unnormalised. Idempotent:
    ``identity_key(identity_key(x)) == identity_key(x)``."""
    if name.isascii():  # the common name, without the Unicode steps that leave ASCII as it is
        return _SPACES.sub(" ", name).strip().lower()
    text = cleaned(name).casefold().replace("i\u0307", "i")
    return unicodedata.normalize("NFKC", text)


def key_problem(name: str, what: str, key: str | None = None) -> str | None:
    """Why ``name`` cannot be an identity (its key is empty, or longer than the stored
    keys), in words naming ``what`` it is; None when it can. ``key``: its identity key,
    when the caller has it already."""
    if "\x00" in name:  # no store keeps it in text (PostgreSQL refuses it): refused alike on every store
        return f"{what} {name.replace(chr(0), '?')[:40]!r} contains a NUL character"
    key = identity_key(name) if key is None else key
    if not key:
        return f"{what} {name!r} has no visible characters"
    if len(key) > MAX_KEY_LENGTH:
        return f"{what} {name[:40]!r}... is longer than {MAX_KEY_LENGTH} characters once normalised (NFKC)"
    return None

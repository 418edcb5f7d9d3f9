"""The identity key of a name: what makes two userNames, or two group names, the same.

The store keeps one user per key and one group per key and source, so the key has to
be at least as coarse as every place a name is matched afterwards: the LDAP directory
that write-back fills (its caseIgnoreMatch prepares strings per RFC 4518: compatibility
characters folded, runs of spaces collapsed), a person reading a list of names, a
legacy application. Names that differ only in case, width (``ｖ`` and ``v``), spacing
(``john  doe``), a compatibility form (``ﬁ`` and ``fi``) or an invisible format
character (a zero-width space or joiner, a soft hyphen) share a key, so the second one
is refused as taken instead of shadowing the first.
"""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def identity_key(name: str) -> str:
    """NFKC, without format characters (Unicode category Cf), whitespace runs as one
    space, trimmed, case-folded; NFKC again because case folding can leave a string
    unnormalised. Idempotent: ``identity_key(identity_key(x)) == identity_key(x)``."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = _SPACES.sub(" ", text).strip().casefold()
    return unicodedata.normalize("NFKC", text)

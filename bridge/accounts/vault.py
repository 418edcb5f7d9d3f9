"""TOTP secrets sealed at rest. A TOTP seed has to be readable to check codes, so it
cannot be hashed like a password; it is encrypted instead (Fernet from the
cryptography package: AES-128-CBC with an HMAC-SHA256 over it, and MultiFernet for key
rotation), so that a copy of the database alone (a backup, a replica's dump) yields
no seed.

The keys come from ``policy.totp.key`` (or ``key_file``, ``key_env``,
``key_credential``): one or more secrets of 32 characters or more, separated by
commas; the first seals, every one opens. Without it, a random key is kept in
``DATA_DIR/totp.key`` (0600). Replicas sharing a PostgreSQL store need the configured
key, the same on each. Rotation: put the new key first, run ``dirbridge totp
reseal``, then drop the old one.

Stored values start with ``fernet:``; a value without (written before this) is
cleartext, read as it is until ``reseal`` (run by ``dirbridge serve`` at start)
seals it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select

from bridge.config import Config
from bridge.files import kept_secret
from bridge.services.accounts import replace_totp_secret
from bridge.store.models import TotpCredential

if TYPE_CHECKING:
    from bridge.store.db import Store

log = logging.getLogger(__name__)
PREFIX = "fernet:"
KEY_FILE = "totp.key"
MIN_KEY_LENGTH = 32


class SealBroken(RuntimeError):
    """A sealed TOTP secret none of the configured keys opens (a key dropped too early)."""


def _fernet(secret: str) -> Fernet:
    # the keys are random strings of 32+ characters: SHA-256 makes them Fernet's 32 bytes
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


class TotpVault:
    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("a TOTP vault needs a key")
        self._primary = _fernet(keys[0])
        self._box = MultiFernet([_fernet(k) for k in keys])

    @classmethod
    def of(cls, config: Config) -> TotpVault:
        configured = config.policy.totp.key
        if configured is not None:
            return cls([k.strip() for k in configured.get_secret_value().split(",") if k.strip()])
        kept = kept_secret(Path(config.data_dir) / KEY_FILE, MIN_KEY_LENGTH, "set policy.totp.key",
                           "TOTP secrets sealed now cannot be opened after a restart; set policy.totp.key")
        return cls([kept.decode()])

    def seal(self, secret: str) -> str:
        return PREFIX + self._box.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # cleartext from before sealing; reseal() seals it
        try:
            return self._box.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SealBroken("a TOTP secret is sealed with a key that is not configured (policy.totp.key)") \
                from None

    def reseal(self, store: Store) -> int:
        """Seal every cleartext secret and re-seal every sealed one with the first key; the
        number of credentials written. The secrets are read once; only those that need it
        are written, each in its own short transaction and only if nobody changed it
        meanwhile (``dirbridge serve`` runs this at every start: usually it writes nothing)."""
        with store.read() as session:
            stored = list(session.execute(select(TotpCredential.user_id, TotpCredential.secret)))
        written = broken = 0
        for user_id, secret in stored:
            try:
                resealed = self._resealed(secret)
            except InvalidToken:  # sealed with a key no longer configured: left as it is
                log.error("the TOTP secret of user %s is sealed with a key policy.totp.key no longer holds: put "
                          "the old key back (after the new one) and reseal, or reset that user's TOTP", user_id)
                broken += 1
                continue
            if resealed is None:
                continue
            written += replace_totp_secret(store, user_id, secret, resealed)
        if broken:
            log.error("%d TOTP secret(s) could not be opened with the configured keys", broken)
        return written

    def _resealed(self, stored: str) -> str | None:
        """``stored`` sealed with the first key, or None when it is already."""
        if not stored.startswith(PREFIX):
            return self.seal(stored)
        token = stored[len(PREFIX):].encode()
        try:
            self._primary.decrypt(token)
            return None
        except InvalidToken:
            return PREFIX + self._box.rotate(token).decode()

"""What the accounts code needs from a process: services, config, clock, mailer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bridge.accounts.clock import Clock, clock_of
from bridge.accounts.mail import Mailer, MailError, Message
from bridge.clock import utcnow
from bridge.config import Config
from bridge.services import Services

if TYPE_CHECKING:
    from bridge.accounts.outbox import Outbox
    from bridge.accounts.vault import TotpVault
    from bridge.ldap.auth import Binder
    from bridge.runtime import Runtime


log = logging.getLogger(__name__)


@dataclass
class AccountsContext:
    services: Services
    config: Config
    clock: Clock = utcnow
    mailer: Mailer | None = None
    vault_of: Callable[[], TotpVault] | None = None  # the runtime's (bridge.accounts.vault)
    binder_of: Callable[[], Binder] | None = None  # the runtime's (bridge.ldap.auth)
    outbox_of: Callable[[], Outbox] | None = None  # the runtime's (bridge.accounts.outbox)

    @property
    def binder(self) -> Binder:
        """Binds directory users, bounded per source."""
        if self.binder_of is None:
            from bridge.ldap.auth import Binder

            made = Binder()
            self.binder_of = lambda: made
        return self.binder_of()

    @property
    def vault(self) -> TotpVault:
        """Seals and opens the TOTP secrets."""
        if self.vault_of is None:
            from bridge.accounts.vault import TotpVault

            vault = TotpVault.of(self.config)
            self.vault_of = lambda: vault
        return self.vault_of()

    def now(self) -> datetime:
        return self.clock()

    def send(self, message: Message) -> None:
        (self.mailer or Mailer(self.config.smtp)).send(message)

    def post(self, message: Message) -> None:
        """Send after the answer (the runtime's outbox); a refused mail is logged."""
        self.later(lambda: self.send(message))

    def later(self, job: Callable[[], None]) -> None:
        """Run ``job`` (make a mail and send it) after the answer, in the runtime's outbox;
        without one (a context with its own mailer), now. A refused mail is logged rather
        than raised: the caller answered already."""
        if self.outbox_of is not None and self.mailer is None:
            self.outbox_of().later(job)
            return
        try:
            job()
        except MailError as exc:
            log.warning("a mail was not sent: %s", exc)

    @property
    def public_url(self) -> str:
        """Where users reach this dirbridge (links in mails): ``server.public_url``, else the listener."""
        server = self.config.server
        if server.public_url:
            return server.public_url.rstrip("/")
        host = server.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{server.port}"


def context_for(rt: Runtime) -> AccountsContext:
    """The accounts context of a runtime, with the runtime's clock (tests set their own)."""
    return AccountsContext(services=rt.services, config=rt.config, clock=clock_of(rt),
                           vault_of=lambda: rt.totp_vault, binder_of=lambda: rt.binder,
                           outbox_of=lambda: rt.outbox)

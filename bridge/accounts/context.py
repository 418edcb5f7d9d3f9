"""What the accounts code needs from a process: services, config, clock, mailer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bridge.accounts.clock import Clock, clock_of
from bridge.accounts.mail import Mailer, Message
from bridge.config import Config
from bridge.services import Services
from bridge.store.models import utcnow

if TYPE_CHECKING:
    from bridge.runtime import Runtime


@dataclass
class AccountsContext:
    services: Services
    config: Config
    clock: Clock = utcnow
    mailer: Mailer | None = None

    def now(self) -> datetime:
        return self.clock()

    def send(self, message: Message) -> None:
        (self.mailer or Mailer(self.config.smtp)).send(message)

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
    return AccountsContext(services=rt.services, config=rt.config, clock=clock_of(rt))

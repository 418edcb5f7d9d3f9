"""Sending mail over SMTP (smtplib): STARTTLS, implicit TLS or plain, with login.

Messages are rendered by bridge.accounts.messages; this module only delivers.
Nothing here logs a message body: it carries single-use links.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from bridge.config import SmtpConfig

log = logging.getLogger(__name__)


class MailError(Exception):
    """The message could not be handed to the SMTP server."""


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str
    html: str


def build(sender: str, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text)
    mail.add_alternative(message.html, subtype="html")
    return mail


class Mailer:
    """Delivers messages with the ``[smtp]`` settings; one connection per message."""

    def __init__(self, config: SmtpConfig):
        self.config = config

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.config.ca_file) if self.config.ca_file else None)
        return context

    def send(self, message: Message) -> None:
        config = self.config
        mail = build(config.sender, message)
        try:
            smtp: smtplib.SMTP
            if config.tls == "implicit":
                smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout,
                                        context=self._tls_context())
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            with smtp:
                if config.tls == "starttls":
                    smtp.starttls(context=self._tls_context())
                if config.username:
                    if config.cleartext_login():
                        log.warning("SMTP %s:%s uses no TLS: the login password crosses the network in clear",
                                    config.host, config.port)
                    password = config.password.get_secret_value() if config.password else ""
                    smtp.login(config.username, password)
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            # The reason only: never the message, which holds a single-use link.
            raise MailError(f"cannot send mail through {config.host}:{config.port}: "
                            f"{type(exc).__name__}: {exc}") from None
        log.info("mail sent", extra={"to": message.to, "subject": message.subject})

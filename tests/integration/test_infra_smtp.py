"""The smtp_sink fixture is a real SMTP server that records what it receives."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest


def test_utf8_mail_is_received(smtp_sink):
    msg = EmailMessage()
    msg["From"] = "Dirbridge <bridge@example.org>"
    msg["To"] = "Jürgen Müller <juergen.mueller@example.org>, alice@example.org"
    msg["Subject"] = "Grüße: your access changed ✓"
    msg.set_content("Hallo Jürgen,\nyour roles changed.\n")
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as smtp:
        smtp.send_message(msg, to_addrs=["juergen.mueller@example.org", "alice@example.org", "audit@example.org"])

    [received] = smtp_sink.wait_for(1)
    assert received.subject == "Grüße: your access changed ✓"
    assert received["Subject"] == received.message["Subject"]
    assert received.envelope_from == "bridge@example.org"
    assert received.envelope_to == ("juergen.mueller@example.org", "alice@example.org", "audit@example.org")
    assert [a.addr_spec for a in received.message["To"].addresses] == ["juergen.mueller@example.org",
                                                                       "alice@example.org"]
    assert received.message["To"].addresses[0].display_name == "Jürgen Müller"
    assert received.text == "Hallo Jürgen,\nyour roles changed.\n"
    assert smtp_sink.messages == [received]


def test_wait_for_several_and_timeout(smtp_sink):
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as smtp:
        for i in range(3):
            smtp.sendmail("a@example.org", [f"u{i}@example.org"], f"Subject: n{i}\r\n\r\nbody {i}\r\n")
    assert [m.subject for m in smtp_sink.wait_for(3)] == ["n0", "n1", "n2"]
    with pytest.raises(AssertionError, match="expected 4"):
        smtp_sink.wait_for(4, timeout=0.2)

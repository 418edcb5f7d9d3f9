"""The mails dirbridge sends, in German and English: plain text and HTML.

Templates are Jinja with autoescaping for the HTML part; a user's language picks
the template (``preferred_language`` like ``de-DE`` or ``de`` counts as German),
the configured default covers everyone else.
"""

from __future__ import annotations

from datetime import datetime

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from bridge.accounts.mail import Message

LANGUAGES = ("de", "en")

_text_env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
_html_env = Environment(autoescape=True, undefined=StrictUndefined)

HTML_FRAME = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="font-family: system-ui, sans-serif; color: #1d2433; max-width: 36rem;">
{{ body }}
</body></html>
"""

TEMPLATES: dict[tuple[str, str], dict[str, str]] = {
    ("invitation", "en"): {
        "subject": "Your invitation to {{ product }}",
        "text": """Hello {{ name }},

you have been invited to {{ product }} as user "{{ user_name }}".

Choose your password here (the link works once, until {{ expires }}):

{{ link }}

If you did not expect this invitation, ignore this mail.
""",
        "html": """<p>Hello {{ name }},</p>
<p>you have been invited to {{ product }} as user <strong>{{ user_name }}</strong>.</p>
<p><a href="{{ link }}" style="background:#1f5fbf;color:#fff;padding:.5rem 1rem;border-radius:4px;
text-decoration:none">Choose your password</a></p>
<p>The link works once, until {{ expires }}. If you did not expect this invitation, ignore this mail.</p>
""",
    },
    ("invitation", "de"): {
        "subject": "Ihre Einladung zu {{ product }}",
        "text": """Hallo {{ name }},

Sie wurden als Benutzer "{{ user_name }}" zu {{ product }} eingeladen.

Hier legen Sie Ihr Passwort fest (der Link gilt einmal, bis {{ expires }}):

{{ link }}

Falls Sie diese Einladung nicht erwartet haben, ignorieren Sie diese E-Mail.
""",
        "html": """<p>Hallo {{ name }},</p>
<p>Sie wurden als Benutzer <strong>{{ user_name }}</strong> zu {{ product }} eingeladen.</p>
<p><a href="{{ link }}" style="background:#1f5fbf;color:#fff;padding:.5rem 1rem;border-radius:4px;
text-decoration:none">Passwort festlegen</a></p>
<p>Der Link gilt einmal, bis {{ expires }}. Falls Sie diese Einladung nicht erwartet haben, ignorieren Sie
diese E-Mail.</p>
""",
    },
    ("password_expiry", "en"): {
        "subject": "Your {{ product }} password expires on {{ expires }}",
        "text": """Hello {{ name }},

the password of your {{ product }} account "{{ user_name }}" expires on {{ expires }}.
Change it before then; afterwards the account is locked until an administrator resets it.
""",
        "html": """<p>Hello {{ name }},</p>
<p>the password of your {{ product }} account <strong>{{ user_name }}</strong> expires on {{ expires }}.
Change it before then; afterwards the account is locked until an administrator resets it.</p>
""",
    },
    ("password_expiry", "de"): {
        "subject": "Ihr {{ product }}-Passwort läuft am {{ expires }} ab",
        "text": """Hallo {{ name }},

das Passwort Ihres {{ product }}-Kontos "{{ user_name }}" läuft am {{ expires }} ab.
Ändern Sie es vorher; danach ist das Konto gesperrt, bis ein Administrator es zurücksetzt.
""",
        "html": """<p>Hallo {{ name }},</p>
<p>das Passwort Ihres {{ product }}-Kontos <strong>{{ user_name }}</strong> läuft am {{ expires }} ab.
Ändern Sie es vorher; danach ist das Konto gesperrt, bis ein Administrator es zurücksetzt.</p>
""",
    },
}


def language_for(preferred: str | None, default: str) -> str:
    """``de``, ``de-DE``, ``de_AT`` -> ``de``; anything unknown -> the default."""
    if preferred:
        base = preferred.replace("_", "-").split("-", 1)[0].lower()
        if base in LANGUAGES:
            return base
    return default


def format_time(moment: datetime, lang: str) -> str:
    return moment.strftime("%d.%m.%Y %H:%M UTC" if lang == "de" else "%Y-%m-%d %H:%M UTC")


def render(kind: str, lang: str, to: str, **values: object) -> Message:
    """One mail of ``kind`` in ``lang``; ``values`` fill the template (escaped in HTML)."""
    template = TEMPLATES[(kind, lang)]
    values = {"product": "dirbridge", **values}
    subject = _text_env.from_string(template["subject"]).render(**values)
    text = _text_env.from_string(template["text"]).render(**values)
    body = _html_env.from_string(template["html"]).render(**values)
    # body: escaped above
    html = _html_env.from_string(HTML_FRAME).render(lang=lang, subject=subject, body=Markup(body))
    return Message(to=to, subject=subject, text=text, html=html)


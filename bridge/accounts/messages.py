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
    ("password_reset", "en"): {
        "subject": "Reset your {{ product }} password",
        "text": """Hello {{ name }},

someone asked to reset the password of your {{ product }} account "{{ user_name }}".

Choose a new password here (the link works once, until {{ expires }}):

{{ link }}

If you did not ask for this, ignore this mail: your password stays as it is.
""",
        "html": """<p>Hello {{ name }},</p>
<p>someone asked to reset the password of your {{ product }} account <strong>{{ user_name }}</strong>.</p>
<p><a href="{{ link }}" style="background:#1f5fbf;color:#fff;padding:.5rem 1rem;border-radius:4px;
text-decoration:none">Choose a new password</a></p>
<p>The link works once, until {{ expires }}. If you did not ask for this, ignore this mail: your password
stays as it is.</p>
""",
    },
    ("password_reset", "de"): {
        "subject": "Ihr {{ product }}-Passwort zurücksetzen",
        "text": """Hallo {{ name }},

jemand hat das Zurücksetzen des Passworts Ihres {{ product }}-Kontos "{{ user_name }}" angefordert.

Hier legen Sie ein neues Passwort fest (der Link gilt einmal, bis {{ expires }}):

{{ link }}

Falls Sie das nicht angefordert haben, ignorieren Sie diese E-Mail: Ihr Passwort bleibt unverändert.
""",
        "html": """<p>Hallo {{ name }},</p>
<p>jemand hat das Zurücksetzen des Passworts Ihres {{ product }}-Kontos <strong>{{ user_name }}</strong>
angefordert.</p>
<p><a href="{{ link }}" style="background:#1f5fbf;color:#fff;padding:.5rem 1rem;border-radius:4px;
text-decoration:none">Neues Passwort festlegen</a></p>
<p>Der Link gilt einmal, bis {{ expires }}. Falls Sie das nicht angefordert haben, ignorieren Sie diese
E-Mail: Ihr Passwort bleibt unverändert.</p>
""",
    },
    ("password_reset_directory", "en"): {
        "subject": "Your {{ product }} password",
        "text": """Hello {{ name }},

someone asked to reset the password of your {{ product }} account "{{ user_name }}".
This account's password is managed by your company (its directory or its sign-in
service): {{ product }} cannot reset it. Ask your IT department, or use your company's
own password reset.

If you did not ask for this, ignore this mail.
""",
        "html": """<p>Hello {{ name }},</p>
<p>someone asked to reset the password of your {{ product }} account <strong>{{ user_name }}</strong>.
This account's password is managed by your company (its directory or its sign-in service): {{ product }}
cannot reset it. Ask your IT department, or use your company's own password reset.</p>
<p>If you did not ask for this, ignore this mail.</p>
""",
    },
    ("password_reset_directory", "de"): {
        "subject": "Ihr {{ product }}-Passwort",
        "text": """Hallo {{ name }},

jemand hat das Zurücksetzen des Passworts Ihres {{ product }}-Kontos "{{ user_name }}" angefordert.
Das Passwort dieses Kontos verwaltet Ihre Firma (ihr Verzeichnis oder ihr Anmeldedienst):
{{ product }} kann es nicht zurücksetzen. Wenden Sie sich an Ihre IT oder nutzen Sie das
Zurücksetzen Ihrer Firma.

Falls Sie das nicht angefordert haben, ignorieren Sie diese E-Mail.
""",
        "html": """<p>Hallo {{ name }},</p>
<p>jemand hat das Zurücksetzen des Passworts Ihres {{ product }}-Kontos <strong>{{ user_name }}</strong>
angefordert. Das Passwort dieses Kontos verwaltet Ihre Firma (ihr Verzeichnis oder ihr Anmeldedienst):
{{ product }} kann es nicht zurücksetzen. Wenden Sie sich an Ihre IT oder nutzen Sie das Zurücksetzen Ihrer
Firma.</p>
<p>Falls Sie das nicht angefordert haben, ignorieren Sie diese E-Mail.</p>
""",
    },
    ("email_change", "en"): {
        "subject": "Confirm your new {{ product }} e-mail address",
        "text": """Hello {{ name }},

the {{ product }} account "{{ user_name }}" is to use this address from now on: {{ new_email }}.

Confirm it here (the link works once, until {{ expires }}):

{{ link }}

If you did not ask for this, ignore this mail: nothing changes.
""",
        "html": """<p>Hello {{ name }},</p>
<p>the {{ product }} account <strong>{{ user_name }}</strong> is to use this address from now on:
{{ new_email }}.</p>
<p><a href="{{ link }}" style="background:#1f5fbf;color:#fff;padding:.5rem 1rem;border-radius:4px;
text-decoration:none">Confirm the address</a></p>
<p>The link works once, until {{ expires }}. If you did not ask for this, ignore this mail: nothing
changes.</p>
""",
    },
    ("email_change", "de"): {
        "subject": "Bestätigen Sie Ihre neue {{ product }}-E-Mail-Adresse",
        "text": """Hallo {{ name }},

das {{ product }}-Konto "{{ user_name }}" soll ab jetzt diese Adresse nutzen: {{ new_email }}.

Bestätigen Sie sie hier (der Link gilt einmal, bis {{ expires }}):

{{ link }}

Falls Sie das nicht angefordert haben, ignorieren Sie diese E-Mail: es ändert sich nichts.
""",
        "html": """<p>Hallo {{ name }},</p>
<p>das {{ product }}-Konto <strong>{{ user_name }}</strong> soll ab jetzt diese Adresse nutzen:
{{ new_email }}.</p>
<p><a href="{{ link }}" style="background:#1f5fbf;color:#fff;padding:.5rem 1rem;border-radius:4px;
text-decoration:none">Adresse bestätigen</a></p>
<p>Der Link gilt einmal, bis {{ expires }}. Falls Sie das nicht angefordert haben, ignorieren Sie diese
E-Mail: es ändert sich nichts.</p>
""",
    },
    ("email_change_notice", "en"): {
        "subject": "Your {{ product }} e-mail address is being changed",
        "text": """Hello {{ name }},

someone logged in to the {{ product }} account "{{ user_name }}" asked to change its e-mail address
to {{ new_email }}. It changes once the link sent there is opened.

If this was not you, change your password and tell your administrator.
""",
        "html": """<p>Hello {{ name }},</p>
<p>someone logged in to the {{ product }} account <strong>{{ user_name }}</strong> asked to change its
e-mail address to {{ new_email }}. It changes once the link sent there is opened.</p>
<p>If this was not you, change your password and tell your administrator.</p>
""",
    },
    ("email_change_notice", "de"): {
        "subject": "Ihre {{ product }}-E-Mail-Adresse wird geändert",
        "text": """Hallo {{ name }},

jemand, der im {{ product }}-Konto "{{ user_name }}" angemeldet ist, möchte dessen E-Mail-Adresse
auf {{ new_email }} ändern. Sie ändert sich, sobald der dorthin gesendete Link geöffnet wird.

Falls Sie das nicht waren, ändern Sie Ihr Passwort und informieren Sie Ihren Administrator.
""",
        "html": """<p>Hallo {{ name }},</p>
<p>jemand, der im {{ product }}-Konto <strong>{{ user_name }}</strong> angemeldet ist, möchte dessen
E-Mail-Adresse auf {{ new_email }} ändern. Sie ändert sich, sobald der dorthin gesendete Link geöffnet
wird.</p>
<p>Falls Sie das nicht waren, ändern Sie Ihr Passwort und informieren Sie Ihren Administrator.</p>
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


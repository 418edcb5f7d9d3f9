"""Headers every answer carries, SCIM's and the static files' included (a WSGI
middleware around the whole application, not a Flask hook, which SCIM's own WSGI
application under /scim would not pass through).

- ``X-Content-Type-Options: nosniff``: a browser never guesses a JSON error body,
  which may echo what a client sent, to be HTML.
- ``Strict-Transport-Security`` when ``server.public_url`` is https: browsers then
  refuse a downgrade to plain http for the status page and the invitation pages. Not
  sent when the public URL is http (the header is ignored there and would mislead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
HSTS = "max-age=31536000"  # one year; includeSubDomains is the operator's call, for the domain


class SecurityHeaders:
    def __init__(self, app: WsgiApp, public_url: str | None):
        self.app = app
        self.headers = [("X-Content-Type-Options", "nosniff")]
        if public_url and public_url.lower().startswith("https://"):
            self.headers.append(("Strict-Transport-Security", HSTS))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def with_headers(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            headers = headers + [(name, value) for name, value in self.headers if name.lower() not in present]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return self.app(environ, with_headers)

"""The dashboard's token rule and security headers (ASGI middleware), and `/login`.

The rule is the receiver's: with a token set, every request needs `Authorization: Bearer TOKEN`.
A browser cannot send that header on a link, so `/login?token=...` (or the login form) trades a
correct token for an HttpOnly, SameSite=Strict cookie holding an HMAC of it, never the token
itself. Comparisons are constant-time. Liveness, the login page and static assets are open.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "telltale_session"
OPEN_PATHS = ("/api/health", "/login", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
# Styles: REPORT's SVGs may carry presentation styles; scripts only from our own static files.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"telltale-web-session", hashlib.sha256).hexdigest()


def authorized(token: str | None, header: str | None, cookie_header: str | None) -> bool:
    if token is None:
        return True
    if hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode()):
        return True
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header or "")
    except Exception:  # a malformed Cookie header is simply no session
        return False
    morsel = cookies.get(COOKIE)
    return morsel is not None and hmac.compare_digest(morsel.value.encode(),
                                                      session_value(token).encode())


class Guard:
    """Adds the security headers to every response and answers 401 without the token."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        path: str = scope["path"]
        if not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
            headers = dict(scope["headers"])
            auth, cookie = headers.get(b"authorization"), headers.get(b"cookie")
            if not authorized(self.token, auth.decode("latin-1") if auth else None,
                              cookie.decode("latin-1") if cookie else None):
                await _refuse(path)(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def _refuse(path: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"}
    if path.startswith("/api/"):
        return Response(b'{"error":"missing or wrong bearer token"}', status_code=401,
                        media_type="application/json", headers=headers)
    return HTMLResponse(_REFUSED, status_code=401, headers=headers)


_REFUSED = ("<!doctype html><title>telltale: log in</title>"
            '<link rel="stylesheet" href="/static/style.css"><main class="login">'
            "<h1>telltale</h1><p>This dashboard needs its token: "
            '<a href="/login">log in</a>, or send <code>Authorization: Bearer TOKEN</code>.</p>'
            "</main>")


def login_response(request: Request, token: str | None, form: Response) -> Response:
    """GET /login: with a correct `token` set the session cookie and go to the overview;
    with a wrong one 401; without one show `form`."""
    given = request.query_params.get("token")
    if token is None:
        return RedirectResponse("/", status_code=303)
    if given is None:
        return form
    if not hmac.compare_digest(given.encode(), token.encode()):
        return PlainTextResponse("wrong token", status_code=401,
                                 headers={"WWW-Authenticate": "Bearer"})
    reply = RedirectResponse("/", status_code=303)
    reply.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict",
                     secure=request.url.scheme == "https", path="/")
    return reply

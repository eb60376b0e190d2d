"""The dashboard as one Starlette app: pages, JSON API, OpenAPI, Jaeger API and static assets.

`telltale serve` runs it beside the receiver on the UI port (or alone with `--no-receiver`).
Everything is read-only (GET, plus HEAD on pages); the token rule and security headers are the
`Guard` middleware's (web/auth.py).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from telltale.settings import Settings
from telltale.web.api import JSON, api_routes
from telltale.web.auth import Guard, login_response
from telltale.web.jaeger import jaeger_routes
from telltale.web.openapi import openapi_document
from telltale.web.pages import page_routes, render

STATIC = Path(__file__).with_name("static")


def build_web_app(settings: Settings, token: str | None = None) -> Starlette:
    routes: list[BaseRoute] = [*api_routes(settings), *jaeger_routes(settings),
                               *page_routes(settings)]
    document = openapi_document(routes)

    async def openapi(_: Request) -> Response:
        return JSON(document)

    async def login(request: Request) -> Response:
        return login_response(request, token, render("login.html", current="/login"))

    routes += [
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/login", login, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(Guard, token=token)
    return app

"""The review page's HTTP side (starlette): every request needs the session's token (`?token=`)
and a Host header naming 127.0.0.1 or localhost on the served port, else 403 (a page another
site opens in the examiner's browser, or one reached through a rebinding DNS name, has neither).
Responses are never cached and send no Referer (the token is in the URL)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from forensic_vsr.review.session import ReviewSession

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'",
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """ASGI middleware: 403 unless the token and the Host header are right."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str, port: int) -> None:
        self.app, self.token = app, token
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if headers.get("host") not in self.hosts:
            reason = "forbidden: this page answers only as 127.0.0.1 or localhost"
        elif not secrets.compare_digest(given.encode(), self.token.encode()):
            reason = "forbidden: the URL's token is missing or wrong (use the URL `fvsr review` printed)"
        else:
            await self.app(scope, receive, send)
            return
        await PlainTextResponse(reason, status_code=403, headers=HEADERS)(scope, receive, send)


def _static(name: str) -> bytes:
    return (resources.files("forensic_vsr.review") / "static" / name).read_bytes()


def create_app(session: ReviewSession, token: str, port: int) -> Guard:
    def page(_request: Request) -> Response:
        html = _static("index.html").decode().replace("__TOKEN__", token)
        return Response(html, media_type="text/html", headers=HEADERS)

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404, headers=HEADERS)
        return Response(_static(name), media_type=STATIC[name], headers=HEADERS)

    def info(_request: Request) -> Response:
        return JSONResponse(session.info(), headers=HEADERS)

    def frame_info(request: Request) -> Response:
        n = request.path_params["n"]
        if not 0 <= n < len(session.output):
            return JSONResponse({"error": f"no output frame {n}"}, status_code=404, headers=HEADERS)
        return JSONResponse(session.frame_info(n), headers=HEADERS)

    def frame_png(request: Request) -> Response:
        kind, n = request.path_params["kind"], request.path_params["n"]
        try:
            png = session.png(kind, n)
        except (KeyError, IndexError):
            return PlainTextResponse(f"no {kind} frame {n}", status_code=404, headers=HEADERS)
        return Response(png, media_type="image/png", headers=HEADERS)

    def verify(_request: Request) -> Response:
        p = session.progress
        checks = [{"name": c.name, "status": c.status, "reason": c.reason} for c in list(p.checks)]
        body = {"done": p.done, "verified": p.verified, "error": p.error, "checks": checks, "key": session.info()["key"]}
        return JSONResponse(body, headers=HEADERS)

    def psf(request: Request) -> Response:
        action, n = request.path_params["action"], request.path_params["n"]
        params = {k: v for k, v in request.query_params.items() if k != "token"}
        try:
            body = session.psf(action, n, params)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400, headers=HEADERS)
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409, headers=HEADERS)
        except BlockingIOError as exc:
            return JSONResponse({"error": str(exc)}, status_code=429, headers=HEADERS)
        return JSONResponse(body, headers=HEADERS)

    def reviews(_request: Request) -> Response:
        return JSONResponse({"reviews": session.reviews()}, headers=HEADERS)

    async def save(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin.removeprefix("http://") not in {f"127.0.0.1:{port}", f"localhost:{port}"}:
            return JSONResponse({"error": f"refused: request from {origin[:80]}"}, status_code=403, headers=HEADERS)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the request is not JSON"}, status_code=400, headers=HEADERS)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the request is not a JSON object"}, status_code=400, headers=HEADERS)
        try:
            saved = session.save_review(body.get("frame"), bool(body.get("still")), body.get("annotations", []))  # type: ignore[arg-type]
        except PermissionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403, headers=HEADERS)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400, headers=HEADERS)
        return JSONResponse(saved, status_code=201, headers=HEADERS)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/api/info", info),
            Route("/api/frames/{n:int}", frame_info),
            Route("/api/frame/{kind}/{n:int}.png", frame_png),
            Route("/api/verify", verify),
            Route("/api/psf/{action}/{n:int}", psf),
            Route("/api/reviews", reviews, methods=["GET"]),
            Route("/api/reviews", save, methods=["POST"]),
        ]
    )
    return Guard(app, token, port)

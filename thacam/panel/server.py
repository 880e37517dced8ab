"""PanelServer: the page, the JSON API and the WebSocket, served by aiohttp on its own thread.

Why aiohttp: one well-kept package (aio-libs, in steady release since 2014) gives the HTTP
server, routing, cookies and a WebSocket server on the same port and event loop, and it runs
happily on a thread of its own (an ``AppRunner`` does not want the main thread or its signals,
which are the frame loop's). ``websockets`` has no real HTTP side (no routes, no POST bodies);
starlette needs uvicorn beside it, two packages where one does. The stdlib's http.server has
no WebSocket.

Routes (every one behind :func:`thacam.panel.api.check_request`):

    GET  /                   the page (``?token=`` sets the cookie, then redirects to /)
    GET  /static/<file>      its script and style
    GET  /api/state  /api/settings  /api/preview.png
    POST /api/settings  /api/calibrate  /api/expression  /api/save
    GET  /api/ws             WebSocket: the same commands as JSON, state pushed every second,
                             preview PNGs as binary messages for clients that ask

Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from pathlib import Path
from typing import Any

from ..errors import PanelError
from . import PanelAddress
from .api import COOKIE_PREFIX, PanelApi, check_request
from .preview import PanelPreview

__all__ = ["PanelServer"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
STATE_EVERY_S = 1.0
PREVIEW_POLL_S = 0.05
# No page elsewhere may frame the panel (clickjacking) or run script in it.
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                                      "connect-src 'self'; frame-ancestors 'none'",
           "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
_POSTS = {"settings": "set", "calibrate": "calibrate", "expression": "expression",
          "save": "save"}


class PanelServer:
    """Serves one run's panel from ``start()`` until ``stop()`` (or as a context manager).

    ``url`` (with the token) is known once started; a port in use raises PanelError.
    """

    def __init__(self, api: PanelApi, address: PanelAddress = PanelAddress(),
                 preview: PanelPreview | None = None, token: str | None = None):
        self.api = api
        self.address = address
        self.preview = preview
        self.token = token or secrets.token_urlsafe(24)
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._sockets: set[Any] = set()

    @property
    def cookie(self) -> str:
        return f"{COOKIE_PREFIX}{self.port}"

    @property
    def url(self) -> str:
        host = self.address.host
        host = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"   # what to open on this machine; others use its name
        return f"http://{host}:{self.port}/?token={self.token}"

    # -- lifetime

    def start(self) -> "PanelServer":
        self._thread = threading.Thread(target=self._run, name="thacam-panel", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise self._error
        if not self.address.loopback:
            log.warning("the control panel listens on %s: other machines can reach it, and "
                        "anyone with its link can change your avatar", self.address.host)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):   # it closed meanwhile: nothing to stop
                loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def __enter__(self) -> "PanelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start() while it waits
            self._error = exc
        finally:
            self._ready.set()
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        from aiohttp import web
        self._stopping = asyncio.Event()

        @web.middleware
        async def gate(request: Any, handler: Any) -> Any:
            return await self._gate(request, handler)

        app = web.Application(middlewares=[gate])
        app.add_routes([web.get("/", self._page), web.get("/static/{name}", self._static),
                        web.get("/api/state", self._get), web.get("/api/settings", self._get),
                        web.get("/api/preview.png", self._preview),
                        web.get("/api/ws", self._websocket),
                        *[web.post(f"/api/{name}", self._post) for name in _POSTS]])
        # No access log: the first request's line carries the token.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.address.host, self.address.port)
            try:
                await site.start()
            except OSError as exc:
                raise PanelError(
                    f"--panel {self.address.host}:{self.address.port}: cannot listen there "
                    f"({exc.strerror or exc}); another program (or another thacam) holds the "
                    "port: choose another with --panel 127.0.0.1:PORT") from None
            self.port = runner.addresses[0][1]   # the one port 0 picked
            self._ready.set()
            sampler = asyncio.ensure_future(self._sample())
            await self._stopping.wait()
            sampler.cancel()
            for ws in list(self._sockets):
                await ws.close(code=1001, message=b"thacam stopped")
        finally:
            await runner.cleanup()

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(None, self.api.sample)
            await asyncio.sleep(1.0)

    # -- the gate and the routes

    def _given_token(self, request: Any) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        cookie = request.cookies.get(self.cookie)
        if cookie:
            return cookie
        # In the query only where a header cannot be set: the first page load (the link) and
        # a WebSocket from a browser-hosted plugin.
        if request.path in ("/", "/api/ws"):
            return request.query.get("token")
        return None

    async def _gate(self, request: Any, handler: Any) -> Any:
        from aiohttp import web
        refusal = check_request(token=self.token, given=self._given_token(request),
                                origin=request.headers.get("Origin"), host=request.host,
                                port=self.port or 0, allow_remote=self.address.allow_remote)
        if refusal is not None:
            return web.json_response({"error": refusal.message}, status=refusal.status,
                                     headers=HEADERS)
        response = await handler(request)
        if not getattr(response, "prepared", False):
            response.headers.update(HEADERS)
        return response

    async def _page(self, request: Any) -> Any:
        from aiohttp import web
        if "token" in request.query:
            # Keep the token out of the address bar (and screenshots of it): a cookie, then /.
            response = web.HTTPSeeOther("/")
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict",
                                path="/")
            raise response
        return web.FileResponse(STATIC / "index.html")

    async def _static(self, request: Any) -> Any:
        from aiohttp import web
        name = request.match_info["name"]
        if name not in {p.name for p in STATIC.iterdir()}:
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name)

    async def _get(self, request: Any) -> Any:
        return await self._answer(request.path.rsplit("/", 1)[1], None)

    async def _post(self, request: Any) -> Any:
        from aiohttp import web
        try:
            text = await request.text()
            body = json.loads(text) if text.strip() else {}   # calibrate, save: no body needed
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        return await self._answer(_POSTS[request.path.rsplit("/", 1)[1]], body)

    async def _answer(self, command: str, body: Any) -> Any:
        from aiohttp import web
        # Commands take the controls' lock and may save a file: off the event loop.
        status, reply = await asyncio.get_running_loop().run_in_executor(
            None, self.api.command, command, body)
        return web.json_response(reply, status=status)

    async def _preview(self, request: Any) -> Any:
        from aiohttp import web
        newest = self.preview.newest() if self.preview is not None else None
        if newest is None:
            return web.json_response({"error": "no frame yet"}, status=404)
        return web.Response(body=newest[1], content_type="image/png")

    async def _websocket(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        wants = {"preview": False}
        pusher = asyncio.ensure_future(self._push(ws, wants))
        loop = asyncio.get_running_loop()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    message = json.loads(msg.data)
                    if not isinstance(message, dict):
                        raise ValueError
                except ValueError:
                    await ws.send_json({"type": "reply", "status": 400,
                                        "error": 'expected {"cmd": ..., ...}'})
                    continue
                cmd = message.pop("cmd", None)
                reply_id = message.pop("id", None)
                if cmd == "preview":
                    wants["preview"] = bool(message.get("on", True))
                    status, reply = 200, {"ok": True}
                else:
                    body = message.get("settings", message) if cmd == "set" else message
                    status, reply = await loop.run_in_executor(None, self.api.command,
                                                               str(cmd), body)
                await ws.send_json({"type": "reply", "id": reply_id, "status": status, **reply})
        finally:
            pusher.cancel()
            self._sockets.discard(ws)
        return ws

    async def _push(self, ws: Any, wants: dict[str, bool]) -> None:
        """State every second; the newest preview frame whenever there is a new one."""
        loop = asyncio.get_running_loop()
        next_state = 0.0
        sent_seq = 0
        try:
            while not ws.closed:
                now = loop.time()
                if now >= next_state:
                    state = await loop.run_in_executor(None, self.api.state)
                    await ws.send_json({"type": "state", **state})
                    next_state = now + STATE_EVERY_S
                newest = self.preview.newest() if self.preview is not None else None
                if wants["preview"] and newest is not None and newest[0] != sent_seq:
                    sent_seq = newest[0]
                    await ws.send_bytes(newest[1])   # waits for a slow client: it skips
                await asyncio.sleep(PREVIEW_POLL_S)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

"""OBS stage: put thacam's source into an OBS scene and show/hide it live. The source is a Media
Source reading thacam's alpha stream (``--output stream``, see obs_media.py) or the virtual camera
with a chroma key (``--via vcam``, for when thacam also feeds Zoom or Discord).

Talks to OBS Studio through obs-websocket 5 (obsws-python, imported lazily so thacam runs without
it). Three layers:

- :class:`ObsSession`: one connection; every request goes through :meth:`ObsSession.call`, with
  the host, port and password always passed explicitly (obsws-python otherwise reads stray
  ``config.toml`` files) and a timeout on every request. obsws-python's and websocket-client's
  exceptions are translated here, at the module edge, into ``thacam.errors.Obs*``.
- :func:`ensure_setup` / :func:`read_status`: ``thacam obs setup`` and ``thacam obs status``.
  Setup is idempotent (a second run sends no change) and never touches a source of the same name
  that thacam did not create (its input settings carry :data:`MARKER_KEY`).
- :class:`ObsController`: all OBS traffic on its own thread. The frame loop only enqueues
  (:meth:`~ObsController.on_frames_started`, :meth:`~ObsController.on_stop`) and never waits on
  OBS; OBS being absent, killed or restarted costs one warning and a reconnect with backoff.

The WebSocket password comes only from the environment variable ``THACAM_OBS_PASSWORD``; it is
never a setting, never logged and never part of a message.

Must not import torch, cv2, mediapipe, the pipeline or the CLI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

from .errors import ObsAuthError, ObsConnectionError, ObsError, ObsRequestError
from .obs_camera import CHROMA_FILTER_KIND, camera_input, chroma_settings
from .obs_media import MEDIA_KIND, media_input, reopen_stream
from .settings import PASSWORD_ENV, Settings, setting

__all__ = [
    "ObsSettings", "ObsSession", "ObsVersion", "ObsRequestError", "SetupResult", "ObsStatus",
    "ObsController", "ensure_setup", "ensure_chroma_filter", "read_status", "camera_input", "chroma_settings",
    "PASSWORD_ENV", "MARKER_KEY", "MARKER_VALUE", "CHROMA_FILTER_KIND", "MEDIA_KIND",
    "wanted_input",
]

log = logging.getLogger(__name__)

# Written into the input's settings (OBS keeps unknown keys): how thacam recognises its own source.
MARKER_KEY = "thacam"
MARKER_VALUE = "managed by thacam (thacam obs setup)"
# Every request setup and the controller need; all exist since obs-websocket 5.0 (OBS 28).
SETUP_REQUESTS = frozenset({
    "GetVersion", "GetSceneList", "CreateScene", "GetInputList", "GetInputKindList",
    "GetInputSettings", "SetInputSettings", "CreateInput", "GetSceneItemList", "CreateSceneItem",
    "GetSceneItemTransform", "SetSceneItemTransform", "GetSourceFilterList", "CreateSourceFilter",
    "SetSourceFilterSettings", "SetSourceFilterEnabled", "SetSceneItemEnabled", "RemoveInput",
    "SetInputName",
})
# OBS error codes (obs-websocket RequestStatus) that setup turns into plain-language errors.
_RESOURCE_NOT_FOUND = 600
_RESOURCE_ALREADY_EXISTS = 601
_INVALID_RESOURCE_TYPE = 602
_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ObsSettings(Settings):
    """OBS Studio control (obs-websocket). The password is never stored here: set the environment
    variable THACAM_OBS_PASSWORD. The key colour and the camera device OBS reads are
    output.background and output.device."""

    host: str = setting("127.0.0.1", help="host running OBS's WebSocket server",
                        flag="--obs-host", metavar="HOST")
    port: int = setting(4455, 1, 65535, help="OBS WebSocket server port (Tools > WebSocket "
                        "Server Settings)", flag="--obs-port", metavar="PORT")
    scene: str = setting("thacam", help="scene that holds thacam's source (created when missing)",
                         flag="--obs-scene", metavar="NAME")
    source: str = setting("thacam-avatar", help="name of thacam's camera source in OBS",
                          flag="--obs-source", metavar="NAME")
    filter: str = setting("thacam-chroma", help="name of the chroma key filter on that source")
    via: Literal["auto", "stream", "vcam"] = setting("auto", flag="--obs-via", help="thacam's "
        "source: stream = a Media Source reading --output stream (real alpha, no key); vcam = the "
        "virtual camera + chroma key (Zoom, Discord); auto = the one set up before, else stream")
    switch_scene: bool = setting(
        False, help="switch OBS's program scene to `scene` when frames start")
    timeout_s: float = setting(3.0, 0.1, 60.0, help="seconds to wait for OBS on each request")
    reconnect_initial_s: float = setting(
        0.5, 0.05, 60.0, help="first wait before reconnecting to OBS")
    reconnect_max_s: float = setting(
        10.0, 0.1, 600.0, help="longest wait between reconnects (the wait doubles)")
    poll_s: float = setting(
        1.0, 0.1, 60.0, help="how often a live run checks that OBS is still there")
    similarity: int = setting(400, 1, 1000, help="chroma key similarity (OBS's scale, 1..1000)")
    smoothness: int = setting(80, 1, 1000, help="chroma key smoothness (OBS's scale, 1..1000)")
    spill: int = setting(100, 1, 1000, help="chroma key spill reduction (OBS's scale, 1..1000)")
    position: tuple[float, float] = setting(
        (0.0, 0.0), -16384.0, 16384.0, help="top-left corner of the source on OBS's canvas, x,y "
        "pixels")
    scale: float = setting(1.0, 0.01, 20.0, help="size of the source relative to the camera frame")
    # Not settings of their own in a profile: OBS keys out the colour thacam paints and reads the
    # device thacam writes, so the profile copies them from [output] (profile.py links them).
    key_color: tuple[int, int, int] = setting(
        (0, 255, 0), 0, 255, help="chroma key colour, R,G,B: the output's background colour",
        profile=False)
    device: str = setting("", help="virtual camera device OBS reads (Linux: /dev/videoN); empty = "
                          "the first v4l2loopback device, else /dev/video0", profile=False)
    stream_port: int = setting(45450, 1, 65535, help="port of thacam's alpha stream the Media "
                               "Source reads: the output's stream_port", profile=False)

    def check(self) -> None:
        for name in ("scene", "source", "filter"):
            if not getattr(self, name).strip():
                raise self._bad(name, f"expected a name, got {getattr(self, name)!r}")
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise self._bad("reconnect_initial_s", "is above reconnect_max_s; make the first "
                            "wait the shorter one")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# -------------------------------------------------------------------------------- connection

def _obsws():
    try:
        import obsws_python
    except ImportError:
        raise ObsError("OBS control needs the obsws-python package; install it with "
                       "`pip install obsws-python` (scripts/setup does)") from None
    # obsws-python logs its connection parameters, password included, at INFO and prints
    # tracebacks for expected errors through logger.exception: keep all of it out of our logs.
    lg = logging.getLogger("obsws_python")
    if not any(isinstance(h, logging.NullHandler) for h in lg.handlers):
        lg.addHandler(logging.NullHandler())
    lg.propagate = False
    lg.setLevel(logging.CRITICAL + 1)
    return obsws_python


def _connection_failures() -> tuple[type[BaseException], ...]:
    import websocket
    from obsws_python.error import OBSSDKTimeoutError
    # OSError covers ConnectionRefusedError, BrokenPipeError, ConnectionResetError, socket.gaierror
    # and TimeoutError; obsws-python lets these and websocket-client's exceptions through unwrapped.
    return (OSError, websocket.WebSocketException, OBSSDKTimeoutError, json.JSONDecodeError)


def _unreachable(settings: ObsSettings, exc: BaseException) -> ObsConnectionError:
    what = type(exc).__name__
    if "Timeout" in what or isinstance(exc, TimeoutError):
        problem = f"OBS at {settings.address} did not answer within {settings.timeout_s:g} s"
    else:
        problem = f"cannot reach OBS at {settings.address} ({what})"
    return ObsConnectionError(
        f"{problem}; start OBS and enable Tools > WebSocket Server Settings > Enable WebSocket "
        "server, or point thacam at it with --obs-host/--obs-port")


@contextlib.contextmanager
def _translated(settings: ObsSettings, connecting: bool = False) -> Iterator[None]:
    """Map obsws-python / websocket-client / socket errors to thacam's Obs* errors."""
    from obsws_python.error import OBSSDKError, OBSSDKRequestError, OBSSDKTimeoutError
    try:
        yield
    except OBSSDKRequestError as exc:
        comment = str(exc).partition("With message: ")[2] or None
        raise ObsRequestError(exc.req_name, exc.code, comment) from exc
    except _connection_failures() as exc:
        raise _unreachable(settings, exc) from exc
    except OBSSDKError as exc:
        if connecting and not isinstance(exc, OBSSDKTimeoutError):
            text = str(exc)
            # The server closes with 4009 on a bad password; obsws-python only sees a failed identify.
            if "no password provided" in text:
                raise ObsAuthError(
                    f"OBS at {settings.address} requires a WebSocket password and {PASSWORD_ENV} "
                    f"is not set; set the environment variable {PASSWORD_ENV} to the password "
                    "shown in OBS under Tools > WebSocket Server Settings > Show Connect Info"
                ) from exc
            if "failed to identify" in text:
                raise ObsAuthError(
                    f"OBS at {settings.address} rejected the WebSocket password from "
                    f"{PASSWORD_ENV}; set {PASSWORD_ENV} to the password shown in OBS under "
                    "Tools > WebSocket Server Settings > Show Connect Info") from exc
        raise _unreachable(settings, exc) from exc
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if not connecting:
            raise
        # Something answered the WebSocket handshake but not with obs-websocket 5's hello
        # (obsws-python then fails reading it): another program on that port, or OBS 27's v4.
        raise ObsConnectionError(
            f"the WebSocket server at {settings.address} is not obs-websocket 5 (it answered "
            "with something else); check the port in OBS under Tools > WebSocket Server "
            "Settings (OBS 28 or newer), or point thacam at it with --obs-host/--obs-port"
        ) from exc


@dataclass(frozen=True)
class ObsVersion:
    obs: str
    websocket: str
    rpc: int
    requests: frozenset[str]

    @classmethod
    def from_response(cls, r: dict[str, Any]) -> "ObsVersion":
        return cls(str(r.get("obsVersion", "?")), str(r.get("obsWebSocketVersion", "?")),
                   int(r.get("rpcVersion", 0)), frozenset(r.get("availableRequests", ())))

    def require(self, needed: frozenset[str] | set[str]) -> None:
        missing = sorted(set(needed) - self.requests)
        if missing:
            raise ObsError(f"OBS {self.obs} with obs-websocket {self.websocket} lacks the "
                           f"requests {', '.join(missing)}; update OBS to version 28 or newer")


class ObsSession:
    """One authenticated obs-websocket connection (not thread-safe: one thread uses it)."""

    def __init__(self, settings: ObsSettings, password: str | None = None):
        self.settings = settings
        ws = _obsws()
        secret = os.environ.get(PASSWORD_ENV, "") if password is None else password
        # Built in two steps so a client whose identify fails can still be closed: obsws-python
        # leaves that socket open, and OBS then waits on it (5 s more to quit, after a missing
        # password).
        self._client = ws.ReqClient.__new__(ws.ReqClient)
        try:
            with _translated(settings, connecting=True):
                # All three connection parameters explicitly: with none given, obsws-python
                # reads config.toml from the working directory or the home folder.
                self._client.__init__(host=settings.host, port=settings.port, password=secret,
                                      timeout=settings.timeout_s)
        except BaseException:
            self.close()
            raise
        finally:
            del secret
        try:
            self.version = ObsVersion.from_response(self.call("GetVersion"))
        except BaseException:
            self.close()
            raise

    def call(self, request: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request (timeout: settings.timeout_s) and return its response data."""
        with _translated(self.settings):
            response = self._client.send(request, data, raw=True)
        return response or {}

    def close(self) -> None:
        # An open client delays OBS's own shutdown by its 5 s close handshake timeout.
        with contextlib.suppress(Exception):
            self._client.disconnect()

    def __enter__(self) -> "ObsSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:      # never the client's repr: it contains the password
        return f"ObsSession({self.settings.address})"


# ------------------------------------------------------------------------------------ setup

@dataclass(frozen=True)
class SetupResult:
    scene_item_id: int
    actions: tuple[str, ...]        # what was changed; empty when OBS already matched
    kind: str = MEDIA_KIND          # the input kind of thacam's source

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _foreign(settings: ObsSettings, what: str) -> ObsError:
    return ObsError(
        f"OBS already has {what} named {settings.source!r} that thacam did not create; thacam "
        "leaves it untouched. Rename or remove it in OBS, or choose another name for thacam's "
        "source (profile [obs] source)")


def _check_ours(session: ObsSession, settings: ObsSettings,
                kinds: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """Raise unless the input named settings.source is thacam's; return its kind and settings."""
    try:
        got = session.call("GetInputSettings", {"inputName": settings.source})
    except ObsRequestError as exc:
        if exc.code == _INVALID_RESOURCE_TYPE:       # a scene or a group of that name
            raise _foreign(settings, "a scene") from None
        raise
    actual = got.get("inputKind")
    current = got.get("inputSettings") or {}
    if actual not in kinds or current.get(MARKER_KEY) != MARKER_VALUE:
        raise _foreign(settings, f"a {actual or 'source'} source")
    return actual, current


def wanted_input(settings: ObsSettings, existing_kind: str | None = None
                 ) -> tuple[str, dict[str, Any]]:
    """The input kind and settings for settings.via; ``auto`` keeps ``existing_kind`` (the kind
    of thacam's source already in OBS) and is otherwise the Media Source."""
    camera = camera_input(settings)
    if settings.via == "vcam" or (settings.via == "auto" and existing_kind == camera[0]):
        return camera
    return media_input(settings.stream_port)


def _ensure_scene(session: ObsSession, settings: ObsSettings, actions: list[str]) -> None:
    scenes = {s["sceneName"] for s in session.call("GetSceneList").get("scenes", [])}
    if settings.scene in scenes:
        return
    try:
        session.call("CreateScene", {"sceneName": settings.scene})
    except ObsRequestError as exc:
        if exc.code == _RESOURCE_ALREADY_EXISTS:
            raise ObsError(f"OBS has a source named {settings.scene!r} that is not a scene; "
                           "choose another scene with --scene (or profile [obs] scene)") from None
        raise
    actions.append(f"created scene {settings.scene!r}")


def _ensure_input(session: ObsSession, settings: ObsSettings,
                  actions: list[str]) -> tuple[str, int | None]:
    """Create or check thacam's input; returns its kind and the new scene item id when it
    created one. thacam's own source of the other kind (``--via`` changed) is replaced."""
    inputs = {i["inputName"]: i for i in session.call("GetInputList").get("inputs", [])}
    existing = inputs.get(settings.source)
    kind, wanted = wanted_input(settings, existing and existing.get("inputKind"))
    current: dict[str, Any] = {}
    if existing is not None:
        actual, current = _check_ours(session, settings, (camera_input(settings)[0], MEDIA_KIND))
        if actual != kind:
            # OBS cannot change a source's kind: remove thacam's old one, with its filters. OBS
            # frees the name only once the removed source is released: rename it first.
            old = f"{settings.source} (removed by thacam {time.time_ns():x})"
            session.call("SetInputName", {"inputName": settings.source, "newInputName": old})
            session.call("RemoveInput", {"inputName": old})
            actions.append(f"removed {actual} source {settings.source!r}")
            existing = None
    if existing is None:
        scenes = {s["sceneName"] for s in session.call("GetSceneList").get("scenes", [])}
        if settings.source in scenes:
            raise _foreign(settings, "a scene")
        kinds = set(session.call("GetInputKindList", {"unversioned": False}).get("inputKinds", []))
        if kind not in kinds:
            raise ObsError(f"this OBS has no {kind} source kind, so it cannot show thacam; "
                           + ("use `thacam obs setup --via vcam`" if kind == MEDIA_KIND else
                              "install OBS's camera capture plugin for this system"))
        created = session.call("CreateInput", {
            "sceneName": settings.scene, "inputName": settings.source, "inputKind": kind,
            "inputSettings": {**wanted, MARKER_KEY: MARKER_VALUE},
            # Hidden until frames flow: the live run shows it (ObsController.on_frames_started).
            "sceneItemEnabled": False})
        actions.append(f"created {kind} source {settings.source!r}")
        return kind, int(created["sceneItemId"])
    stale = {k: v for k, v in wanted.items() if current.get(k) != v}
    if stale:
        session.call("SetInputSettings", {"inputName": settings.source, "inputSettings": stale,
                                          "overlay": True})
        actions.append(f"set {', '.join(sorted(stale))} of {settings.source!r}")
    return kind, None


def _ensure_item(session: ObsSession, settings: ObsSettings, actions: list[str]) -> int:
    items = session.call("GetSceneItemList", {"sceneName": settings.scene}).get("sceneItems", [])
    for item in items:
        if item.get("sourceName") == settings.source:
            return int(item["sceneItemId"])
    # thacam's input exists (inputs are global in OBS) but is not in this scene yet.
    created = session.call("CreateSceneItem", {"sceneName": settings.scene,
                                               "sourceName": settings.source,
                                               "sceneItemEnabled": False})
    actions.append(f"added {settings.source!r} to scene {settings.scene!r}")
    return int(created["sceneItemId"])


def _ensure_transform(session: ObsSession, settings: ObsSettings, item_id: int,
                      actions: list[str]) -> None:
    t = session.call("GetSceneItemTransform", {"sceneName": settings.scene,
                                               "sceneItemId": item_id})["sceneItemTransform"]
    wanted = {"positionX": float(settings.position[0]), "positionY": float(settings.position[1]),
              "scaleX": float(settings.scale), "scaleY": float(settings.scale)}
    if all(abs(float(t.get(k, 0.0)) - v) <= _TOLERANCE for k, v in wanted.items()):
        return
    session.call("SetSceneItemTransform", {"sceneName": settings.scene, "sceneItemId": item_id,
                                           "sceneItemTransform": wanted})
    actions.append(f"placed {settings.source!r} at {settings.position} scale {settings.scale:g}")


def ensure_chroma_filter(session: ObsSession, settings: ObsSettings,
                         actions: list[str] | None = None) -> None:
    """Give the source ``settings.source`` thacam's chroma key filter, or bring it up to date."""
    actions = [] if actions is None else actions
    wanted = chroma_settings(settings)
    filters = session.call("GetSourceFilterList", {"sourceName": settings.source}).get("filters", [])
    mine = next((f for f in filters if f.get("filterName") == settings.filter), None)
    if mine is None:
        session.call("CreateSourceFilter", {"sourceName": settings.source,
                                            "filterName": settings.filter,
                                            "filterKind": CHROMA_FILTER_KIND,
                                            "filterSettings": wanted})
        actions.append(f"added chroma key {settings.filter!r} (key colour {settings.key_color})")
        return
    if mine.get("filterKind") not in (CHROMA_FILTER_KIND, "chroma_key_filter"):
        raise ObsError(f"thacam's source has a {mine.get('filterKind')} filter named "
                       f"{settings.filter!r}; remove or rename it in OBS so thacam can add its "
                       "chroma key")
    current = mine.get("filterSettings") or {}
    stale = {k: v for k, v in wanted.items() if current.get(k) != v}
    if stale:
        session.call("SetSourceFilterSettings", {"sourceName": settings.source,
                                                 "filterName": settings.filter,
                                                 "filterSettings": stale, "overlay": True})
        actions.append(f"set {', '.join(sorted(stale))} of filter {settings.filter!r}")
    if not mine.get("filterEnabled", True):
        session.call("SetSourceFilterEnabled", {"sourceName": settings.source,
                                                "filterName": settings.filter,
                                                "filterEnabled": True})
        actions.append(f"enabled filter {settings.filter!r}")


def ensure_setup(session: ObsSession, settings: ObsSettings) -> SetupResult:
    """Make OBS hold thacam's source (``settings.via``) in ``settings.scene``; change only what
    differs.

    Raises:
        ObsError: OBS lacks a needed request or source kind, or a source or filter of thacam's
            names exists and is not thacam's (it is left untouched).
        ObsConnectionError: OBS went away.
    """
    session.version.require(SETUP_REQUESTS)
    actions: list[str] = []
    _ensure_scene(session, settings, actions)
    kind, item_id = _ensure_input(session, settings, actions)
    if item_id is None:
        item_id = _ensure_item(session, settings, actions)
    _ensure_transform(session, settings, item_id, actions)
    if kind != MEDIA_KIND:      # the stream carries its own alpha: no key to pull
        ensure_chroma_filter(session, settings, actions)
    for a in actions:
        log.debug("obs setup: %s", a)
    return SetupResult(item_id, tuple(actions), kind)


# ----------------------------------------------------------------------------------- status

@dataclass(frozen=True)
class ObsStatus:
    obs_version: str
    websocket_version: str
    current_scene: str
    scene_exists: bool
    source_exists: bool           # an input of that name, anywhere in OBS
    source_in_scene: bool
    source_is_thacam: bool
    source_kind: str | None
    source_enabled: bool | None   # None when not in the scene
    filter_exists: bool
    key_color: tuple[int, int, int] | None


def read_status(session: ObsSession, settings: ObsSettings) -> ObsStatus:
    """What ``thacam obs status`` prints; reads only, changes nothing."""
    current = session.call("GetCurrentProgramScene").get("currentProgramSceneName", "?")
    scenes = {s["sceneName"] for s in session.call("GetSceneList").get("scenes", [])}
    inputs = {i["inputName"]: i for i in session.call("GetInputList").get("inputs", [])}
    entry = inputs.get(settings.source)
    ours = False
    if entry is not None:
        got = session.call("GetInputSettings", {"inputName": settings.source})
        ours = (got.get("inputSettings") or {}).get(MARKER_KEY) == MARKER_VALUE
    enabled: bool | None = None
    if settings.scene in scenes:
        for item in session.call("GetSceneItemList",
                                 {"sceneName": settings.scene}).get("sceneItems", []):
            if item.get("sourceName") == settings.source:
                enabled = bool(item.get("sceneItemEnabled"))
    filter_exists, key = False, None
    if entry is not None:
        for f in session.call("GetSourceFilterList",
                              {"sourceName": settings.source}).get("filters", []):
            if f.get("filterName") == settings.filter:
                filter_exists = True
                c = int((f.get("filterSettings") or {}).get("key_color", 0x00FF00))
                key = (c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF)
    return ObsStatus(session.version.obs, session.version.websocket, current,
                     settings.scene in scenes, entry is not None, enabled is not None, ours,
                     entry.get("inputKind") if entry else None, enabled, filter_exists, key)


# ------------------------------------------------------------------------------- controller

_SHOW, _HIDE, _QUIT = "show", "hide", "quit"


class ObsController:
    """Drives OBS during a live run from its own thread; the frame loop never waits on it.

    The pipeline calls :meth:`on_frames_started` once frames flow and :meth:`on_stop` when it
    stops (also after Ctrl-C: use it as a context manager or call on_stop in a ``finally``).
    On every (re)connection the controller redoes :func:`ensure_setup` and restores the wanted
    visibility. OBS absent or killed: one warning per outage, reconnects with doubling waits.
    A wrong or missing password, or a foreign source in the way: one warning, OBS control off
    for the run (retrying would not help).
    """

    def __init__(self, settings: ObsSettings, *,
                 session_factory: Callable[[ObsSettings], ObsSession] = ObsSession):
        self.settings = settings
        self._factory = session_factory
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="thacam-obs", daemon=True)
        self._started = False
        self._stopped = False
        self._state = "starting"
        self.off_reason: str | None = None      # why OBS control was turned off, if it was
        # What is wrong with OBS right now, as the one actionable line the log got (no secrets:
        # the messages name the password's variable, never its value); None while connected.
        self.problem: str | None = None
        self.reconnects = 0

    # ------------------------------------------------------------ frame-loop side (never blocks)
    def start(self) -> "ObsController":
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def on_frames_started(self) -> None:
        self._queue.put(_SHOW)

    def on_stop(self, timeout_s: float | None = None) -> None:
        """Hide the source and end the thread, waiting at most ``timeout_s`` (shutdown only)."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.put(_HIDE)
        self._queue.put(_QUIT)
        if self._started:
            self._thread.join(2 * self.settings.timeout_s + 1 if timeout_s is None else timeout_s)
            if self._thread.is_alive():
                log.warning("OBS did not confirm hiding %r in time; thacam stops anyway",
                            self.settings.source)

    @property
    def state(self) -> str:
        """One of: starting, connected, waiting for OBS, password refused, off, stopped (for
        status lines; :attr:`problem` says why when it is not connected)."""
        return self._state

    def __enter__(self) -> "ObsController":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.on_stop()

    # ------------------------------------------------------------ worker thread
    def _run(self) -> None:
        s = self.settings
        session: ObsSession | None = None
        item_id: int | None = None
        reopen = False                      # a Media Source to open again once frames flow
        wanted: bool | None = None          # visibility thacam wants; None = not decided yet
        applied: bool | None = None         # what this connection has already sent
        switched = False
        quit_ = False
        delay = s.reconnect_initial_s
        next_try = 0.0
        outage = False
        ever_connected = False
        while True:
            if session is None and self.off_reason is None and not quit_ \
                    and time.monotonic() >= next_try:
                try:
                    session = self._factory(s)
                    setup = ensure_setup(session, s)
                    item_id, reopen = setup.scene_item_id, setup.kind == MEDIA_KIND
                    applied, switched = None, False
                    self.problem = None
                    self._state = "connected"
                    if outage or ever_connected:
                        self.reconnects += 1
                        log.info("OBS is back at %s; thacam's source is set up again", s.address)
                    else:
                        log.info("connected to OBS %s at %s", session.version.obs, s.address)
                    outage, ever_connected, delay = False, True, s.reconnect_initial_s
                except ObsConnectionError as exc:
                    session = self._drop(session)
                    self.problem = str(exc)
                    self._state = "waiting for OBS"
                    if not outage:
                        outage = True
                        log.warning("%s. thacam keeps running and connects when OBS is there",
                                    exc)
                    next_try = time.monotonic() + delay
                    delay = min(delay * 2, s.reconnect_max_s)
                except ObsError as exc:     # auth, a foreign source, an OBS too old
                    session = self._drop(session)
                    self._turn_off(exc)
            if session is not None:
                try:
                    if wanted is not None and wanted != applied:
                        session.call("SetSceneItemEnabled", {"sceneName": s.scene,
                                                             "sceneItemId": item_id,
                                                             "sceneItemEnabled": wanted})
                        applied = wanted
                    if wanted and s.switch_scene and not switched:
                        session.call("SetCurrentProgramScene", {"sceneName": s.scene})
                        switched = True
                    if wanted and reopen:
                        session.call(*reopen_stream(s.source, s.stream_port))
                        reopen = False
                except ObsConnectionError as exc:
                    session = self._lost(session, exc)
                    outage, next_try = True, time.monotonic() + delay
                    continue
                except ObsRequestError as exc:
                    # Someone removed the source or scene in OBS meanwhile: set it up again.
                    log.warning("%s; setting thacam's source up again", exc)
                    session = self._drop(session)
                    next_try = time.monotonic() + delay
                    delay = min(delay * 2, s.reconnect_max_s)
                    continue
            if quit_:
                break
            if self.off_reason is not None:
                timeout = None
            elif session is not None:
                timeout = s.poll_s
            else:
                timeout = max(0.0, next_try - time.monotonic())
            try:
                cmd = self._queue.get(timeout=timeout)
            except queue.Empty:
                if session is not None:
                    try:
                        session.call("GetVersion")    # still there? (OBS may have been killed)
                    except ObsError as exc:
                        session = self._lost(session, exc)
                        outage, next_try = True, time.monotonic() + delay
                continue
            while True:     # take everything queued: only the latest wish matters
                if cmd == _SHOW:
                    wanted = True
                elif cmd == _HIDE:
                    wanted = False
                elif cmd == _QUIT:
                    quit_ = True
                try:
                    cmd = self._queue.get_nowait()
                except queue.Empty:
                    break
        self._drop(session)
        if self.off_reason is None:
            self._state = "stopped"

    def _drop(self, session: ObsSession | None) -> None:
        if session is not None:
            session.close()
        return None

    def _lost(self, session: ObsSession, exc: Exception) -> None:
        self.problem = str(exc)
        self._state = "waiting for OBS"
        log.warning("lost the connection to OBS at %s (%s); thacam keeps running and "
                    "reconnects when OBS is back", self.settings.address,
                    type(exc.__cause__ or exc).__name__)
        return self._drop(session)

    def _turn_off(self, exc: ObsError) -> None:
        self.off_reason = self.problem = str(exc)
        # A password problem is the one a user most often has to fix in OBS: named apart.
        self._state = "password refused" if isinstance(exc, ObsAuthError) else "off"
        log.warning("%s. OBS control is off for this run", exc)

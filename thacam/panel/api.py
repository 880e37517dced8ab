"""The panel's API, without a web framework: what each request does and whether it may.

:class:`PanelApi` answers the documented endpoints (README, "Control panel and API") with
``(status, JSON body)``; the server maps HTTP routes and WebSocket messages onto
:meth:`PanelApi.command`, so both speak exactly the same commands:

    state        fps, per-stage ms, latency, face, expression, pose, sources, sinks, OBS, and
                 the last minute of samples (``history``)
    settings     every live-tunable setting, generated from the settings metadata
    set          {"<section>.<key>": value, ...}: all applied or none (400 names the bad one)
    calibrate    the newest face becomes the neutral pose
    expression   {"name": preset name or hotkey, "on": bool}: hold presets stay on until "on":
                 false; toggle presets are switched to the state asked for
    save         the keys changed in this run, into the profile (comments kept)

:func:`check_request` is the gate every request passes first (Origin, Host, token). Must not
import torch, cv2, mediapipe or the web framework.
"""

from __future__ import annotations

import collections
import enum
import hmac
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .. import settings as S
from ..controls import Controls, ControlEvent
from ..errors import ProfileError
from ..profile import Profile
from . import is_loopback

__all__ = ["PanelApi", "live_settings", "setting_entry", "check_request", "Refusal",
           "COOKIE_PREFIX", "HISTORY_S"]

COOKIE_PREFIX = "thacam_token_"   # + the port: two runs on one machine keep their own cookies
HISTORY_S = 60                    # the page plots the last minute, one sample a second


# ------------------------------------------------------------------------- the settings table

def live_settings(root: type = Profile, prefix: str = "") -> list[str]:
    """Every live-tunable key ("retarget.blink_start", ...), in declaration order."""
    keys: list[str] = []
    for info in S.fields_of(root):
        key = f"{prefix}{info.name}"
        if info.spec.kind == "table":
            keys.extend(live_settings(info.spec.tp, key + "."))
        elif info.live:
            keys.append(key)
    return keys


def _step(info: S.FieldInfo) -> float | None:
    """A slider step from the range: about a hundredth of it, rounded to 1, 2 or 5 x 10^n."""
    kind = info.spec.item.kind if info.spec.kind == "tuple" else info.spec.kind
    if kind == "int":
        return 1
    if kind != "float" or info.range is None or None in info.range:
        return None
    lo, hi = info.range
    raw = (hi - lo) / 100.0
    exp = math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * 10 ** exp >= raw * 0.999:
            return float(f"{m * 10 ** exp:.6g}")
    return raw


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def setting_entry(profile: Profile, key: str) -> dict[str, Any]:
    """One row of GET /api/settings: value, min, max, step, help (+ type and choices)."""
    info = S.field_info(Profile, key)
    lo, hi = info.range if info.range is not None else (None, None)
    spec = info.spec
    entry = {"value": _plain(S.get_key(profile, key)), "min": lo, "max": hi,
             "step": _step(info), "help": info.help,
             "type": spec.kind if spec.kind != "tuple" else f"list of {spec.item.kind}"}
    if spec.kind == "choice":
        entry["choices"] = list(spec.choices)
    return entry


# ------------------------------------------------------------------------------- the gate

@dataclass(frozen=True)
class Refusal:
    status: int                    # 401 or 403
    message: str


def check_request(*, token: str, given: str | None, origin: str | None, host: str | None,
                  port: int, allow_remote: bool) -> Refusal | None:
    """Whether one request may go on (None) or why not.

    * ``Origin``: browsers send it with every cross-site request, writes and WebSockets; one
      that is not the panel's own is a page elsewhere trying to drive thacam (403). Clients
      outside a browser (bots, curl, Stream Deck plugins in native code) send none.
    * ``Host``: on the loopback address only loopback names are answered, so a site that
      points its own name at 127.0.0.1 (DNS rebinding) gets nowhere (403).
    * the token (query, header or cookie: the server finds it), compared in constant time (401).
    """
    if host is None or (not allow_remote and not _loopback_host(host)):
        return Refusal(403, f"this panel answers on 127.0.0.1:{port} only")
    if origin is not None and origin != f"http://{host}":
        return Refusal(403, "requests from other web pages are refused; open the panel from "
                       "the link thacam printed")
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        return Refusal(401, "missing or wrong token: open the panel from the link thacam printed "
                       "(it ends in ?token=...), or send the header 'Authorization: Bearer "
                       "TOKEN'")
    return None


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name)


# ------------------------------------------------------------------------------- the API

class PanelApi:
    """The commands, over one run's Controls and status.

    Args:
        controls: the run's Controls (the one way to change the pipeline).
        status: returns the run's state as a JSON-ready dict (thacam.app builds it from
            ``LivePipeline.status()``, the sources, the sinks and OBS).
        lock: shared with every other input (the preview window's keys): one action at a time.
    """

    def __init__(self, controls: Controls, status: Callable[[], dict[str, Any]],
                 lock: threading.RLock | None = None):
        self.controls = controls
        self._status = status
        self.lock = lock or threading.RLock()
        self.keys = live_settings()
        self._history: collections.deque = collections.deque(maxlen=HISTORY_S)

    # -- reading

    def sample(self) -> None:
        """Take one history sample (the server calls this once a second)."""
        s = self._status()
        with self.lock:
            self._history.append({"t": round(time.time(), 1), "fps": s.get("fps"),
                                  "latency_ms": s.get("latency_ms"),
                                  "stages_ms": s.get("stages_ms", {})})

    def state(self) -> dict[str, Any]:
        state = self._status()
        with self.lock:
            state["expressions"] = [{"hotkey": k, "name": p.name, "mode": p.mode}
                                    for k, p in sorted(self.controls.profile.expressions.items())]
            state["unsaved"] = self.controls.dirty
            state["history"] = list(self._history)
        return state

    def settings(self) -> dict[str, Any]:
        with self.lock:
            profile = self.controls.profile
        return {"settings": {k: setting_entry(profile, k) for k in self.keys}}

    # -- commands

    def command(self, name: str, body: Mapping[str, Any] | None = None) -> tuple[int, dict]:
        """One command -> (HTTP status, JSON body). Never raises for a bad request."""
        body = body or {}
        if not isinstance(body, Mapping):
            return 400, {"error": "expected a JSON object"}
        handler = {"state": lambda b: (200, self.state()),
                   "settings": lambda b: (200, self.settings()),
                   "set": self._set, "calibrate": self._calibrate,
                   "expression": self._expression, "save": self._save}.get(name)
        if handler is None:
            return 404, {"error": f"no command {name!r}; the commands are state, settings, set, "
                                  "calibrate, expression, save"}
        return handler(body)

    def _set(self, body: Mapping[str, Any]) -> tuple[int, dict]:
        if not body:
            return 400, {"error": 'expected {"<section>.<key>": value, ...}'}
        with self.lock:
            # Checked on a copy first, so a bad value in a batch changes nothing.
            trial = Controls(self.controls.profile)
            try:
                for key, value in body.items():
                    trial.set_value(key, value, source="panel")
            except ProfileError as exc:
                return 400, {"error": str(exc), "key": exc.key}
            events = [self.controls.set_value(k, v, source="panel") for k, v in body.items()]
            values = {k: setting_entry(self.controls.profile, k)["value"] for k in body}
        return 200, {"ok": True, "message": "; ".join(e.message for e in events),
                     "values": values}

    def _calibrate(self, body: Mapping[str, Any]) -> tuple[int, dict]:
        with self.lock:
            event = self.controls.calibrate()
        ok = event.key == "calibration"
        return (200 if ok else 409), _reply(event, ok)

    def _expression(self, body: Mapping[str, Any]) -> tuple[int, dict]:
        name, on = body.get("name"), body.get("on", True)
        if not isinstance(name, str) or not isinstance(on, bool):
            return 400, {"error": 'expected {"name": "<preset name or hotkey>", "on": true|false}'}
        with self.lock:
            presets = self.controls.profile.expressions
            hotkey = name if name in presets else next(
                (k for k, p in presets.items() if p.name == name), None)
            if hotkey is None:
                names = ", ".join(f"{p.name} ({k})" for k, p in sorted(presets.items()))
                return 404, {"error": f"no expression {name!r}; the presets are {names}"}
            preset = presets[hotkey]
            active = getattr(self.controls.target, "expression", None)
            is_on = active is not None and active.name == preset.name
            if preset.mode == "hold":
                event = self.controls.expression(hotkey, pressed=on, releases=True)
            elif on != is_on:   # a toggle preset is switched to what was asked, not flipped
                event = self.controls.expression(hotkey, pressed=True, releases=True)
            else:
                event = None
        message = event.message if event is not None else \
            f"{preset.name} {'on' if on else 'off'} already"
        return 200, {"ok": True, "message": message, "name": preset.name, "on": on}

    def _save(self, body: Mapping[str, Any]) -> tuple[int, dict]:
        with self.lock:
            event = self.controls.save()
            ok = self.controls.path is not None and not self.controls.dirty
        return (200 if ok else 500), _reply(event, ok)


def _reply(event: ControlEvent, ok: bool) -> dict[str, Any]:
    return {"ok": ok, "message": event.message} if ok else {"ok": False, "error": event.message}

"""Controls: the one way to change a running thacam, from keys and from the panel (thacam.panel).

:class:`Controls` holds the run's profile and a :class:`LiveTarget` (the running pipeline's small
public interface). Every change is an action here: calibrate, cycle a choice (eyebrow family,
wink mode), nudge a gain, set any live-tunable key, press or release an expression, mirror, save
the tuned profile, quit. Each action updates the profile, reaches the running stages at once and
returns a :class:`ControlEvent` saying what happened (the preview shows its message). Key bindings
(:data:`KEYS`) map a key to an action; any input with key events (the OpenCV window, the panel)
goes through :meth:`Controls.key`.

Expressions: a ``toggle`` preset switches on or off at each press; a ``hold`` preset is on while
its key is held, where the input reports releases. The OpenCV window reports none, so there hold
presets toggle too.

Must not import torch, cv2, mediapipe or the CLI.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import settings as S
from .settings import codec as C
from .errors import ProfileError
from .output import KeyEvent
from .profile import HOTKEYS, Profile, save_profile

__all__ = ["Controls", "ControlEvent", "LiveTarget", "Gain", "GAINS", "KEYS", "key_help"]

log = logging.getLogger(__name__)


class LiveTarget(Protocol):
    """What controls need of a running pipeline (thacam.pipeline.LivePipeline has it)."""

    def apply_settings(self, retarget: Any = None, smoothing: Any = None, breathing: Any = None,
                       idle: Any = None, lipsync: Any = None) -> None: ...

    def calibrate(self) -> Any | None: ...

    def press_expression(self, preset: Any) -> None: ...

    def release_expression(self, preset: Any) -> None: ...

    def set_mirror(self, mirror: bool) -> bool: ...

    @property
    def mirror(self) -> bool: ...

    def stop(self, reason: str = "stopped") -> None: ...


@dataclass(frozen=True)
class ControlEvent:
    """What one action did. ``action``: calibrate, cycle, gain, set, expression, mirror, save,
    quit."""

    action: str
    message: str
    key: str | None = None                 # the profile key changed, if any
    preset: Any = None                     # the expression preset, for expression events
    hotkey: str | None = None


@dataclass(frozen=True)
class Gain:
    """One tunable gain over one or more settings, each moved by a factor of STEP per press.

    ``keys`` pairs each setting with its base (another key, or None for 0): for a threshold pair
    (jaw_open_min..jaw_open_max) it is the span between them that scales. ``inverse``: the
    settings are spans or ranges, so more gain = smaller values."""

    label: str
    keys: tuple[tuple[str, str | None], ...]
    down: str
    up: str
    inverse: bool = False


GAINS = (
    # A narrower jawOpen span opens the avatar's mouth further for the same jaw movement.
    Gain("mouth gain", (("retarget.jaw_open_max", "retarget.jaw_open_min"),), "o", "O",
         inverse=True),
    # A narrower start..full span (and a lower adapted peak) shuts the eyes on a smaller blink.
    Gain("blink gain", (("retarget.blink_full", "retarget.blink_start"),
                        ("retarget.blink_full_max", "retarget.blink_start"),
                        ("retarget.blink_full_fraction", None)), "b", "B", inverse=True),
    # Fewer degrees for a full turn = the avatar's head moves more.
    Gain("head gain", (("retarget.head_y_range_deg", None), ("retarget.head_x_range_deg", None),
                       ("retarget.neck_z_range_deg", None)), "h", "H", inverse=True),
    Gain("breathing depth", (("breathing.depth", None),), "r", "R"),
)
STEP = 1.1  # one press = 10 %: fine enough to tune, big enough to see at once
CYCLES = {"e": ("eyebrow family", "retarget.eyebrow_family"),
          "w": ("wink mode", "retarget.wink_mode")}
# key -> (action, what it does); gains and expression hotkeys are added below from their tables
KEYS: dict[str, tuple[str, str]] = {
    "c": ("calibrate", "calibrate: look straight ahead, relax, press"),
    **{k: ("cycle", f"next {label}") for k, (label, _) in CYCLES.items()},
    **{k: ("gain", f"{g.label} {'up' if k == g.up else 'down'}") for g in GAINS
       for k in (g.down, g.up)},
    "m": ("mirror", "mirror the camera image on/off"),
    **{k: ("expression", f"expression preset {k}") for k in HOTKEYS},
    "s": ("save", "save to the profile"),
    "q": ("quit", "quit"),
    "escape": ("quit", "quit"),
}
# Profile sections the running stages take through LiveTarget.apply_settings.
_APPLIED = ("retarget", "smoothing", "breathing", "idle", "lipsync")


def key_help() -> list[tuple[str, str]]:
    """(keys, what they do) for the preview overlay, --help and the README."""
    rows = [("c", KEYS["c"][1]), ("e", KEYS["e"][1]), ("w", KEYS["w"][1])]
    rows += [(f"{g.down} / {g.up}", f"{g.label} down / up") for g in GAINS]
    rows += [("m", KEYS["m"][1]), ("1-9", "expression presets (hold presets toggle in the "
                                          "window: it reports no key releases)"),
             ("s", KEYS["s"][1]), ("q / Esc", "quit")]
    return rows


class Controls:
    """The run's tunable profile and the actions that change it and the running stages.

    ``target`` may be None (no running pipeline: tests, tools); then only the profile changes.
    ``path`` is where ``save`` writes (None: nowhere to save).
    """

    def __init__(self, profile: Profile, path: Path | str | None = None,
                 target: LiveTarget | None = None):
        self.profile = profile
        self.path = Path(path) if path is not None else None
        self.target = target
        self._saved = profile           # what the file holds for the keys we changed
        self._held: dict[str, Any] = {}  # hotkey -> hold preset currently held down

    @property
    def dirty(self) -> bool:
        return self.profile != self._saved

    # -- keys ----------------------------------------------------------------------------------

    def key(self, event: KeyEvent) -> ControlEvent | None:
        """One key event from an interactive input -> the action bound to it (None: unbound)."""
        bound = KEYS.get(event.key)
        if bound is None:
            return None
        action = bound[0]
        if action == "expression":
            return self.expression(event.key, pressed=event.pressed, releases=event.releases)
        if not event.pressed:
            return None
        if action == "calibrate":
            return self.calibrate()
        if action == "cycle":
            return self.cycle(CYCLES[event.key][1], CYCLES[event.key][0])
        if action == "gain":
            gain = next(g for g in GAINS if event.key in (g.down, g.up))
            return self.nudge(gain, up=event.key == gain.up)
        if action == "mirror":
            # The source's own state, in case it was mirrored some other way meanwhile.
            current = self.target.mirror if self.target is not None else \
                self.profile.camera.mirror
            return self.set_value("camera.mirror", not current)
        if action == "save":
            return self.save()
        return self.quit("quit key")

    def press(self, key: str | int) -> ControlEvent | None:
        """A key by character or cv2.waitKey code, pressed (an input without releases)."""
        if isinstance(key, int):
            if key < 0:
                return None
            key = "escape" if key & 0xFF == 27 else chr(key & 0xFF)
        return self.key(KeyEvent(key))

    # -- actions -------------------------------------------------------------------------------

    def calibrate(self) -> ControlEvent:
        if self.target is None:
            return ControlEvent("calibrate", "calibration is not available here")
        calibration = self.target.calibrate()
        if calibration is None:
            return ControlEvent("calibrate", "no face in view: look at the camera and press "
                                "again")
        self._change(S.with_value(self.profile, "calibration", calibration))
        return ControlEvent("calibrate", "calibrated: neutral pose saved (press s to keep it)",
                            key="calibration")

    def cycle(self, key: str, label: str | None = None) -> ControlEvent:
        """Step a choice setting to its next value."""
        info = S.field_info(Profile, key)
        choices = info.spec.choices
        current = S.get_key(self.profile, key)
        current = current.value if isinstance(current, enum.Enum) else current
        nxt = choices[(choices.index(current) + 1) % len(choices)]
        self._change(S.with_value(self.profile, key, nxt))
        return ControlEvent("cycle", f"{label or key}: {nxt}", key=key)

    def nudge(self, gain: Gain, *, up: bool) -> ControlEvent:
        factor = STEP if up != gain.inverse else 1.0 / STEP
        profile = self.profile
        shown = []
        for key, base_key in gain.keys:
            base = float(S.get_key(profile, base_key)) if base_key else 0.0
            info = S.field_info(Profile, key)
            span = float(S.get_key(profile, key)) - base
            if span == 0.0 and factor > 1.0:
                # zero cannot grow by a factor: step to a tenth of the field's range instead
                lo, hi = info.range or (0.0, 1.0)
                new = base + 0.1 * ((hi if hi is not None else 1.0) - (lo if lo is not None
                                                                       else 0.0))
            else:
                new = base + span * factor
            new = float(f"{new:.3g}")  # 1.21 in the file, not 1.2100000000000002
            if info.range is not None:
                lo, hi = info.range
                new = min(hi, new) if hi is not None else new
                new = max(lo, new) if lo is not None else new
            if info.spec.kind == "int":
                new = int(round(new))
            try:
                profile = C.set_raw(profile, key, new, source="tuning", check_files=False)
            except ProfileError as exc:
                return ControlEvent("gain", f"{gain.label}: at its limit ({exc.problem})",
                                    key=key)
            shown.append(f"{key} = {new:g}")
        if profile == self.profile:
            return ControlEvent("gain", f"{gain.label}: at its limit", key=gain.keys[0][0])
        self._change(profile)
        direction = "up" if up else "down"
        return ControlEvent("gain", f"{gain.label} {direction}: " + ", ".join(shown),
                            key=gain.keys[0][0])

    def set_value(self, key: str, raw: Any, source: str = "tuning") -> ControlEvent:
        """Set one live-tunable key from a TOML-typed value (the panel's sliders, the API).

        Raises:
            ProfileError: not a live-tunable key, or an invalid value (the profile's message).
        """
        try:
            info = S.field_info(Profile, key)
        except KeyError:
            raise ProfileError(source, key, "not a settings key; see profiles/default.toml") \
                from None
        if not info.live:
            raise ProfileError(source, key, "cannot change while thacam runs; edit the profile "
                               "and start again")
        self._change(C.set_raw(self.profile, key, raw, source=source, check_files=False))
        shown = S.get_key(self.profile, key)
        if key == "camera.mirror":
            if self.target is not None:
                self.target.set_mirror(shown)
            return ControlEvent("mirror", f"mirror {'on' if shown else 'off'}", key=key)
        return ControlEvent("set", f"{key} = {shown}", key=key)

    def expression(self, hotkey: str, *, pressed: bool = True,
                   releases: bool = False) -> ControlEvent | None:
        """An expression key went down (``pressed``) or up. Hold presets follow the key where
        the input reports releases; everything else toggles on each press."""
        preset = self.profile.expressions.get(hotkey)
        if preset is None:
            return ControlEvent("expression", f"no expression on key {hotkey}", hotkey=hotkey) \
                if pressed else None
        hold = preset.mode == "hold" and releases
        if self.target is None:
            return ControlEvent("expression", f"expression {hotkey}: {preset.name}",
                                preset=preset, hotkey=hotkey)
        if not pressed:
            if hold and self._held.pop(hotkey, None) is not None:
                self.target.release_expression(preset)
                return ControlEvent("expression", f"{preset.name} off", preset=preset,
                                    hotkey=hotkey)
            return None
        if hold:
            self._held[hotkey] = preset
            self.target.press_expression(preset)
            return ControlEvent("expression", f"{preset.name} on (while held)", preset=preset,
                                hotkey=hotkey)
        # Toggle: on unless this very preset is the one on now.
        active = getattr(self.target, "expression", None)
        toggle = preset if preset.mode == "toggle" else _as_toggle(preset)
        self.target.press_expression(toggle)
        on = active is None or active.name != preset.name
        return ControlEvent("expression", f"{preset.name} {'on' if on else 'off'}",
                            preset=preset, hotkey=hotkey)

    def save(self) -> ControlEvent:
        """Write the keys changed in this run back to the profile (comments kept). A failure is
        a message, never an exception: the run goes on."""
        if self.path is None:
            return ControlEvent("save", "no profile file to save to")
        keys = [k for k, _ in C.changes(self.profile, self._saved)]
        try:
            save_profile(self.profile, self.path, keys=keys)
        except (ProfileError, OSError) as exc:
            log.warning("profile not saved: %s", exc)
            return ControlEvent("save", f"not saved: {exc}")
        self._saved = self.profile
        return ControlEvent("save", f"saved {self.path}")

    def quit(self, reason: str = "quit") -> ControlEvent:
        if self.target is not None:
            self.target.stop(reason)
        return ControlEvent("quit", "quitting")

    # -- the one place changes reach the running stages ----------------------------------------

    def _change(self, profile: Profile) -> None:
        old, self.profile = self.profile, profile
        if self.target is None:
            return
        changed = {s: getattr(profile, s) for s in _APPLIED
                   if getattr(profile, s) != getattr(old, s)}
        if changed:
            self.target.apply_settings(**changed)


def _as_toggle(preset: Any) -> Any:
    return dataclasses.replace(preset, mode="toggle")

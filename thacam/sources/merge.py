"""Several face sources at once (``--source ifacialmocap --source webcam``): failover, and
optionally a source per part of the face (``--source-channels head=webcam,mouth=ifacialmocap``).

``MergedFaces`` is one FaceSource around others, so the pipeline and ``thacam track`` still see
one source (as ``MicFaces`` wraps one). Each inner source is read by a thread of its own, since
``next`` may do real work there (the webcam tracks its frame inside ``next``); each keeps only
its newest sample. Whenever a source that drives something brings a new sample, ``next`` hands
out one merged sample.

Who drives: each part of the face (``CHANNELS``) goes to the first source, in its order, whose
newest sample has a face no older than ``stale_s``. The order is the ``--source`` order (the
first is preferred), or for a part named in ``channels`` that source first and the others after
it. So a phone that sleeps, quits or drops off the Wi-Fi hands over once its last face is
``stale_s`` old, a webcam that loses the face hands over on its next frame (its newest sample
says "no face"), and the preferred source takes back on its first face. The animator smooths
the handover like any other motion.

Head angles on handover: the user calibrates once (the profile holds one neutral pose, taken
from whatever drove then), but two trackers read the same head differently (a phone on the
desk below the monitor sees the chin up, a webcam beside it sees the face turned). So while a
fallback source sees the face together with the head's preferred source, the difference of
their angles is averaged (``AngleAlignment``), and when the fallback drives the head its angles
are moved by that difference: the head stays where it was, and the one calibration holds for
every source. A source that never saw the face together with the preferred one is used as it
reads.

Landmarks (MediaPipe's mesh: retarget reads the lip gap and the brow heights from it) travel
with the parts they describe: kept only when the source that has them drives both the mouth and
the brows, else dropped, so that neither the mouth nor the brows follow a source that does not
drive them (retarget then reads both from the scores).

Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..capture import now_ms
from ..errors import UserError
from ..settings import Settings, setting
from ..tracking import BLENDSHAPE_NAMES, Blendshapes, FaceObservation
from . import FaceSample, FaceSource, SourceContext, SourceStats, create_source

__all__ = ["MergedFaces", "MergeSettings", "CHANNELS", "parse_channels", "AngleAlignment"]

log = logging.getLogger(__name__)

CHANNELS = ("head", "eyes", "brows", "mouth")


def _channel_of(name: str) -> str:
    if name.startswith("eye"):
        return "eyes"
    if name.startswith("brow"):
        return "brows"
    return "mouth"          # jaw, mouth, cheek, nose, tongue: the lower face moves together


# Blendshape indices per part; the head owns the angles.
_SHAPES = {c: np.array([i for i, n in enumerate(BLENDSHAPE_NAMES) if _channel_of(n) == c], int)
           for c in CHANNELS if c != "head"}


@dataclass(frozen=True)
class MergeSettings(Settings):
    """Two or more face sources at once (--source A --source B): the first listed drives while
    it sees a face, the next one that does takes over when it does not."""

    stale_s: float = setting(
        0.5, 0.05, 5.0, help="A source whose newest face is older than this (seconds) has lost "
        "it: the next source that sees a face drives until it is back.", flag="--source-stale",
        metavar="S")
    channels: str = setting(
        "", help="Which source drives which part of the face, e.g. "
        "\"head=webcam,mouth=ifacialmocap\" (parts: head, eyes, brows, mouth; a source by its "
        "--source name, or NAME:ARG when one name is given twice); a part left out follows the "
        "--source order, and each part falls back to the other sources as a whole face does.",
        flag="--source-channels", metavar="PART=NAME,...",
        cli_help="Which source drives which part of the face, e.g. head=webcam,mouth=ifacialmocap "
        "(parts: head, eyes, brows, mouth); each part falls back in --source order.")
    align: bool = setting(
        True, help="Move a fallback source's head angles by how it reads the head differently "
        "from the preferred source (learnt while both see the face), so a handover does not "
        "turn the head.")


def parse_channels(text: str, specs: Sequence[str]) -> dict[str, int]:
    """``head=webcam,mouth=ifacialmocap`` -> {part: index into ``specs``}.

    Raises:
        UserError: an unknown part, a part given twice, or a source not in ``specs``.
    """
    out: dict[str, int] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        part, eq, name = (x.strip() for x in item.partition("="))
        if not eq or part not in CHANNELS:
            raise UserError(f"--source-channels {text}: {item!r} is not PART=NAME with PART one "
                            f"of {', '.join(CHANNELS)}; write it like head=webcam,mouth="
                            "ifacialmocap")
        if part in out:
            raise UserError(f"--source-channels {text}: {part} is given twice")
        exact = [i for i, s in enumerate(specs) if s == name]
        named = [i for i, s in enumerate(specs) if s.split(":")[0] == name]
        found = exact or named
        if len(found) != 1:
            why = "is given twice as --source: name it as NAME:ARG" if found else \
                "is not one of the --source values"
            raise UserError(f"--source-channels {text}: {name} {why} ({', '.join(specs)})")
        out[part] = found[0]
    return out


class AngleAlignment:
    """How much a source's (yaw, pitch, roll) differ from the reference source's for the same
    head, averaged over the moments both see it (a running mean, then an exponential one so it
    follows a phone that was moved).

    Each reading of the source is held against the reference's angles at that very time,
    interpolated between the two reference readings around it: a head that moves would
    otherwise read as an offset whenever one tracker's packet happens to arrive first."""

    def __init__(self, pair_ms: float = 100.0, rate: float = 0.02):
        self.pair_ms = pair_ms      # reference readings further apart than this: not tracking
        self.rate = rate            # ~50 readings (about a second) weigh in once settled
        self.offset = np.zeros(3)
        self.count = 0
        self._pending: FaceObservation | None = None

    def seen(self, obs: FaceObservation) -> None:
        """The source's newest face (paired once the reference reads past its time)."""
        self._pending = obs

    def reference(self, before: FaceObservation, after: FaceObservation) -> None:
        """Two consecutive readings of the reference source."""
        p = self._pending
        if p is None or p.t_ms > after.t_ms:
            return
        self._pending = None
        span = after.t_ms - before.t_ms
        if p.t_ms < before.t_ms or span > self.pair_ms:
            return
        w = (p.t_ms - before.t_ms) / span if span > 0 else 1.0
        ref = [a + w * (b - a) for a, b in ((before.yaw, after.yaw), (before.pitch, after.pitch),
                                            (before.roll, after.roll))]
        d = np.array([p.yaw, p.pitch, p.roll]) - ref
        self.count += 1
        self.offset += max(1.0 / self.count, self.rate) * (d - self.offset)

    def reset(self) -> None:
        self.offset[:] = 0.0
        self.count = 0
        self._pending = None


class MergedFaces(FaceSource):
    """Face sources in order of preference, merged into one (see the module's docstring)."""

    def __init__(self, sources: Sequence[FaceSource], names: Sequence[str] | None = None,
                 settings: MergeSettings | None = None, channels: dict[str, int] | None = None):
        if len(sources) < 2:
            raise ValueError("MergedFaces needs two sources or more")
        self.sources = list(sources)
        self.names = list(names or [getattr(s, "name", f"source{i}")
                                    for i, s in enumerate(sources)])
        self.settings = settings or MergeSettings()
        n = len(self.sources)
        chosen = channels or {}
        # Per part: the source named for it first, then the rest in --source order.
        self.order = {c: ([chosen[c]] if c in chosen else [])
                      + [i for i in range(n) if i != chosen.get(c)] for c in CHANNELS}
        self.reference = self.order["head"][0]
        self.alignment = [AngleAlignment() for _ in range(n)]
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._newest: list[FaceSample | None] = [None] * n
        self._reference_face: FaceObservation | None = None
        self._arrived = [0] * n
        self._used = [0] * n
        self._woken = 0
        self._index = 0
        self._last_t = -np.inf
        self._drivers: dict[str, int | None] = {c: None for c in CHANNELS}
        self.handovers: list[tuple[float, dict[str, int | None]]] = []   # (now_ms, drivers)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._failed_reads = [0] * n

    @classmethod
    def from_specs(cls, specs: Sequence[str], ctx: SourceContext,
                   settings: MergeSettings | None = None) -> "MergedFaces":
        """``--source`` values (two or more) -> one unopened source.

        Raises:
            UserError: an unknown or repeated source, the microphone among them, or a
                ``channels`` rule that names something else.
        """
        settings = settings or MergeSettings()
        for i, spec in enumerate(specs):
            if spec in specs[:i]:
                raise UserError(f"--source {spec} is given twice; give each face source once")
            if spec.split(":")[0] == "mic":
                raise UserError(f"--source {spec} cannot be one of several face sources (it "
                                "sees no face); add the microphone with --mic instead")
        channels = parse_channels(settings.channels, specs)
        return cls([create_source(s, ctx) for s in specs], specs, settings, channels)

    @property
    def description(self) -> str:      # type: ignore[override]
        return ", else ".join(s.description for s in self.sources)

    # -- lifetime ----------------------------------------------------------------------------
    def check(self) -> None:
        ports: dict[int, str] = {}
        for name, source in zip(self.names, self.sources):
            port = getattr(source, "port", None)
            if isinstance(port, int) and port > 0:
                if port in ports:
                    raise UserError(f"--source {ports[port]} and --source {name} both listen on "
                                    f"UDP port {port}; give one another port, e.g. "
                                    f"--source {name.split(':')[0]}:{port + 1}")
                ports[port] = name
        for source in self.sources:
            source.check()

    def open(self) -> "MergedFaces":
        opened: list[FaceSource] = []
        try:
            for source in self.sources:
                source.open()
                opened.append(source)
        except BaseException:
            for source in reversed(opened):
                _close_quietly(source)
            raise
        self._stop.clear()
        self._threads = [threading.Thread(target=self._read, args=(i,), daemon=True,
                                          name=f"thacam-merge-{self.names[i]}")
                         for i in range(len(self.sources))]
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        self._stop.set()
        for source in self.sources:
            source.wake()
        for t in self._threads:
            t.join(1.5)
        self._threads = []
        for source in reversed(self.sources):
            _close_quietly(source)

    def wake(self) -> None:
        with self._cond:
            self._woken += 1
            self._cond.notify_all()

    # -- the readers -------------------------------------------------------------------------
    def _read(self, i: int) -> None:
        source = self.sources[i]
        try:
            while not self._stop.is_set():
                try:
                    sample = source.next(timeout=0.1)
                except Exception as exc:        # one bad input must not end the run
                    self._failed_reads[i] += 1
                    if self._failed_reads[i] == 1:
                        log.warning("%s: reading failed (%s); further failures are only "
                                    "counted", source.description, exc)
                    continue
                if sample is not None:
                    self._take(i, sample)
        except BaseException as exc:    # the pipeline re-raises it in its main thread
            self.error = exc

    def _take(self, i: int, sample: FaceSample) -> None:
        with self._cond:
            self._newest[i] = sample
            if sample.obs is not None and self.settings.align:
                if i != self.reference:
                    self.alignment[i].seen(sample.obs)
                else:
                    if self._reference_face is not None:
                        for a in self.alignment:        # (the reference's own: never seen)
                            a.reference(self._reference_face, sample.obs)
                    self._reference_face = sample.obs
            self._arrived[i] += 1
            self._cond.notify_all()

    # -- merging -----------------------------------------------------------------------------
    def _sees(self, i: int, now: float) -> bool:
        """Whether source ``i`` sees a face now: its newest sample has one, and it is fresh."""
        newest = self._newest[i]
        return (newest is not None and newest.obs is not None
                and now - newest.t_ms <= self.settings.stale_s * 1000.0
                and self.sources[i].connected)

    def next(self, timeout: float) -> FaceSample | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            woken = self._woken
            while True:
                changed = [i for i, (a, u) in enumerate(zip(self._arrived, self._used)) if a > u]
                if changed:
                    self._used = list(self._arrived)
                    merged = self._merge(changed)
                    if merged is not None:
                        return merged
                left = deadline - time.monotonic()
                if left <= 0 or self._woken != woken:
                    return None
                self._cond.wait(left)

    def _merge(self, changed: list[int]) -> FaceSample | None:
        """The merged sample for what just arrived; None when it came from sources that drive
        nothing now (their faces are only kept for a handover)."""
        now = now_ms()
        seeing = [self._sees(i, now) for i in range(len(self.sources))]
        drivers = {c: next((i for i in self.order[c] if seeing[i]), None) for c in CHANNELS}
        self._note(drivers)
        driving = {i for i in drivers.values() if i is not None}
        if not driving:
            # Nobody sees a face: say so once per arrival, from the newest input (its frame).
            sample = max((self._newest[i] for i in changed), key=lambda s: s.t_ms)
            return self._numbered(sample.t_ms, None, sample.frame, sample.sense_ms)
        fresh = [i for i in changed if i in driving]
        if not fresh:
            return None
        trigger = max((self._newest[i] for i in fresh), key=lambda s: s.t_ms)
        obs = self._mixed(drivers, trigger.t_ms)
        frame = next((self._newest[i].frame for i in (drivers["head"], *driving)
                      if i is not None and self._newest[i].frame is not None), None)
        return self._numbered(obs.t_ms, obs, frame, trigger.sense_ms)

    def _mixed(self, drivers: dict[str, int | None], t_ms: float) -> FaceObservation:
        head_i = drivers["head"]
        head = self._newest[head_i].obs
        scores = np.array(head.blendshapes.array)
        for part, idx in _SHAPES.items():
            if drivers[part] != head_i:
                scores[idx] = self._newest[drivers[part]].obs.blendshapes.array[idx]
        yaw, pitch, roll = head.yaw, head.pitch, head.roll
        if self.settings.align and head_i != self.reference:
            dy, dp, dr = self.alignment[head_i].offset
            yaw, pitch, roll = yaw - dy, pitch - dp, roll - dr
        # The mesh goes with the mouth and brows, when one source drives both (the docstring).
        mesh = self._newest[drivers["mouth"]].obs if drivers["mouth"] == drivers["brows"] \
            else None
        extra: dict[str, Any] = {}
        if mesh is None or mesh.landmarks.shape[0] == 0:
            extra = {"landmarks": np.zeros((0, 3), np.float32), "image_size": (0, 0),
                     "matrix": None}
        elif mesh is not head:
            extra = {"landmarks": mesh.landmarks, "image_size": mesh.image_size,
                     "matrix": mesh.matrix}
        # Retarget's rolling baselines want time to go forward; inputs differ by a few ms.
        t = max(t_ms, self._last_t)
        self._last_t = t
        return dataclasses.replace(head, blendshapes=Blendshapes(scores), yaw=yaw, pitch=pitch,
                                   roll=roll, t_ms=t, **extra)

    def _numbered(self, t_ms: float, obs: Any, frame: Any, sense_ms: float) -> FaceSample:
        self._index += 1
        return FaceSample(t_ms, obs, self._index - 1, frame, sense_ms)

    def _note(self, drivers: dict[str, int | None]) -> None:
        if drivers == self._drivers:
            return
        self._drivers = dict(drivers)
        self.handovers.append((now_ms(), dict(drivers)))
        log.info("face source: %s", self._who(drivers))

    def _who(self, drivers: dict[str, int | None]) -> str:
        if all(i is None for i in drivers.values()):
            return "no source sees a face"
        if len(set(drivers.values())) == 1:
            return f"{self.names[drivers['head']]} drives"      # type: ignore[index]
        return ", ".join(f"{c} from {self.names[i] if i is not None else 'none'}"
                         for c, i in drivers.items())

    # -- what the run shows ------------------------------------------------------------------
    @property
    def drivers(self) -> dict[str, int | None]:
        """Which source (index) drives each part, as of the last merged sample."""
        with self._cond:
            return dict(self._drivers)

    def status_rows(self) -> list[dict[str, Any]]:
        drivers = self.drivers
        now = now_ms()
        with self._cond:
            seeing = [self._sees(i, now) for i in range(len(self.sources))]
        return [{"description": s.description, "connected": s.connected, "face": seeing[i],
                 "drives": [c for c, d in drivers.items() if d == i]}
                for i, s in enumerate(self.sources)]

    @property
    def error(self) -> BaseException | None:      # type: ignore[override]
        return self._error or next((s.error for s in self.sources if s.error is not None), None)

    @error.setter
    def error(self, exc: BaseException | None) -> None:
        self._error = exc

    @property
    def connected(self) -> bool:
        return any(s.connected for s in self.sources)

    @property
    def newest_index(self) -> int | None:
        return self._index - 1 if self._index else None

    @property
    def mirror(self) -> bool:
        return self.sources[0].mirror

    def set_mirror(self, mirror: bool) -> bool:
        state = False
        for source in self.sources:
            state = source.set_mirror(mirror) or state
        with self._cond:
            # Mirrored, the sources' yaw and roll differences change sign: learn them anew.
            for a in self.alignment:
                a.reset()
        return state

    def stats(self) -> SourceStats:
        parts = [s.stats() for s in self.sources]
        return SourceStats(sum(p.inputs for p in parts), sum(p.losses for p in parts),
                           sum(p.reopens for p in parts),
                           tuple(ms for p in parts for ms in p.read_ms))


def _close_quietly(source: FaceSource) -> None:
    try:
        source.close()
    except Exception:
        log.exception("closing %s failed", source.description)

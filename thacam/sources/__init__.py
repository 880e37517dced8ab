"""Face sources: where faces come from, behind one small interface and a registry.

A face source senses a face again and again and hands out the newest thing it saw as a
``FaceSample`` (timestamped ``FaceObservation``, or None for "no face"). The webcam with MediaPipe
is one (thacam.sources.webcam); a phone tracker sending blendshapes over the network, or a
microphone driving the mouth, are others: each is one module with a ``FaceSource`` subclass and one
``SOURCES.register`` line below, named for ``--source NAME[:ARG]``. The live pipeline and the
offline ``track`` command only ever see this interface, so they do not care where a face comes
from; the retarget stage turns every observation into a pose the same way.

Must not import torch (or cv2/mediapipe: the registry imports a source's module only when that
source is asked for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..capture import CameraSettings, Frame
from ..registry import Registry

__all__ = ["FaceSample", "FaceSource", "SourceContext", "SourceStats", "create_source",
           "SOURCES"]


@dataclass(frozen=True)
class FaceSample:
    """One sensing of the face. ``t_ms`` is when its input was captured (capture.now_ms clock;
    offline: the file's clock), ``index`` counts the inputs this source has sensed."""

    t_ms: float
    obs: Any | None                 # FaceObservation, or None: no face in this input
    index: int
    frame: Frame | None = None      # the camera image, when there is one (the preview shows it)
    sense_ms: float = 0.0           # time spent turning the input into the observation
    speech: Any | None = None       # lipsync.Speech heard with it, when a source hears sound


@dataclass(frozen=True)
class SourceStats:
    inputs: int = 0                 # inputs read (camera frames, packets)
    losses: int = 0                 # times the input was lost mid-run
    reopens: int = 0                # times it came back
    read_ms: tuple[float, ...] = field(default=(), repr=False)  # recent input read times


class FaceSource:
    """The interface. ``open`` (raises a UserError when the input cannot start), then ``next``
    from one thread, then ``close``. Sources that read in a thread of their own report a failure
    of that thread in ``error``, which the pipeline raises in its main thread."""

    description = "face source"
    error: BaseException | None = None

    @classmethod
    def from_spec(cls, arg: str | None, ctx: "SourceContext") -> "FaceSource":
        """Build from ``--source NAME[:ARG]`` (ARG after the colon, or None) and the run."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise a UserError now when the input certainly cannot start (called before the
        model loads, so a wrong camera fails in a second, not after the load)."""

    def open(self) -> "FaceSource":
        return self

    def next(self, timeout: float) -> FaceSample | None:
        """The newest sample sensed after the last one returned, waiting up to ``timeout``
        seconds; None when nothing new came (a quiet source: the avatar idles)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def wake(self) -> None:
        """Cut a ``next`` in another thread short (shutdown)."""

    @property
    def connected(self) -> bool:
        """Whether the input is there now (camera open, packets arriving)."""
        return True

    @property
    def newest_index(self) -> int | None:
        """Index of the newest input the source holds (sensed or not): tells skipped inputs."""
        return None

    def speech(self) -> Any | None:
        """The newest lipsync.Speech, for sources that hear (None: no sound). Read at render
        time, so the mouth is as fresh as the sound, whatever the camera's rate."""
        return None

    def set_mirror(self, mirror: bool) -> bool:
        """Mirror left and right (selfie view). Returns the new state (False if unsupported)."""
        return False

    @property
    def mirror(self) -> bool:
        return False

    def stats(self) -> SourceStats:
        return SourceStats()

    def status_rows(self) -> list[dict[str, Any]]:
        """One row per input for the live status and the panel: description, connected (a
        source made of several says which sees a face and which parts each drives)."""
        return [{"description": self.description, "connected": self.connected}]

    def __enter__(self) -> "FaceSource":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class SourceContext:
    """What a source may need from the run."""

    camera: CameraSettings = CameraSettings()
    weights_dir: Path | None = None
    # A video file given as the camera keeps its own size and rate unless these say otherwise.
    file_size: tuple[int, int] | None = None
    file_fps: float | None = None
    lipsync: Any = None             # lipsync.LipSyncSettings for sources that hear (None: defaults)
    phone: str | None = None        # --phone: the address a phone tracker gets its handshake at


SOURCES = Registry("a face source", "--source")


def create_source(spec: str, ctx: SourceContext) -> FaceSource:
    """``--source`` value -> an unopened source.

    Raises:
        UserError: an unknown name (the message lists the names).
    """
    return SOURCES.create(spec, ctx)


# The face sources thacam has. A new one: a module with a FaceSource subclass, and one line here.
SOURCES.register("webcam", "thacam.sources.webcam:WebcamFaces",
                 "the camera (--camera: an index, a device or a video file) tracked by MediaPipe")
SOURCES.register("mic", "thacam.sources.audio:MicFaces",
                 "a microphone alone (mic:DEVICE, a number or part of a name): idle motion and "
                 "lip sync, no camera", usage="mic[:DEVICE]")
SOURCES.register("ifacialmocap", "thacam.sources.ifacialmocap:IFacialMocapFaces",
                 "the iFacialMocap iPhone app over UDP (default port 49983; --phone IP sends it "
                 "the start handshake)", usage="ifacialmocap[:PORT]")
SOURCES.register("vmc", "thacam.sources.vmc:VmcFaces",
                 "a VMC protocol sender (OSC over UDP: shapes and the head bone; default port "
                 "39539)", usage="vmc[:PORT]")
SOURCES.register("openseeface", "thacam.sources.openseeface:OpenSeeFaceFaces",
                 "OpenSeeFace's facetracker.py (VSeeFace's webcam tracker) over UDP (default port "
                 "11573)", usage="openseeface[:PORT]")

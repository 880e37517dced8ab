"""What the network face trackers (iFacialMocap, VMC) share: a UDP port read by a thread of its own.

A phone or desktop tracker sends one datagram per tracked frame. ``UdpFaces`` binds the port,
reads datagrams in a receiver thread, has the protocol's ``decode`` turn each into a
FaceObservation and keeps only the newest in a ``Latest`` slot, so ``next`` never works through a
backlog (a burst of packets after a Wi-Fi stall costs nothing). Decoding happens on arrival, so
a bad packet never displaces the last good one.

Bad packets (malformed, truncated, oversized, another protocol: thacam.errors.BadPacket) never
stop the thread: each is counted by kind, the first of each kind is logged, the rest only counted
(``packet_stats``). A decoder bug is caught the same way, as "malformed", so one odd sender
cannot end a stream.

A tracker that goes quiet (no good packet for ``quiet_s``) is a lost input, as an unplugged
camera is: ``connected`` turns False, ``next`` returns None, the pipeline lets the idle layer
take over, and the next good packet resumes it. While quiet, ``greet`` is called every
``greet_every_s`` (iFacialMocap asks the phone to start sending again).

Pitch: these trackers read a face looking straight ahead as pitch 0, where MediaPipe reads
about 8 deg chin-down, which retarget subtracts until the user calibrates (pitch_bias_deg). So
that an uncalibrated phone looks ahead as an uncalibrated webcam does, observations get that
frontal pitch added (``FRONTAL_PITCH_DEG``); calibration then removes either alike.

Mirroring (the profile's camera.mirror, the ``m`` key) is applied here as the webcam applies it by
flipping its frame: left and right shapes exchanged, yaw and roll negated, so everything
downstream describes the mirrored picture and nothing else needs to know. Decoders return the
tracker's face in tracking.py's conventions for an unmirrored camera facing the user, pitch 0
straight ahead.

Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass, field

from ..capture import Latest, now_ms
from ..errors import BadPacket, SourceError
from ..retarget import RetargetSettings
from ..tracking import FaceObservation
from . import FaceSample, FaceSource, SourceStats

__all__ = ["UdpFaces", "PacketStats", "mirrored", "parse_port", "finite", "FRONTAL_PITCH_DEG"]

log = logging.getLogger(__name__)

# A full iFacialMocap v2 frame is ~1.5 KB and a VMC bundle with every ARKit shape ~3 KB; anything
# far larger is not a face frame (and reading it would only cost time).
MAX_PACKET = 16 * 1024

# What MediaPipe reads for a face looking straight ahead (retarget's default pitch bias).
FRONTAL_PITCH_DEG = RetargetSettings().pitch_bias_deg


@dataclass(frozen=True)
class PacketStats:
    received: int = 0                    # datagrams read
    faces: int = 0                       # decoded into an observation
    rejected: dict[str, int] = field(default_factory=dict)   # BadPacket kind -> count

    @property
    def dropped(self) -> int:
        return sum(self.rejected.values())


def mirrored(obs: FaceObservation) -> FaceObservation:
    """The observation a mirrored camera would have given: left and right exchanged."""
    return dataclasses.replace(obs, blendshapes=obs.blendshapes.swapped(), yaw=-obs.yaw,
                               roll=-obs.roll, mirrored=not obs.mirrored)


def parse_port(name: str, arg: str | None, default: int) -> int:
    """``--source NAME[:PORT]`` -> the UDP port (0: any free port, for tests).

    Raises:
        SourceError: PORT is not a number from 0 to 65535.
    """
    if arg is None:
        return default
    try:
        port = int(arg)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise SourceError(f"--source {name}:{arg}: the port must be a number from 0 to 65535; "
                          f"write it like {name}:{default}")
    return port


def finite(values: list[float], what: str) -> list[float]:
    """The values, or BadPacket when one is NaN or infinite (a sender's bug, never a pose)."""
    if not all(math.isfinite(v) for v in values):
        raise BadPacket("malformed", f"{what} holds a non-finite number")
    return values


class UdpFaces(FaceSource):
    """A UDP port, a receiver thread and a protocol's ``decode``.

    Subclasses set ``name`` (as in ``--source NAME``) and implement ``decode``; they may
    implement ``greet``.
    """

    name = "udp"

    def __init__(self, port: int, *, host: str = "0.0.0.0", mirror: bool = False,
                 quiet_s: float = 1.0, greet_every_s: float = 2.0,
                 max_packet: int = MAX_PACKET):
        self.host = host
        self.port = port
        self.quiet_s = quiet_s
        self.greet_every_s = greet_every_s
        self.max_packet = max_packet
        self._mirror = bool(mirror)
        self.description = f"{self.name} on UDP port {port}"
        self.error: BaseException | None = None
        self._latest: Latest[FaceSample] = Latest()
        self._seq = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._received = 0
        self._faces = 0
        self._rejected: dict[str, int] = {}
        self._connected = False
        self._last_good = 0.0           # time.monotonic() of the last good packet
        self._last_greet = 0.0
        self._losses = 0
        self._resumes = 0

    # -- the protocol ------------------------------------------------------------------------
    def decode(self, data: bytes, t_ms: float) -> FaceObservation | None:
        """One datagram -> the face it carries (unmirrored, t_ms stamped), or None for a valid
        packet that carries no new frame.

        Raises:
            BadPacket: the datagram is not a readable packet of this protocol.
        """
        raise NotImplementedError

    def greet(self, sock: socket.socket) -> None:
        """Ask the sender to (re)start sending; called on open and while quiet."""

    # -- lifetime ----------------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise SourceError(
                f"--source {self.name}:{self.port}: cannot listen on UDP port {self.port} "
                f"({exc.strerror or exc}); close the program that uses it, or pick another port "
                f"with --source {self.name}:PORT") from None
        return sock

    def check(self) -> None:
        """A port another program holds fails here, before the model loads (binding it once;
        a program that takes it in between still fails at open, with the same line)."""
        if self.port:
            self._bind().close()

    def open(self) -> "UdpFaces":
        sock = self._bind()
        sock.settimeout(0.1)        # how often the thread looks at the stop flag and the clock
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.description = f"{self.name} on UDP port {self.port}"
        self._stop.clear()
        self._greet()
        self._thread = threading.Thread(target=self._run, name=f"thacam-{self.name}",
                                        daemon=True)
        self._thread.start()
        log.info("listening for %s", self.description)
        return self

    def close(self) -> None:
        self._stop.set()
        self._latest.wake()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            st = self.packet_stats()
            bad = ", ".join(f"{n} {kind}" for kind, n in sorted(st.rejected.items()))
            log.info("%s: %d packets, %d faces%s", self.description, st.received, st.faces,
                     f", ignored {bad}" if bad else "")

    def wake(self) -> None:
        self._latest.wake()

    # -- reading -----------------------------------------------------------------------------
    def next(self, timeout: float) -> FaceSample | None:
        got = self._latest.wait_newer(self._seq, timeout)
        if got is None:
            return None
        self._seq, sample = got
        return sample

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def newest_index(self) -> int | None:
        seq = self._latest.seq
        return seq - 1 if seq else None

    @property
    def mirror(self) -> bool:
        return self._mirror

    def set_mirror(self, mirror: bool) -> bool:
        self._mirror = bool(mirror)
        return self._mirror

    def stats(self) -> SourceStats:
        return SourceStats(self._received, self._losses, self._resumes)

    def packet_stats(self) -> PacketStats:
        return PacketStats(self._received, self._faces, dict(self._rejected))

    # -- the receiver thread -----------------------------------------------------------------
    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            while not self._stop.is_set():
                try:
                    # One more byte than allowed: a larger datagram is seen whole and refused.
                    data = sock.recv(max(self.max_packet + 1, 2048))
                except socket.timeout:
                    data = None
                except ConnectionResetError:
                    # Windows reports an earlier handshake's ICMP "port unreachable" here.
                    data = None
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                if data is not None:
                    self._take(data)
                self._watch_quiet()
        except BaseException as exc:    # the pipeline re-raises it in its main thread
            self.error = exc
            log.debug("%s receiver failed", self.name, exc_info=True)

    def _take(self, data: bytes) -> None:
        t = now_ms()
        self._received += 1
        if len(data) > self.max_packet:
            self._reject(BadPacket("oversized", f"more than the {self.max_packet} bytes a face "
                                                "frame takes"))
            return
        try:
            obs = self.decode(data, t)
        except BadPacket as exc:
            self._reject(exc)
            return
        except Exception as exc:        # a decoder bug must not end the stream either
            self._reject(BadPacket("malformed", f"{type(exc).__name__}: {exc}"))
            return
        if obs is None:
            return
        obs = dataclasses.replace(obs, pitch=obs.pitch + FRONTAL_PITCH_DEG)
        if self._mirror:
            obs = mirrored(obs)
        self._faces += 1
        self._last_good = time.monotonic()
        if not self._connected:
            self._connected = True
            if self._faces > 1:
                self._resumes += 1
                log.warning("%s: packets are back", self.description)
            else:
                log.info("%s: first packet", self.description)
        self._latest.put(FaceSample(t, obs, self._faces - 1, None, now_ms() - t))

    def _reject(self, exc: BadPacket) -> None:
        first = exc.kind not in self._rejected
        self._rejected[exc.kind] = self._rejected.get(exc.kind, 0) + 1
        if first:
            log.warning("%s: ignoring a bad packet (%s); further ones are only counted",
                        self.description, exc)

    def _watch_quiet(self) -> None:
        now = time.monotonic()
        if self._connected and now - self._last_good > self.quiet_s:
            self._connected = False
            self._losses += 1
            log.warning("%s: no packets for %.1f s; its face is lost until they come back",
                        self.description, self.quiet_s)
        if not self._connected and now - self._last_greet >= self.greet_every_s:
            self._greet()

    def _greet(self) -> None:
        self._last_greet = time.monotonic()
        if self._sock is None:
            return
        try:
            self.greet(self._sock)
        except OSError as exc:      # no route to the phone yet: try again while quiet
            log.debug("%s: greeting the sender failed: %s", self.name, exc)

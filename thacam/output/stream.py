"""The alpha stream output (``--output stream[:PORT]``): live RGBA frames as a NUT stream of raw
video on a local TCP port, for OBS's Media Source to read (``tcp://127.0.0.1:PORT``, format nut).
OBS keeps the straight alpha exactly, with no virtual camera driver and no chroma key.

Why PyAV, muxing in-process, and not an ffmpeg subprocess: PyAV's wheels bundle FFmpeg's
libraries on Linux, macOS and Windows, so a user needs no ffmpeg program; raw video needs no
encoder, so thacam copies a frame once, straight into the packet (the renderer's arrays are
strided views, so some copy is due anyway); a subprocess would add a pipe write, ffmpeg's read
and its own demux/mux copies, and a second process to watch and restart. Inside, FFmpeg's IO
buffer and PyAV's write callback each copy the bytes again on their way to the socket: 0.44 ms of
CPU a 512x512 frame in all, on the sender thread (scripts/stream_latency.py).

Never blocks the frame loop: :meth:`StreamSink.send` only puts the frame in a newest-value slot.
A sender thread owns the socket: it waits for a reader, writes the header and then whatever frame
is newest; frames a slow reader cannot take are dropped (and counted), not queued, and the send
buffer holds about one frame, so a slow reader never adds latency. A reader that goes away (OBS
closed, killed, restarted) is simply waited for again; a new connection replaces the old one.

Timestamps are milliseconds since the reader connected, so a reader that paces playback by them
(OBS does) shows each frame when it arrives, whatever frames were dropped before it.

Must not import torch.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from fractions import Fraction

import numpy as np

from ..errors import SinkUnavailable, UserError
from . import FrameSink, SinkContext, check_frame

__all__ = ["StreamSink", "DEFAULT_HOST", "parse_address", "stream_url"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
# A reader that takes no data for this long is stuck (a frozen OBS): drop it and wait for another.
_STALL_S = 5.0
_POLL_S = 0.2


def parse_address(arg: str | None, port: int) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or nothing (``port``) -> (host, port); only loopback unless a
    host is named."""
    host = DEFAULT_HOST
    if arg:
        h, sep, p = arg.rpartition(":")
        if sep:
            host = h.strip("[]") or DEFAULT_HOST
        try:
            port = int(p)
        except ValueError:
            raise UserError(f"--output stream:{arg}: expected a port number, e.g. "
                            f"--output stream:{port} (or stream:0.0.0.0:PORT to let other "
                            "machines read it)") from None
        if not 1 <= port <= 65535:
            raise UserError(f"--output stream:{arg}: the port must be 1..65535")
    return host, port


def stream_url(host: str, port: int) -> str:
    """What OBS's Media Source reads for a stream served on (host, port)."""
    if host in ("", "0.0.0.0", "::"):
        host = DEFAULT_HOST
    return f"tcp://{host}:{port}"


class _SocketWriter:
    """The file object PyAV writes its output through (it only needs ``write``)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def write(self, data) -> int:
        self.sock.sendall(data)
        return len(data)


class StreamSink(FrameSink):
    """Serves frames as NUT raw video (straight RGBA) to one TCP reader at a time.

    Counters (read any time): ``sent`` frames written to a reader, ``dropped`` frames replaced
    before a connected reader took them, ``connections`` readers served so far, ``cpu_s`` the
    sender thread's CPU time (muxing and writing).

    Raises (on open):
        SinkUnavailable: the port cannot be listened on (in use); the message says what to do.
    """

    description = "alpha stream"

    def __init__(self, size: tuple[int, int], fps: float, host: str, port: int):
        self.size = tuple(size)
        self.fps = float(fps)
        self.host, self.port = host, port
        self.sent = self.dropped = self.connections = 0
        self.cpu_s = 0.0
        self._frame: np.ndarray | None = None        # the newest frame, not yet sent
        self._last: np.ndarray | None = None         # the newest frame, sent or not
        self._seq = 0                                # frames handed in so far
        self._reading = False                        # a reader is connected
        self._cond = threading.Condition()
        self._stop = False
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SinkContext) -> "StreamSink":
        """``--output stream`` ([output] stream_port), ``stream:PORT`` or ``stream:HOST:PORT``."""
        host, port = parse_address(arg, ctx.settings.stream_port)
        return cls(ctx.size, ctx.fps, host, port)

    @property
    def url(self) -> str:
        return stream_url(self.host, self.port)

    @property
    def stream_port(self) -> int:
        """The port OBS's Media Source must read (the live run's OBS setup follows it)."""
        return self.port

    def open(self) -> "StreamSink":
        import av  # noqa: F401 - fail here, with the fix, not in the sender thread
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(4)
        except OSError as exc:
            listener.close()
            raise SinkUnavailable(
                f"the alpha stream cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                "another program (or another thacam) has it: choose another port with "
                "--output stream:PORT and the same port in OBS's Media Source") from None
        self.port = listener.getsockname()[1]        # port 0 = any free one (tests)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="thacam-stream", daemon=True)
        self._thread.start()
        log.info("alpha stream on %s (OBS: Media Source, input %s, format nut)",
                 f"{self.host}:{self.port}", self.url)
        return self

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        check_frame(rgba, self.size)
        with self._cond:
            if self._frame is not None and self._reading:
                self.dropped += 1
            self._frame = self._last = rgba
            self._seq += 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(_STALL_S + 1)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.sent:
            log.info("alpha stream: %d frames sent, %d dropped for a slow reader, %d "
                     "connection(s), %.2f ms CPU a frame", self.sent, self.dropped,
                     self.connections, 1000 * self.cpu_s / self.sent)

    # ------------------------------------------------------------------ sender thread
    def _next_frame(self, after: int) -> tuple[np.ndarray | None, int]:
        """The newest frame handed in after frame number ``after`` (None: stopping/timeout)."""
        with self._cond:
            if self._seq == after and not self._stop:
                self._cond.wait(_POLL_S)
            if self._stop or self._seq == after or self._frame is None:
                return None, after
            frame, self._frame = self._frame, None
            return frame, self._seq

    def _serve(self) -> None:
        cpu0 = time.thread_time()
        try:
            self._serve_readers()
        finally:
            self.cpu_s = time.thread_time() - cpu0

    def _serve_readers(self) -> None:
        import av
        pending: socket.socket | None = None
        while not self._stop:
            client = pending or self._accept()
            pending = None
            if client is None:
                continue
            self.connections += 1
            log.info("alpha stream: a reader connected (%s)", client.getpeername()[0])
            try:
                pending = self._stream_to(client)
            except (OSError, EOFError, av.FFmpegError) as exc:     # a reader gone is normal
                log.info("alpha stream: the reader went away (%s); waiting for it to come "
                         "back", type(exc).__name__)
            except Exception:   # noqa: BLE001 - never let one reader end the stream for good
                log.warning("alpha stream: writing to a reader failed; waiting for another",
                            exc_info=True)
            finally:
                with self._cond:
                    self._reading = False
                client.close()

    def _accept(self) -> socket.socket | None:
        ready, _, _ = select.select([self._listener], [], [], _POLL_S)
        if not ready:
            return None
        try:
            client, _ = self._listener.accept()
        except OSError:
            return None
        frame_bytes = self.size[0] * self.size[1] * 4
        # About one frame in flight (Linux doubles the size asked for): a slow reader makes
        # thacam drop frames, not queue them.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, frame_bytes // 2)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.settimeout(_STALL_S)
        return client

    def _stream_to(self, client: socket.socket) -> socket.socket | None:
        """Write the stream to ``client`` until it goes away, the sink stops, or another reader
        connects (returned: the newest connection wins, e.g. a restarted OBS)."""
        import av
        w, h = self.size
        frame_bytes = w * h * 4
        container = av.open(_SocketWriter(client), mode="w", format="nut",
                            buffer_size=frame_bytes + 4096)
        try:
            stream = container.add_stream("rawvideo", rate=max(1, round(self.fps)))
            stream.width, stream.height, stream.pix_fmt = w, h, "rgba"
            stream.time_base = Fraction(1, 1000)
            with self._cond:
                self._reading = True
                self._frame = None
                frame, seq = self._last, self._seq      # a late reader starts at once
            while frame is None and not self._stop:        # ... or at the first frame
                frame, seq = self._next_frame(seq)
            if frame is None:
                return None
            t0 = time.monotonic()
            self._mux(container, stream, frame, 0)
            self.sent += 1
            last_pts = 0
            while not self._stop:
                if select.select([self._listener], [], [], 0)[0]:
                    newer = self._accept()
                    if newer is not None:
                        log.info("alpha stream: a new reader replaces the old one")
                        return newer
                frame, seq = self._next_frame(seq)
                if frame is None:
                    continue
                last_pts = max(last_pts + 1, round((time.monotonic() - t0) * 1000))
                self._mux(container, stream, frame, last_pts)
                self.sent += 1
            return None
        finally:
            try:
                container.close()
            except Exception:   # noqa: BLE001 - the trailer to a reader that is gone
                pass

    @staticmethod
    def _mux(container, stream, frame: np.ndarray, pts: int) -> None:
        import av
        h, w = frame.shape[:2]
        packet = av.Packet(h * w * 4)
        # The one copy of the frame, strided or not (the renderer's arrays are channel-last views).
        np.copyto(np.frombuffer(packet, np.uint8).reshape(h, w, 4), frame)
        packet.stream = stream
        packet.pts = packet.dts = pts
        packet.time_base = stream.time_base
        packet.is_keyframe = True
        container.mux(packet)

"""Measure --output stream into a real OBS: how old the frame OBS shows is, and the stream's CPU.

    .venv/bin/python scripts/stream_latency.py [--fps 30] [--seconds 20] [--size 512]

Starts OBS under Xvfb (tests/obs_fixtures.py; needs obs-studio and xvfb), sets up the Media Source
exactly as `thacam obs setup` does, and sends frames at --fps whose number is coded in an 8x8
corner block (R = n & 255, G = n >> 8). It then asks OBS for GetSourceScreenshot again and again,
reads the number back and prints, over the samples after a warm-up:

* age of the frame OBS shows, from the moment thacam's send() got it, measured when the
  screenshot request left (the frame was on screen by then) and when the answer came back;
  p50/p95 in ms and in frames at --fps. A frame stays on screen for one frame interval, so the
  age sampled at random is the latency plus half an interval on average;
* the stream's CPU per frame: the sender thread's CPU time (muxing, copying, writing the socket)
  divided by the frames it sent, and the longest send() call (the render thread's whole cost).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from obs_fixtures import HeadlessOBS  # noqa: E402
from thacam.obs import ObsSession, ObsSettings, ensure_setup  # noqa: E402
from thacam.output.stream import StreamSink  # noqa: E402


def frame(n: int, size: int) -> np.ndarray:
    f = np.zeros((size, size, 4), np.uint8)
    f[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = (220, 120, 60, 255)
    f[:8, :8] = (n & 255, (n >> 8) & 255, 0, 255)
    return f


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fps", type=float, default=30.0, help="frames thacam sends a second")
    ap.add_argument("--obs-fps", type=int, default=30, help="OBS's canvas frame rate")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to sample")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds left out at the start")
    ap.add_argument("--size", type=int, default=512, help="frame width and height")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="thacam-latency-"))
    server = HeadlessOBS(root, width=640, height=360, fps=args.obs_fps).start()
    sink = StreamSink((args.size, args.size), args.fps, "127.0.0.1", 0).open()
    produced: dict[int, float] = {}
    longest_send = [0.0]
    stop = threading.Event()

    def produce() -> None:
        n, period, t_next = 0, 1.0 / args.fps, time.perf_counter()
        while not stop.is_set():
            f = frame(n % 65536, args.size)
            t = time.perf_counter()
            produced[n % 65536] = t
            sink.send(f, 0.0)
            longest_send[0] = max(longest_send[0], time.perf_counter() - t)
            n += 1
            t_next += period
            time.sleep(max(0.0, t_next - time.perf_counter()))

    settings = ObsSettings(port=server.port, scene="latency", source="thacam-stream",
                           via="stream", stream_port=sink.port, timeout_s=10.0)
    ages_sent: list[float] = []
    ages_back: list[float] = []
    round_trips: list[float] = []
    try:
        with ObsSession(settings, password="") as session:
            item = ensure_setup(session, settings).scene_item_id
            session.call("SetSceneItemEnabled", {"sceneName": settings.scene,
                                                 "sceneItemId": item, "sceneItemEnabled": True})
            session.call("SetCurrentProgramScene", {"sceneName": settings.scene})
            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            t_start = time.perf_counter()
            while time.perf_counter() - t_start < args.warmup + args.seconds:
                t0 = time.perf_counter()
                shot = session.call("GetSourceScreenshot", {
                    "sourceName": settings.source, "imageFormat": "png",
                    "imageWidth": args.size, "imageHeight": args.size})
                t1 = time.perf_counter()
                img = np.array(Image.open(io.BytesIO(base64.b64decode(
                    shot["imageData"].split(",", 1)[1]))))
                time.sleep(random.uniform(0.0, 0.05))       # sample at random phases
                if t0 - t_start < args.warmup or img[4, 4, 3] != 255:
                    continue
                n = int(img[4, 4, 0]) | int(img[4, 4, 1]) << 8
                if n not in produced:
                    continue
                ages_sent.append(t0 - produced[n])
                ages_back.append(t1 - produced[n])
                round_trips.append(t1 - t0)
    finally:
        stop.set()
        sink.close()
        server.close()
    if not ages_sent:
        print("OBS showed no frame; see", server.log_path)
        return 1
    interval = 1.0 / args.fps
    print(f"thacam --output stream -> OBS {args.obs_fps} fps Media Source, {args.size}x"
          f"{args.size} RGBA at {args.fps:g} fps, {len(ages_sent)} screenshots over "
          f"{args.seconds:g} s (CPU: {os.cpu_count()} cores)")
    for label, ages in (("age when the request left", ages_sent),
                        ("age when the answer came", ages_back)):
        p50, p95 = percentile(ages, 0.5), percentile(ages, 0.95)
        print(f"  {label:28s} p50 {1000 * p50:6.1f} ms ({p50 / interval:.2f} frames)   "
              f"p95 {1000 * p95:6.1f} ms ({p95 / interval:.2f} frames)")
    print(f"  screenshot round trip        p50 {1000 * statistics.median(round_trips):6.1f} ms")
    print(f"  stream CPU (sender thread)   {1000 * sink.cpu_s / max(1, sink.sent):.2f} ms a frame "
          f"over {sink.sent} frames; {sink.dropped} dropped; longest send() "
          f"{1000 * longest_send[0]:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

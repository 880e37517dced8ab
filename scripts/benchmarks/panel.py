"""What the control panel costs the frame loop: prints figures, asserts nothing.

    .venv/bin/python scripts/benchmarks/panel.py [--seconds 5] [--render-ms 20]

1. PanelPreview.send() on the render thread: a frame skipped by the throttle, a frame kept
   (copied), and the PNG encode that runs on the preview thread instead.
2. The live loop with a stand-in renderer that takes --render-ms (a GPU-like frame time): fps and
   the "output" stage with no panel, with the panel, and with the panel and a browser-like
   WebSocket client pulling every preview frame and the state.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from thacam.app import LiveOptions, LiveRun  # noqa: E402
from thacam.capture import now_ms  # noqa: E402
from thacam.output import FrameSink  # noqa: E402
from thacam.panel import PanelAddress  # noqa: E402
from thacam.panel.preview import PanelPreview, encode_png  # noqa: E402
from thacam.profile import Profile  # noqa: E402
from thacam.sources import FaceSample, FaceSource  # noqa: E402
from thacam.tracking import Blendshapes, FaceObservation  # noqa: E402


class Face(FaceSource):
    description = "synthetic face, 60 per second"

    def __init__(self):
        self.i = 0
        self.stop = threading.Event()

    def next(self, timeout):
        if self.stop.wait(1 / 60):
            return None
        self.i += 1
        t = now_ms()
        return FaceSample(t, FaceObservation(Blendshapes.from_dict({"jawOpen": 0.3}), 10.0,
                                             0.0, 0.0, t), self.i)

    def wake(self):
        self.stop.set()


class Renderer:
    def __init__(self, ms: float):
        self.ms = ms
        self.frame = np.zeros((512, 512, 4), np.uint8)
        self.frame[64:448, 64:448] = (200, 120, 90, 255)

    def render(self, pose):
        time.sleep(self.ms / 1000)
        return self.frame


class Null(FrameSink):
    description = "null"

    def send(self, rgba, t):
        pass


def _ms(f, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1000


def bench_send() -> None:
    for w, h in ((512, 512), (1920, 1080)):
        frame = np.random.default_rng(0).integers(0, 255, (h, w, 4), np.uint8)
        sink = PanelPreview(fps=1e-9)          # keeps the first frame, skips every later one
        sink.send(frame)
        skipped = _ms(lambda: sink.send(frame), 2000)
        kept = _ms(lambda: frame.copy(), 200)
        encode = _ms(lambda: encode_png(frame), 10)
        print(f"  {w}x{h}: send() skipped {skipped * 1000:.1f} us, kept (copy) {kept:.2f} ms; "
              f"PNG encode on the preview thread {encode:.1f} ms (noise, worst case)")
    sample = Path(__file__).resolve().parents[2] / "weights" / "samples" / "crypko_00.png"
    if sample.exists():
        from PIL import Image
        frame = np.asarray(Image.open(sample).convert("RGBA"))
        print(f"  a character frame ({sample.name}): PNG encode "
              f"{_ms(lambda: encode_png(frame), 10):.1f} ms, {len(encode_png(frame)) // 1024} KiB")


def bench_loop(seconds: float, render_ms: float, panel: bool, client: bool) -> str:
    options = LiveOptions(fps=1000, stats_every_s=0,
                          panel=PanelAddress(port=0) if panel else None)
    urls: list[str] = []
    run = LiveRun(Profile(), None, Face(), [Null()], Renderer(render_ms), options,
                  on_panel=urls.append)
    done = threading.Event()
    frames = {"png": 0, "state": 0}

    def pull() -> None:
        import websocket
        while not urls:
            time.sleep(0.01)
        base, token = urls[0].split("/?token=")
        ws = websocket.create_connection(
            base.replace("http", "ws") + f"/api/ws?token={token}", timeout=5)
        ws.send(json.dumps({"cmd": "preview", "on": True}))
        while not done.is_set():
            try:
                op, _ = ws.recv_data()
            except Exception:
                break
            frames["png" if op == 2 else "state"] += 1
        ws.close()

    if client:
        threading.Thread(target=pull, daemon=True).start()
    threading.Timer(seconds, lambda: run.pipeline.stop("benchmark")).start()
    stats = run.run()
    done.set()
    out = stats.stages["output"]
    line = (f"{stats.fps:6.1f} fps, output stage mean {out.mean_ms:.3f} ms "
            f"(p95 {out.p95_ms:.3f} ms)")
    if client:
        line += f", client got {frames['png']} previews ({frames['png'] / seconds:.1f}/s)"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--render-ms", type=float, default=20.0)
    args = ap.parse_args()
    print("PanelPreview.send() on the render thread:")
    bench_send()
    print(f"live loop, stand-in render of {args.render_ms:g} ms, {args.seconds:g} s each:")
    for label, panel, client in (("no panel", False, False), ("panel", True, False),
                                 ("panel + browser", True, True)):
        print(f"  {label:16s} {bench_loop(args.seconds, args.render_ms, panel, client)}")


if __name__ == "__main__":
    main()

"""Packet-to-pose latency of the network face sources (iFacialMocap, VMC) on this machine.

A sender thread writes packets as the trackers do (the tests' writers: tests/test_ifacialmocap.py,
tests/test_vmc.py) at a phone's 60 Hz to a source on localhost; the reading thread does what the
live pipeline's tracking thread does (source.next, then retarget). Latency is the time from
sendto() to the pose being there, both on thacam.capture.now_ms's clock. A burst (packets sent
as fast as the socket takes them) shows that only the newest is kept: skipped packets cost
nothing and the pose stays current.

    .venv/bin/python scripts/benchmarks/network_sources.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from thacam.capture import now_ms  # noqa: E402
from thacam.retarget import Retargeter  # noqa: E402
from thacam.sources.ifacialmocap import IFacialMocapFaces  # noqa: E402
from thacam.sources.vmc import VmcFaces  # noqa: E402
from thacam.tracking import BLENDSHAPE_NAMES, Blendshapes, FaceObservation  # noqa: E402

import test_ifacialmocap  # noqa: E402
import test_vmc  # noqa: E402
from network_fixtures import Sender  # noqa: E402


def face(i: int) -> FaceObservation:
    """A talking, turning face (the values only have to move)."""
    scores = np.full(len(BLENDSHAPE_NAMES), 0.05, np.float32)
    scores[BLENDSHAPE_NAMES.index("jawOpen")] = 0.4 + 0.4 * math.sin(i / 7)
    return FaceObservation(Blendshapes(scores), 10 * math.sin(i / 30), 5.0, 3 * math.sin(i / 40),
                           0.0)


def measure(source, write, rate_hz: float | None, count: int) -> dict:
    sent: dict[int, float] = {}
    latencies: list[float] = []
    retarget = Retargeter()
    done = threading.Event()

    def read():
        while not done.is_set() or source.next(0.0) is not None:
            sample = source.next(timeout=0.05)
            if sample is None:
                continue
            retarget.update(sample.obs)
            t = now_ms()
            if sample.index in sent:
                latencies.append(t - sent[sample.index])

    reader = threading.Thread(target=read)
    reader.start()
    sender = Sender(source.port)
    packets = [write(face(i)) for i in range(count)]
    try:
        for i, data in enumerate(packets):
            sent[i] = sender.send(data)
            if rate_hz:
                time.sleep(1 / rate_hz)
        time.sleep(0.2)
    finally:
        done.set()
        reader.join()
        sender.close()
    lat = np.array(latencies)
    stats = source.packet_stats()
    return {"sent": count, "received": stats.received, "posed": len(lat),
            "p50": np.percentile(lat, 50), "p95": np.percentile(lat, 95), "max": lat.max()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    print("source        mode        sent  received  posed   p50 ms  p95 ms  max ms")
    for name, cls, write in (("ifacialmocap", IFacialMocapFaces, test_ifacialmocap.packet),
                             ("vmc", VmcFaces, test_vmc.packet)):
        for mode, rate, count in (("60 Hz", 60.0, int(60 * args.seconds)),
                                  ("burst", None, 2000)):
            with cls(0, host="127.0.0.1") as source:
                r = measure(source, write, rate, count)
            print(f"{name:13s} {mode:9s} {r['sent']:6d} {r['received']:9d} {r['posed']:6d} "
                  f"{r['p50']:8.2f} {r['p95']:7.2f} {r['max']:7.2f}")


if __name__ == "__main__":
    main()

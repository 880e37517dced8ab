"""The UDP receiver every network tracker shares: a source that goes quiet lets the live pipeline
idle and resumes when packets come back; only the newest packet is kept; a decoder's bug is
counted as a bad packet, not a dead stream; the registry and the live help list the sources.

CI budget: ~6 s (a live pipeline with a blank renderer for about 4.5 s).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from thacam.animation import Animator
from thacam.cli import main
from thacam.output import FrameSink
from thacam.pipeline import LivePipeline, LiveSettings
from thacam.retarget import Retargeter
from thacam.sources import SOURCES
from thacam.sources.ifacialmocap import IFacialMocapFaces
from thacam.sources.network import UdpFaces

from network_fixtures import Sender, free_port, send_all


def talking(jaw: int) -> bytes:
    return f"jawOpen&{jaw}|eyeBlink_L&5|eyeBlink_R&5|=head#8,0,0,0,0,0|".encode()


class Keep(FrameSink):
    def send(self, rgba, t_capture_ms):
        pass


class Blank:
    def render(self, pose):
        return np.zeros((8, 8, 4), np.uint8)


def test_a_quiet_tracker_fades_to_idle_and_recovers():
    port = free_port()
    source = IFacialMocapFaces(port, host="127.0.0.1", quiet_s=0.3)
    pipeline = LivePipeline(source, Retargeter(), Animator(seed=1), Blank(), [Keep()],
                            LiveSettings(fps=40, stats_every_s=0, camera_stale_s=0.3,
                                         first_frame_wait_s=0.0, trace=True))
    phases: list[tuple[str, float]] = []

    def phone():
        sender = Sender(port)
        time.sleep(0.3)                         # the pipeline opens the source
        try:
            for phase, seconds, send in (("talk", 1.0, True), ("quiet", 2.5, False),
                                         ("back", 1.0, True)):
                phases.append((phase, time.monotonic()))
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    if send:
                        sender.send(talking(80))
                    time.sleep(1 / 60)
        finally:
            sender.close()
            pipeline.stop("done")

    thread = threading.Thread(target=phone, daemon=True)
    thread.start()
    stats = pipeline.run()
    thread.join(2)
    trace = stats.trace
    # Sorted by phase: when each output frame was sent (t_send on now_ms's clock, monotonic).
    bounds = [t * 1000.0 for _, t in phases]

    def frames(i: int, margin_ms: float):
        lo, hi = bounds[i] + margin_ms, (bounds[i + 1] if i + 1 < len(bounds) else 1e18)
        return [t for t in trace if lo < t.t_send_ms < hi]

    talk, quiet, back = frames(0, 300), frames(1, 500), frames(2, 300)
    assert talk and quiet and back
    assert all(t.face for t in talk) and all(t.face for t in back[:-2])
    assert not any(t.face for t in quiet)                       # idles while quiet
    assert min(t.pose["mouth_aaa"] for t in talk) > 0.5
    # Quiet after 0.3 s, stale after 0.3 s, then the animator holds 0.5 s and eases 0.5 s.
    faded = frames(1, 1800)
    assert faded and max(t.pose["mouth_aaa"] for t in faded) < 0.1           # idle by now
    assert source.stats().losses >= 1 and source.stats().reopens >= 1
    assert stats.frames == len(trace)


def test_only_the_newest_packet_is_kept():
    src = IFacialMocapFaces(0, host="127.0.0.1").open()
    try:
        send_all(src, [talking(j) for j in range(0, 100, 10)])
        sample = src.next(timeout=1.0)
        assert sample.index == 9 and sample.obs.blendshapes["jawOpen"] == pytest.approx(0.9)
        assert src.next(timeout=0.1) is None                    # nothing newer came
        assert src.newest_index == 9 and src.connected
    finally:
        src.close()


class Buggy(UdpFaces):
    name = "buggy"

    def decode(self, data, t_ms):
        return {}["a decoder bug"]


def test_a_decoder_bug_is_a_bad_packet_not_a_dead_stream():
    src = Buggy(0, host="127.0.0.1").open()
    try:
        send_all(src, [b"x", b"y"])
        assert src.error is None and src.packet_stats().rejected == {"malformed": 2}
    finally:
        src.close()


def test_the_live_help_lists_the_network_sources_and_phone(capsys):
    assert {"ifacialmocap[:PORT]", "vmc[:PORT]"} <= set(SOURCES.usages())
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "ifacialmocap[:PORT]:" in out and "vmc[:PORT]:" in out and "--phone IP" in out

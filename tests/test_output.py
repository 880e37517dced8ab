"""Output sinks: the virtual camera through pyvirtualcam's real Camera, layout, the preview's keys.

CI budget: ~3 s (no model). File sinks are covered in test_output_file.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from thacam.errors import OutputError, UserError, VirtualCameraUnavailable
from thacam.output import SINKS, FrameInfo, KeyEvent, SinkContext, composite, create_sink, place
from thacam.output.preview import PreviewSink
from thacam.output.vcam import VirtualCamSink, vcam_instructions
from thacam.output.video import VideoFileSink

from output_fixtures import RgbOnlyBackend, no_vcam_backend, recording_vcam  # noqa: F401


def _avatar(size=512):
    a = np.zeros((size, size, 4), np.uint8)
    a[100:300, 150:350] = (200, 30, 60, 255)       # opaque body
    a[300:320, 150:350] = (200, 30, 60, 128)       # a half-transparent edge
    a[0:10, 0:10, :3] = 77                         # colour under alpha 0: must not leak out
    return a


def test_vcam_takes_rgba_where_the_backend_does(recording_vcam):
    with VirtualCamSink((512, 512), fps=24, backend="thacam-test", background=(0, 255, 0)) as sink:
        assert sink.fmt == "RGBA" and "recording-cam" in sink.description
        for _ in range(3):
            sink.send(_avatar(), 0.0)
    (cam,) = recording_vcam.instances
    assert (cam.width, cam.height, cam.fps, cam.fmt.name) == (512, 512, 24, "RGBA")
    assert len(cam.frames) == 3 and cam.closed
    got = cam.frames[0]
    assert got.shape == (512, 512, 4)
    assert np.array_equal(got[150, 200], [200, 30, 60, 255])      # straight colour, alpha kept
    assert np.array_equal(got[310, 200], [200, 30, 60, 128])
    assert np.array_equal(got[5, 5], [0, 255, 0, 0])              # transparent: key colour


def test_vcam_flattens_over_the_background_for_rgb_backends(recording_vcam):
    with VirtualCamSink((640, 480), fps=30, backend="thacam-test-rgb",
                        background=(0, 0, 255)) as sink:
        assert sink.fmt == "RGB"
        frame = place(_avatar(), (640, 480))
        sink.send(frame, 0.0)
    (cam,) = RgbOnlyBackend.instances
    assert (cam.width, cam.height, cam.fps, cam.fmt.name) == (640, 480, 30, "RGB")
    assert np.array_equal(cam.frames[0], composite(frame, (0, 0, 255)))
    assert np.array_equal(cam.frames[0][0, 0], [0, 0, 255])
    with pytest.raises(ValueError, match="expected 640x480"):
        VirtualCamSink((640, 480), backend="thacam-test").open().send(_avatar(), 0.0)


def test_vcam_errors_name_the_remedy(recording_vcam):
    with pytest.raises(UserError, match="'nope' does not exist here; choose one of: auto, .*thacam-test"):
        VirtualCamSink(backend="nope").open()


def test_no_virtual_camera_gives_the_instruction_for_this_os(no_vcam_backend):
    with pytest.raises(VirtualCameraUnavailable) as info:
        VirtualCamSink().open()
    assert vcam_instructions() in str(info.value)
    assert "modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=thacam" \
        in vcam_instructions("Linux")
    assert "Unity Capture" in vcam_instructions("Windows")
    assert "OBS" in vcam_instructions("Darwin")


def test_place_positions_scales_and_crops():
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 3] = 255
    c = place(a, (8, 6), "center")
    assert c.shape == (6, 8, 4) and c[1:5, 2:6, 3].all() and c[..., 3].sum() == 16 * 255
    br = place(a, (8, 6), "bottom-right")
    assert br[2:6, 4:8, 3].all() and br[..., 3].sum() == 16 * 255
    big = place(a, (8, 8), "top-left", scale=3.0)       # 12x12 avatar, cut to the canvas
    assert big[..., 3].all()
    small = place(a, (4, 4), "bottom", scale=0.5)
    assert small[2:4, 1:3, 3].all() and small[..., 3].sum() == 4 * 255
    with pytest.raises(UserError, match="placement 'middle'"):
        place(a, (8, 8), "middle")


def test_preview_keys_become_events_and_v_toggles_the_camera_view():
    p = PreviewSink()
    for key in (ord("c"), ord("3"), ord("q"), 27, ord("x"), -1, ord("e"), ord("v")):
        p.handle_key(key)
    assert p.pump() == [KeyEvent("c"), KeyEvent("3"), KeyEvent("q"), KeyEvent("escape"),
                        KeyEvent("x"), KeyEvent("e")]
    assert p.pump() == [] and p.show_camera is False         # v is the window's own
    assert all(not e.releases for e in [KeyEvent("c")])      # OpenCV reports no releases


def test_preview_image_shows_avatar_camera_landmarks_and_overlay():
    p = PreviewSink(background=(10, 20, 30))
    cam = np.full((240, 320, 3), 100, np.uint8)
    lms = np.array([[0.5, 0.5, 0.0]] * 10, np.float32)
    p.show_info(FrameInfo(("0.5 fps  latency 1800 ms",), cam, lms))
    img = p.compose(_avatar())
    assert img.shape == (512, 512 + 683, 3)                  # camera scaled to the avatar's height
    assert tuple(img[500, 500]) == (30, 20, 10)              # background, in BGR
    assert (img[256 - 2:256 + 3, 512 + 341 - 2:512 + 341 + 3] != 100).any()   # a landmark dot
    assert (img[5:30, 5:200] == 255).any()                   # overlay text
    p.handle_key(ord("v"))                                   # camera view off
    assert p.compose(_avatar()).shape == (512, 512, 3)


def test_preview_refuses_to_open_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    import platform
    if platform.system() != "Linux":
        pytest.skip("the display check applies to Linux")
    with pytest.raises(OutputError, match="no display"):
        PreviewSink().open()


class _Null:
    """A sink a test registers: from_spec sees the argument and the run's context."""

    made: list = []

    @classmethod
    def from_spec(cls, arg, ctx):
        cls.made.append((arg, ctx.size, ctx.fps))
        return cls()


def test_outputs_come_from_the_registry_and_unknown_names_list_the_valid_ones(tmp_path):
    ctx = SinkContext((640, 480), 25.0)
    assert isinstance(create_sink("vcam", ctx), VirtualCamSink)
    assert isinstance(create_sink("window", ctx), PreviewSink)
    sink = create_sink(str(tmp_path / "a.mp4"), ctx)
    assert isinstance(sink, VideoFileSink) and sink.fps == 25.0
    assert isinstance(create_sink(str(tmp_path / "frames") + "/", ctx), VideoFileSink)
    with pytest.raises(UserError) as info:
        create_sink("vcm", ctx)
    assert str(info.value) == ("--output vcm: not an output; choose one of vcam, window, "
                               "stream[:PORT], or give a file name (.mp4, .webm, .mov) or a "
                               "folder (frames/)")
    saved = SINKS.snapshot()
    try:
        SINKS.register("null", f"{__name__}:_Null", "discards frames", usage="null[:ARG]")
        assert "null[:ARG]" in SINKS.usages()
        assert isinstance(create_sink("null:7", ctx), _Null)
        assert _Null.made[-1] == ("7", (640, 480), 25.0)
    finally:
        SINKS.restore(saved)

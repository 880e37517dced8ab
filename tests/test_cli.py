"""The command line: every command parses and runs a cheap happy path; bad flags and bad values
exit 2 with one line; profiles reach the offline commands exactly as the live run applies them.

CI budget: ~40 s on 2 cores (four 1-frame renders on the torch backend, a few short clips
tracked by the real MediaPipe).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from thacam.cli import COMMANDS, build_parser, main
from thacam.profile import FLAGS

from output_fixtures import recording_vcam  # noqa: F401

TORCH = ["--device", "cpu", "--backend", "torch"]   # the exact engine; no OpenVINO export


def _clip(faces_dir: Path, path: Path, frames: int, name: str = "d0.mp4") -> Path:
    cap = cv2.VideoCapture(str(faces_dir / name))
    fps = cap.get(cv2.CAP_PROP_FPS)
    w = None
    for _ in range(frames):
        ok, bgr = cap.read()
        assert ok
        if w is None:
            w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                (bgr.shape[1], bgr.shape[0]))
        w.write(bgr)
    w.release()
    cap.release()
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------- parsing

def test_every_command_has_help_and_the_live_help_lists_keys_outputs_and_sources(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert len(sub.choices) == len(COMMANDS) == 10
    for name in sub.choices:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0, name
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for words in ("preview window keys", "calibrate", "vcam:", "window:", "webcam:",
                  "hold\" toggle there", "--set-profile", "--obs-port", "--mic",
                  "mic[:DEVICE]:", "overrides the profile's character"):
        assert words in out, words
    assert "give it with --character" not in out    # the profile's wording stays in profiles


def _parsers(parser, name="thacam"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def test_every_option_positional_and_subcommand_says_what_it_is():
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                # the subcommands' own help lines are what --help lists under COMMAND/ACTION
                assert len(action._choices_actions) == len(action.choices), name
                for choice in action._choices_actions:
                    assert choice.help, f"{name} {choice.dest}: no help"
            else:
                assert action.help, f"{name} {(action.option_strings or [action.dest])[0]}: " \
                                    "no help"


def test_no_flag_help_speaks_of_the_profile():
    # A profile's wording ("empty = give it with --flag", TOML's [R, G, B], "for one run") reads
    # oddly after the flag itself: such settings give their flag its own help (cli_help=).
    generated = {flag.dest for flag in FLAGS}
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            text = action.help or ""
            own = action.option_strings if action.dest in generated else []
            for words in ("empty =", "[R, G, B]", "for one run", *own):
                assert not re.search(re.escape(words) + r"(?![\w-])", text), \
                    f"{name} {(action.option_strings or [action.dest])[0]}: {text!r} says {words!r}"


def test_choice_flags_list_their_choices_once(capsys):
    # argparse prints {auto,cpu,...} beside the flag; the help must not list them again
    choosy = 0
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if action.choices and action.option_strings:
                choosy += 1
                assert "one of" not in (action.help or ""), \
                    f"{name} {action.option_strings[0]}: {action.help!r}"
    assert choosy
    with pytest.raises(SystemExit):
        main(["pose", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--device {auto,cpu,cuda,mps}" in out and "one of:" not in out


@pytest.mark.parametrize("argv", [
    ["pose", "--device", "gpu"],                       # a choice read from RenderSettings
    ["render", "--character", "x.png"],                # --input or --poses is required
    ["track", "--input", "a.mp4"],                     # --out is required
    ["--character", "x.png", "--mirror", "--no-such-flag"],
    ["obs", "status", "--obs-port", "many"],
    ["bench", "--device", "mps"],                      # the bench's own device list
])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--character", "{png}", "--frames", "0"], "--frames 0: must be above 0"),
    (["--character", "{png}", "--fps", "0"], "--fps 0.0: must be above 0"),
    (["--character", "{png}", "--output", "nowhere"],
     "--output nowhere: not an output; choose one of vcam, window"),
    (["--character", "{png}", "--source", "kinect"],
     "--source kinect: not a face source; choose one of webcam"),
    (["--character", "{png}", "--obs-port", "70000"],
     "flag --obs-port: obs.port: expected an integer in [1, 65535], got 70000"),
    (["--character", "{png}", "--background", "0,300,0"],
     "flag --background: output.background[1]: expected an integer in [0, 255], got 300"),
    (["--character", "{png}", "--size", "big"], "not WIDTHxHEIGHT"),
    (["--character", "{png}", "--panel-allow-remote"],
     "there is no panel: add --panel [HOST:]PORT"),
    (["render", "--character", "{png}", "--poses", "{png}", "--out", "o.mp4", "--batch", "0"],
     "--batch 0: must be above 0"),
    (["track", "--input", "{png}.mp4", "--out", "p.jsonl", "--calibrate-frames", "-1"],
     "--calibrate-frames -1: must be 0 or more"),
    (["demo", "--seconds", "-1"], "--seconds -1.0: must be above 0"),
    (["pose", "--character", "{png}", "--out", "o.jpg"], "thacam pose writes PNG"),
    (["profile", "check", "nope"], "no such profile file"),
])
def test_bad_values_are_one_line_and_exit_2_before_anything_loads(argv, words, tmp_path, capsys,
                                                                  samples_dir):
    png = str(samples_dir / "crypko_00.png")
    argv = [a.replace("{png}", png) for a in argv] + ["--profile", str(tmp_path / "p.toml")] \
        if argv[0] == "--character" else [a.replace("{png}", png) for a in argv]
    (tmp_path / "p.toml").write_text("")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("thacam: error: ") and words in err[0], err


# ------------------------------------------------------------------------ cheap happy paths

def test_fetch_pose_list_and_profile_commands(tmp_path, weights_dir, samples_dir, capsys):
    assert main(["fetch", "--weights", str(weights_dir)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["pose", "--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 45
    out = tmp_path / "c.toml"
    assert main(["profile", "init", str(samples_dir / "crypko_00.png"), "--out", str(out)]) == 0
    assert main(["profile", "check", str(out)]) == 0
    assert main(["profile", "show", str(out), "--set-profile", "breathing.depth=0.5"]) == 0
    assert "depth = 0.5  # from the command line" in capsys.readouterr().out


def test_obs_status_with_obs_down_is_one_line(capsys):
    # a port nothing listens on: OBS is down
    assert main(["obs", "status", "--obs-port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach OBS at 127.0.0.1:1" in err[0]


@pytest.mark.slow
def test_pose_demo_and_live_run_one_frame_each(tmp_path, weights_dir, samples_dir, faces_dir,
                                               recording_vcam, capsys):
    character = str(samples_dir / "crypko_00.png")
    weights = ["--weights", str(weights_dir)]
    assert main(["pose", "--character", character, "--out", str(tmp_path / "p.png"),
                 "--set", "head_y=0.5", *weights, *TORCH]) == 0
    assert cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_UNCHANGED).shape == (512, 512, 4)
    assert main(["demo", "--out", str(tmp_path / "d.mp4"), "--seconds", "0.1", "--fps", "10",
                 *weights, *TORCH]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "d.png").is_file()
    clip = _clip(faces_dir, tmp_path / "c.mp4", 10)
    (tmp_path / "p.toml").write_text("")
    assert main(["--character", character, "--camera", str(clip), "--output", "vcam",
                 "--vcam-backend", "auto", "--set-profile", "output.backend=auto",
                 "--frames", "1", "--stats-every", "0", "--profile", str(tmp_path / "p.toml"),
                 *weights, *TORCH]) == 0
    (cam,) = recording_vcam.instances
    assert len(cam.frames) == 1 and cam.closed


# ------------------------------------------------------------- profiles reach offline commands

def test_track_applies_a_profile_exactly_as_the_live_run_does(tmp_path, faces_dir,
                                                              landmarker_model):
    clip = _clip(faces_dir, tmp_path / "c.mp4", 30, "d11.mp4")   # a head shake
    weights = ["--weights", str(landmarker_model.parent)]
    plain = tmp_path / "plain.jsonl"
    assert main(["track", "--input", str(clip), "--out", str(plain), "--no-smooth",
                 "--calibrate-frames", "0", *weights]) == 0
    # A tuned profile: a smaller head range (bigger turns), a calibrated neutral 10 deg to the
    # side, a different eyebrow family; no --calibrate-frames: a calibrated profile is used as is.
    tuned = tmp_path / "tuned.toml"
    tuned.write_text("[retarget]\nhead_y_range_deg = 5.0\nbody_share = 0.0\n"
                     "[calibration]\nyaw = 10.0\npitch = 8.0\nframes = 30\n"
                     "[camera]\nmirror = false\n", encoding="utf-8")
    out = tmp_path / "tuned.jsonl"
    assert main(["track", "--input", str(clip), "--out", str(out), "--no-smooth",
                 "--profile", str(tuned), *weights]) == 0
    a = np.array([r["pose"]["head_y"] for r in _rows(plain)])
    b = np.array([r["pose"]["head_y"] for r in _rows(out)])
    # plain: head_y = -0.75 * yaw / 10 (body_share 0.25); tuned: -(yaw - 10) / 5, clipped
    yaw = -a * 10.0 / 0.75
    want = np.clip(-(yaw - 10.0) / 5.0, -1, 1)
    keep = np.abs(a) < 0.74                  # where the plain run's head did not clip
    assert keep.sum() > 10 and np.allclose(b[keep], want[keep], atol=1e-3)
    # smoothing and the idle seed come from the profile too: two smoothed runs are identical,
    # a profile with smoothing off equals --no-smooth plus breathing
    smooth = [tmp_path / f"s{i}.jsonl" for i in range(2)]
    for path in smooth:
        assert main(["track", "--input", str(clip), "--out", str(path), "--calibrate-frames", "0",
                     *weights]) == 0
    assert smooth[0].read_text() == smooth[1].read_text()
    off = tmp_path / "off.toml"
    off.write_text("[smoothing]\nenabled = false\n[breathing]\nrate_per_min = 0.0\n")
    raw = tmp_path / "raw.jsonl"
    assert main(["track", "--input", str(clip), "--out", str(raw), "--calibrate-frames", "0",
                 "--profile", str(off), "--no-mirror", *weights]) == 0   # (the profile mirrors)
    assert [r["pose"] for r in _rows(raw)] == [r["pose"] for r in _rows(plain)]


@pytest.mark.slow
def test_render_applies_the_profiles_background_and_model(tmp_path, weights_dir, samples_dir):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"t_ms": 0.0, "face": True, "pose": {}}) + "\n")
    profile = tmp_path / "blue.toml"
    profile.write_text('[output]\nbackground = [0, 0, 255]\n[model]\ndevice = "cpu"\n'
                       'backend = "torch"\n')
    out = tmp_path / "o.mp4"
    assert main(["render", "--character", str(samples_dir / "crypko_00.png"), "--poses",
                 str(jsonl), "--out", str(out), "--weights", str(weights_dir), "--profile",
                 str(profile)]) == 0
    ok, bgr = cv2.VideoCapture(str(out)).read()
    assert ok and np.abs(bgr[5, 5].astype(int) - [255, 0, 0]).max() < 30   # blue corner (BGR)

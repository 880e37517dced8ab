"""Profiles: TOML <-> settings, validation messages, precedence, live tuning, comment-keeping save.

No models: everything here runs on TOML text, tiny generated PNGs and synthetic FaceObservations.
CI budget: 30 s (measured: a few seconds, most of it the one subprocess run of the real CLI).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomlkit
from PIL import Image

from thacam import profile as P
from thacam.settings import codec as C
from thacam.cli import main
from thacam.cli.options import add_flags, add_profile
from thacam.controls import Controls
from thacam.errors import ProfileError
from thacam.retarget import Calibration

from controls_fixtures import FACE, FakeTarget, pose_for

REPO = Path(__file__).resolve().parent.parent


def _png(path: Path) -> Path:
    """A valid 512x512 RGBA character (an opaque disc on transparency)."""
    yy, xx = np.mgrid[:512, :512]
    rgba = np.zeros((512, 512, 4), np.uint8)
    inside = (yy - 256) ** 2 + (xx - 256) ** 2 < 150 ** 2
    rgba[inside] = (230, 180, 160, 255)
    Image.fromarray(rgba).save(path)
    return path


@pytest.fixture
def character(tmp_path) -> Path:
    return _png(tmp_path / "alice.png")


USER_PROFILE = """\
# Alice's settings -- tuned by hand
[character]
image = "alice.png"   # the drawing, beside this file

[retarget]
# I like the mouth gentle
jaw_open_max   =   0.50  # aligned on purpose
wink_mode = "relaxed"

[breathing]
rate_per_min = 12.0  # slow

[expressions.1]
name = "joy"
mode = "hold"
overrides = { eye_happy_wink_left = 1.0, eye_happy_wink_right = 1.0 }
"""


@pytest.fixture
def user_profile(tmp_path, character) -> Path:
    path = tmp_path / "alice.toml"
    path.write_text(USER_PROFILE, encoding="utf-8")
    return path


# ------------------------------------------------------------------------ default.toml

def test_committed_default_toml_is_current():
    committed = (REPO / "profiles" / "default.toml").read_text(encoding="utf-8")
    assert committed == P.default_toml(), (
        "profiles/default.toml is out of date with the settings dataclasses; "
        "run `python -m thacam.profile` and commit the result")


def test_default_toml_puts_a_comment_above_every_key_and_table():
    lines = (REPO / "profiles" / "default.toml").read_text(encoding="utf-8").splitlines()
    seen: set[tuple[str, str]] = set()
    table = ""
    # entries of these tables are names (pose parameters, blendshapes), documented by the table
    listing = {"calibration.blendshapes", "expressions.N.overrides"}
    keys = 0
    for i, line in enumerate(lines):
        header = re.fullmatch(r"\[([^\]]+)\]", line)
        if header:
            table = re.sub(r"expressions\.\d", "expressions.N", header[1])
            if (table, "") not in seen and table != "expressions.N":
                assert lines[i - 1].startswith("#"), f"table [{header[1]}] has no comment above"
            seen.add((table, ""))
            continue
        key = re.match(r"(#\s*)?([A-Za-z_]\w*) = ", line)
        if key is None or key[1] or table in listing:
            continue
        keys += 1
        if (table, key[2]) not in seen:
            assert lines[i - 1].startswith("#"), f"{table}.{key[2]} has no comment above it"
            seen.add((table, key[2]))
    assert keys > 100  # every retarget/animation/obs setting is in there, not a stub


def test_default_toml_loads_as_the_builtin_defaults():
    loaded = P.load_profile(REPO / "profiles" / "default.toml")
    assert loaded == P.Profile()
    assert P.profile_changes(loaded) == []
    assert loaded.neutral is None  # frames = 0: not calibrated


# ---------------------------------------------------------------------- round trip + tuning

def test_load_tune_save_load_keeps_settings_and_comments(user_profile, character):
    before_text = user_profile.read_text(encoding="utf-8")
    profile = P.load_profile(user_profile)
    assert profile.character.image == character
    assert profile.retarget.jaw_open_max == 0.5
    assert profile.breathing.rate_per_min == 12.0
    assert list(profile.expressions) == ["1"] and profile.expressions["1"].mode == "hold"

    cal = Calibration(yaw=4.5, pitch=9.25, roll=-1.5,
                      blendshapes=tuple(round(0.01 * i, 2) for i in range(52)), frames=7)
    tuner = Controls(profile, user_profile, target=FakeTarget(calibration=cal))
    for key in "OObhRec":
        assert tuner.press(key) is not None, key
    tuned = tuner.profile
    assert tuned.retarget.jaw_open_max < 0.5
    assert tuned.calibration == cal
    assert tuned.retarget.eyebrow_family != profile.retarget.eyebrow_family
    assert tuner.dirty

    assert tuner.press("s").action == "save" and not tuner.dirty
    again = P.load_profile(user_profile)
    assert again == tuned

    text = user_profile.read_text(encoding="utf-8")
    for comment in ("# Alice's settings -- tuned by hand", "# the drawing, beside this file",
                    "# I like the mouth gentle", "# aligned on purpose", "# slow"):
        assert comment in text
    # the user's own layout of an edited line survives; untouched lines are byte-identical
    assert re.search(r"^jaw_open_max   =   0\.\d+  # aligned on purpose$", text, re.M)
    for line in ('wink_mode = "relaxed"', "rate_per_min = 12.0  # slow",
                 'overrides = { eye_happy_wink_left = 1.0, eye_happy_wink_right = 1.0 }'):
        assert line in before_text and line in text
    # only what changed was written: no default values leak into the file
    assert "smile_min" not in text and "[smoothing]" not in text

    # saving again without changes rewrites nothing
    P.save_profile(again, user_profile)
    assert user_profile.read_text(encoding="utf-8") == text


def test_save_keeps_unknown_to_this_version_formatting(tmp_path):
    path = tmp_path / "p.toml"
    # literal strings, dotted keys, hex-free ints with underscores, odd spacing: tomlkit keeps all
    path.write_text("[camera]\nsource = '0'   # literal string\nwidth = 1_280\n"
                    "\n\n[output]\nbackground = [ 0, 0, 255 ]\n", encoding="utf-8")
    profile = P.load_profile(path)
    assert profile.camera.width == 1280 and profile.obs.key_color == (0, 0, 255)
    P.save_profile(dataclasses.replace(profile, camera=dataclasses.replace(profile.camera, fps=25)),
                   path)
    text = path.read_text(encoding="utf-8")
    assert "source = '0'   # literal string\nwidth = 1_280\n" in text
    assert "background = [ 0, 0, 255 ]" in text and "fps = 25" in text
    assert P.load_profile(path).camera.fps == 25


def test_removed_preset_and_new_file(tmp_path, user_profile):
    profile = P.load_profile(user_profile)
    two = dict(profile.expressions)
    two["2"] = P.BUILTIN_PRESETS["sad"]
    P.save_profile(dataclasses.replace(profile, expressions=two), user_profile)
    assert set(P.load_profile(user_profile).expressions) == {"1", "2"}
    P.save_profile(profile, user_profile)
    assert "[expressions.2" not in user_profile.read_text(encoding="utf-8")
    assert P.load_profile(user_profile) == profile

    fresh = tmp_path / "sub" / "fresh.toml"
    P.save_profile(profile, fresh)
    assert P.load_profile(fresh) == profile
    assert (fresh.stat().st_mode & 0o777) == (user_profile.stat().st_mode & 0o777)


# ------------------------------------------------------------------------- broken profiles

BROKEN = [
    ("unknown section", "[retargeting]\nwink_mode = 'wink'\n", "retargeting",
     "unknown key 'retargeting'; did you mean 'retarget'? (fix or remove it)"),
    ("unknown key", "colour = 1\n", "colour",
     "unknown key 'colour'; the keys of the top level are character, model, camera, sources, "
     "calibration, retarget, smoothing, breathing, idle, lipsync, expressions, output, obs"),
    ("typo", "[retarget]\njaw_open_mx = 0.4\n", "retarget.jaw_open_mx",
     "unknown key 'jaw_open_mx'; did you mean 'jaw_open_max'? (fix or remove it)"),
    ("wrong type", "[breathing]\ndepth = \"deep\"\n", "breathing.depth",
     "expected a number in [0, 1], got the string 'deep'"),
    ("bool for int", "[camera]\nfps = true\n", "camera.fps",
     "expected an integer in [1, 240], got true"),
    ("float for int", "[camera]\nfps = 29.97\n", "camera.fps",
     "expected an integer in [1, 240], got 29.97"),
    ("wrong choice", "[model]\ndevice = \"gpu\"\n", "model.device",
     "expected one of 'auto', 'cpu', 'cuda', 'mps', got the string 'gpu' (did you mean 'cpu'?)"),
    ("NaN", "[breathing]\ndepth = nan\n", "breathing.depth", "expected a finite number, got nan"),
    ("inf", "[smoothing]\nhead_beta = inf\n", "smoothing.head_beta",
     "expected a finite number, got inf"),
    ("negative rate", "[breathing]\nrate_per_min = -5.0\n", "breathing.rate_per_min",
     "expected a number in [0, 60], got -5"),
    ("out of range", "[obs]\nport = 70000\n", "obs.port",
     "expected an integer in [1, 65535], got 70000"),
    ("list length", "[output]\nbackground = [0, 255]\n", "output.background",
     "expected a list of 3 values, each an integer in [0, 255], got 2 values"),
    ("password in file", "[obs]\npassword = \"hunter2\"\n", "obs.password",
     "a password is never read from a profile file; delete this key and set the environment "
     "variable THACAM_OBS_PASSWORD instead"),
    ("password at top level", "password = \"hunter2\"\n", "password",
     "a password is never read from a profile file; delete this key and set the environment "
     "variable THACAM_OBS_PASSWORD instead"),
    ("derived key", "[obs]\nkey_color = [0, 0, 255]\n", "obs.key_color",
     "not a setting of its own: it always equals output.background; delete it and set "
     "output.background instead"),
    ("bad hotkey", "[expressions.0]\nname = \"x\"\n", "expressions.0",
     "unexpected key '0'; the keys of [expressions] are 1, 2, 3, 4, 5, 6, 7, 8, 9"),
    ("preset without overrides", "[expressions.1]\nname = \"x\"\n", "expressions.1.overrides",
     "missing; [expressions.1] needs overrides = a table"),
    ("unknown pose parameter", "[expressions.1]\nname = \"x\"\n[expressions.1.overrides]\n"
     "eye_wnk_left = 1.0\n", "expressions.1.overrides.eye_wnk_left",
     "unknown pose parameter 'eye_wnk_left'; did you mean 'eye_wink_left'? "
     "(`thacam pose --list` shows the 45 names)"),
    ("pose value out of range", "[expressions.1]\nname = \"x\"\n[expressions.1.overrides]\n"
     "head_y = 2.0\n", "expressions.1.overrides.head_y", "expected a number in [-1, 1], got 2"),
    ("unknown blendshape", "[calibration.blendshapes]\njawOpn = 0.2\n",
     "calibration.blendshapes.jawOpn",
     "unknown name 'jawOpn'; did you mean 'jawOpen'? (fix or remove it)"),
    ("low above high", "[idle]\nblink_interval_s = [5.0, 1.0]\n", "idle.blink_interval_s",
     "low 5.0 is above high 1.0; give [low, high]"),
    ("bad TOML", "[retarget\nwink_mode = 'wink'\n", None,
     "invalid TOML at line 1, column 10: Expected ']' at the end of a table declaration; "
     "fix the syntax"),
    ("bad TOML value", "[retarget]\nwink_mode = \n", None,
     "invalid TOML at line 2, column 13: Invalid value; fix the syntax"),
]


@pytest.mark.parametrize("text,key,problem", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_profile_exact_message_and_exit_code(tmp_path, capsys, text, key, problem):
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        P.load_profile(path)
    where = f"{path}: {key}: " if key else f"{path}: "
    assert str(info.value) == where + problem
    assert info.value.key == key and info.value.exit_code == 2

    capsys.readouterr()
    assert main(["profile", "check", str(path)]) == 2
    out = capsys.readouterr()
    assert out.err.strip().splitlines() == [f"thacam: error: {where}{problem}"]
    assert "hunter2" not in out.err + out.out  # never echo a password back


def test_missing_character_image(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text('[character]\nimage = "gone.png"\n', encoding="utf-8")
    want = (f"{path}: character.image: file not found: {tmp_path / 'gone.png'} (a relative path "
            f"is relative to {tmp_path}); fix the path or run `thacam profile init IMG` for the "
            "right image")
    with pytest.raises(ProfileError, match=re.escape(want)):
        P.load_profile(path)
    assert main(["profile", "check", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"thacam: error: {want}"


def test_owner_cross_field_check_names_the_key(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[retarget]\njaw_open_max = 0.01\n", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        P.load_profile(path)
    assert info.value.key == "retarget.jaw_open_max"
    assert str(info.value).startswith(f"{path}: retarget.jaw_open_max: ")


def test_check_command_real_process_exit_codes(tmp_path, user_profile):
    broken = tmp_path / "broken.toml"
    broken.write_text("[breathing]\nrate_per_min = -1.0\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "thacam.cli", "profile", "check", str(user_profile),
                          str(broken)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 2
    assert f"{user_profile}: ok (" in run.stdout
    assert (f"thacam: error: {broken}: breathing.rate_per_min: expected a number in [0, 60], "
            "got -1") in run.stderr
    ok = subprocess.run([sys.executable, "-m", "thacam.cli", "profile", "check",
                         str(REPO / "profiles" / "default.toml")], capture_output=True, text=True,
                        env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_obs_follows_output_background_and_device(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[output]\nbackground = [0, 0, 255]\ndevice = "/dev/video9"\n',
                    encoding="utf-8")
    profile = P.load_profile(path)
    assert profile.obs.key_color == (0, 0, 255) and profile.obs.device == "/dev/video9"
    assert P.Profile().obs.key_color == P.Profile().output.background


# ------------------------------------------------------------------ precedence and logging

def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_profile(parser)
    add_flags(parser)
    ns = parser.parse_args([])
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_precedence_defaults_profile_flags_each_logged_once(tmp_path, character, caplog):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "alice.toml").write_text(
        '[character]\nimage = "../alice.png"\n[model]\ndevice = "cpu"\n'
        '[retarget]\nwink_mode = "relaxed"\n[obs]\nport = 4460\n', encoding="utf-8")
    caplog.set_level(logging.INFO, logger="thacam")

    profile, path = P.resolve_profile(character, None, profiles_dir=profiles)
    assert path == profiles / "alice.toml"
    assert profile.model.device == "cpu"                       # profile beats default
    assert profile.model.precision == "auto"                   # default where the profile is silent
    final = P.apply_overrides(profile, _args(device="cuda", mirror=False, obs_port=None,
                                             profile_set=["retarget.jaw_open_max=0.3"]))
    assert final.model.device == "cuda"                        # flag beats profile
    assert final.obs.port == 4460                              # flag not given: profile stays
    assert final.camera.mirror is False and final.retarget.jaw_open_max == 0.3
    assert final.retarget.wink_mode == "relaxed"

    messages = [r.getMessage() for r in caplog.records]
    for line in ("profile sets model.device = cpu", "profile sets retarget.wink_mode = relaxed",
                 "profile sets obs.port = 4460", f"profile sets character.image = {character}",
                 "flag --device overrides model.device = cuda",
                 "flag --no-mirror overrides camera.mirror = false",
                 "flag --set-profile overrides retarget.jaw_open_max = 0.3"):
        assert messages.count(line) == 1, (line, messages)
    assert not any("precision" in m or "obs.port = 4" in m and "flag" in m for m in messages)


def test_resolve_without_profile_uses_defaults_and_the_character(tmp_path, character):
    profile, path = P.resolve_profile(character, None, profiles_dir=tmp_path / "none")
    assert path is None
    assert profile == dataclasses.replace(
        P.Profile(), character=P.CharacterSettings(image=character.resolve()))
    # a flag equal to the current value is not an override and logs nothing
    assert P.apply_overrides(profile, _args(character=str(character))) == profile


def test_profile_by_name_and_unknown_name(tmp_path, user_profile):
    profile, path = P.resolve_profile(None, "alice", profiles_dir=tmp_path)
    assert path == tmp_path / "alice.toml" and profile.breathing.rate_per_min == 12.0
    with pytest.raises(ProfileError) as info:
        P.resolve_profile(None, "bob", profiles_dir=tmp_path)
    assert str(info.value) == (f"{tmp_path / 'bob.toml'}: no such profile (existing profiles: "
                               "alice); give an existing file or create one with "
                               "`thacam profile init IMG`")


def test_bad_flag_value_is_reported_against_the_flag():
    with pytest.raises(ProfileError) as info:
        P.apply_overrides(P.Profile(), _args(obs_port=70000))
    assert str(info.value) == ("flag --obs-port: obs.port: expected an integer in [1, 65535], "
                               "got 70000")
    with pytest.raises(ProfileError) as info:
        P.apply_overrides(P.Profile(), {"profile_set": ["retarget.blink_gian=1"]})
    assert "did you mean 'blink_" in str(info.value)


def test_show_prints_effective_values_with_their_source(user_profile, capsys):
    assert main(["profile", "show", str(user_profile), "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert 'device = "cuda"  # from the command line' in out
    assert 'wink_mode = "relaxed"  # from alice.toml' in out
    assert 'precision = "auto"\n' in out  # a default carries no note
    assert P.parse_profile(out, base_dir=user_profile.parent).model.device == "cuda"


def test_init_writes_a_documented_profile_once(tmp_path, character, capsys):
    out = tmp_path / "profiles" / "alice.toml"
    assert main(["profile", "init", str(character), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert 'image = "../alice.png"' in text and text.count("\n# ") > 100
    assert P.load_profile(out).character.image == character
    assert P.profile_changes(P.load_profile(out), base_dir=out.parent) == [
        ("character.image", "../alice.png")]
    capsys.readouterr()
    assert main(["profile", "init", str(character), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"thacam: error: {out}: already exists; edit it, or pass --force to replace it with a "
        "fresh one")
    assert main(["profile", "init", str(tmp_path / "nope.png"), "--out", str(out)]) == 2


def test_offer_profile_asks_and_creates(tmp_path, character):
    assert P.offer_profile(character, profiles_dir=tmp_path / "p", ask=lambda q: "n") is None
    made = P.offer_profile(character, profiles_dir=tmp_path / "p", ask=lambda q: "y")
    assert made == tmp_path / "p" / "alice.toml"
    assert P.load_profile(made).character.image == character


# ------------------------------------------------------- the profile changes the retargeted pose



def test_profile_calibration_recentres_the_head(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[calibration]\nyaw = 12.0\npitch = 6.0\nroll = 4.0\nframes = 30\n",
                    encoding="utf-8")
    calibrated = P.load_profile(path)
    assert calibrated.neutral is not None
    plain = pose_for(P.Profile(), **FACE)
    centred = pose_for(calibrated, **FACE)
    assert abs(plain["head_y"]) > 0.5 and abs(plain["neck_z"]) > 0.1
    for name in ("head_x", "head_y", "neck_z", "body_y", "body_z"):
        assert centred[name] == pytest.approx(0.0, abs=1e-6), name
    # the mouth and brows do not depend on the head calibration
    assert centred["mouth_aaa"] == pytest.approx(plain["mouth_aaa"])


def test_tomlkit_sees_the_same_values_as_the_loader(user_profile):
    # save_profile edits with tomlkit but loads with tomllib: both must read a file identically
    doc = tomlkit.parse(user_profile.read_text(encoding="utf-8")).unwrap()
    assert C.decode(P.Profile, doc, file="x", base_dir=user_profile.parent,
                    derived=P.DERIVED) == P.load_profile(user_profile)

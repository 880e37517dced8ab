"""Controls: keys and actions change the profile and reach the running stages; hold and toggle
expressions; saving only what this run changed; a failed save is a message, not a crash.

No models: a FakeTarget stands in for the pipeline (with the real Animator), and the pose checks
run the real Retargeter on synthetic FaceObservations. CI budget: ~1 s.
"""

from __future__ import annotations

import os

import pytest

from thacam import profile as P
from thacam import settings as S
from thacam.controls import GAINS, KEYS, Controls, key_help
from thacam.output import KeyEvent

from controls_fixtures import FACE, FakeTarget, pose_for




def test_keys_limits_and_events():
    controls = Controls(P.Profile())
    help_keys = " ".join(k for k, _ in key_help())
    for gain in GAINS:
        assert gain.down in help_keys and gain.up in help_keys
        for key, base in gain.keys:   # the tuned settings exist in the stages' dataclasses
            assert S.field_info(P.Profile, key).spec.kind in ("float", "int")
            assert base is None or S.field_info(P.Profile, base).spec.kind in ("float", "int")
            assert S.field_info(P.Profile, key).live
    for key, (action, _) in KEYS.items():  # every bound key is explained in the help
        assert key in help_keys or (action == "expression") or key == "escape", key

    # breathing depth is already at its maximum (1.0): up stays there and says so
    event = controls.press("R")
    assert event.action == "gain" and "limit" in event.message
    assert controls.profile.breathing.depth == 1.0 and not controls.dirty
    assert controls.press(ord("r")).message.endswith("breathing.depth = 0.909")  # cv2 key code
    for _ in range(60):
        controls.press("o")
    assert controls.profile.retarget.jaw_open_max == 1.0  # clamped to its range, never invalid

    families = S.field_info(P.Profile, "retarget.eyebrow_family").spec.choices
    seen = {controls.profile.retarget.eyebrow_family}
    for _ in range(len(families)):
        seen.add(controls.press("e").message.split(": ")[1])
    assert seen == set(families) and controls.profile.retarget.eyebrow_family == families[
        (families.index(P.Profile().retarget.eyebrow_family)) % len(families)]

    assert controls.press("x") is None and controls.press(-1) is None
    assert controls.press("9").message == "no expression on key 9"
    event = controls.press("1")
    assert event.action == "expression" and event.preset == P.Profile().expressions["1"]
    assert controls.press("c").message == "calibration is not available here"
    assert Controls(P.Profile(), target=FakeTarget()).press("c").message.startswith(
        "no face in view")
    assert controls.press("s").message == "no profile file to save to"


def test_changes_reach_the_running_stages_once_each():
    target = FakeTarget()
    controls = Controls(P.Profile(), target=target)
    controls.press("H")                                   # retarget only
    controls.press("r")                                   # breathing only
    controls.press("m")                                   # the mirror, through the source
    assert [sorted(a) for a in target.applied] == [["retarget"], ["breathing"]]
    assert target.applied[0]["retarget"] == controls.profile.retarget
    assert target.mirrors == [False] and controls.profile.camera.mirror is False
    controls.press("q")
    assert target.stopped == "quit key"


def test_set_value_validates_like_a_profile_and_refuses_what_cannot_change_live():
    target = FakeTarget()
    controls = Controls(P.Profile(), target=target)
    event = controls.set_value("smoothing.head_beta", 2.5, source="panel")
    assert event.action == "set" and controls.profile.smoothing.head_beta == 2.5
    assert target.applied == [{"smoothing": controls.profile.smoothing}]
    with pytest.raises(P.ProfileError) as info:
        controls.set_value("smoothing.head_beta", 99, source="panel")
    assert str(info.value) == "panel: smoothing.head_beta: expected a number in [0, 50], got 99"
    with pytest.raises(P.ProfileError, match="cannot change while thacam runs"):
        controls.set_value("model.device", "cpu", source="panel")
    with pytest.raises(P.ProfileError, match="not a settings key"):
        controls.set_value("retarget.nope", 1, source="panel")
    assert len(target.applied) == 1                       # nothing else reached the stages


def test_hold_expressions_follow_the_key_where_releases_exist_and_toggle_in_the_window():
    target = FakeTarget()
    controls = Controls(P.Profile(), target=target)
    hold = next(k for k, p in controls.profile.expressions.items() if p.mode == "hold")
    toggle = next(k for k, p in controls.profile.expressions.items() if p.mode == "toggle")
    name = controls.profile.expressions[hold].name

    # An input with releases (the panel): on while held, off on release.
    assert controls.key(KeyEvent(hold, pressed=True, releases=True)).message == \
        f"{name} on (while held)"
    assert target.expression.name == name
    assert controls.key(KeyEvent(hold, pressed=False, releases=True)).message == f"{name} off"
    assert target.expression is None

    # The window (no releases): the same hold preset toggles, press by press.
    assert controls.key(KeyEvent(hold)).message == f"{name} on"
    assert target.expression.name == name
    assert controls.key(KeyEvent(hold)).message == f"{name} off"
    assert target.expression is None

    # A toggle preset ignores releases.
    tname = controls.profile.expressions[toggle].name
    controls.key(KeyEvent(toggle, pressed=True, releases=True))
    assert controls.key(KeyEvent(toggle, pressed=False, releases=True)) is None
    assert target.expression.name == tname


def test_save_writes_only_what_this_run_changed(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("# mine\n[breathing]\nrate_per_min = 12.0\n", encoding="utf-8")
    first = Controls(P.load_profile(path), path)
    second = Controls(P.load_profile(path), path)
    first.press("w")                                      # wink mode
    second.press("H")                                     # head gain
    assert first.press("s").message == f"saved {path}" and not first.dirty
    assert second.press("s").message == f"saved {path}"
    both = P.load_profile(path)                           # neither reverted the other
    assert both.retarget.wink_mode == first.profile.retarget.wink_mode != "wink"
    assert both.retarget.head_y_range_deg == second.profile.retarget.head_y_range_deg < 10.0
    assert "# mine" in path.read_text(encoding="utf-8")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_failed_save_is_a_message_and_keeps_the_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "p.toml"
    path.write_text("[breathing]\nrate_per_min = 12.0\n", encoding="utf-8")
    controls = Controls(P.load_profile(path), path)
    controls.press("w")
    folder.chmod(0o500)
    try:
        event = controls.press("s")
    finally:
        folder.chmod(0o700)
    assert event.message.startswith("not saved: ") and controls.dirty
    assert path.read_text(encoding="utf-8") == "[breathing]\nrate_per_min = 12.0\n"


def test_a_profile_that_is_a_folder_is_a_message_too(tmp_path):
    controls = Controls(P.Profile(), tmp_path)            # a folder where the file should be
    controls.press("w")
    assert controls.press("s").message.startswith("not saved: ")


def test_tuned_gains_and_modes_change_thepose_for():
    base = P.Profile()
    controls = Controls(base)
    for key in "OOHHe":
        controls.press(key)
    before, after = pose_for(base, **FACE), pose_for(controls.profile, **FACE)
    assert after["mouth_aaa"] > before["mouth_aaa"] + 0.1          # mouth gain up
    assert abs(after["head_y"]) > abs(before["head_y"]) + 0.1       # head gain up
    old_family = f"eyebrow_{base.retarget.eyebrow_family}_left"
    new_family = f"eyebrow_{controls.profile.retarget.eyebrow_family}_left"
    assert before[old_family] > 0.5 and after[old_family] == 0.0    # eyebrow family cycled
    assert after[new_family] == pytest.approx(before[old_family])
    # down again restores the mouth to (nearly) where it was
    controls.press("o")
    controls.press("o")
    assert pose_for(controls.profile, **FACE)["mouth_aaa"] == pytest.approx(before["mouth_aaa"],
                                                                         abs=0.02)

"""The 45-parameter table: order, groups and ranges match THA3's own table."""

import numpy as np
import pytest

from thacam import pose as P


def test_names_match_reference_order():
    tha3 = pytest.importorskip("tha3.poser.modes.pose_parameters")
    groups = tha3.get_pose_parameters().get_pose_parameter_groups()
    names, ranges = [], []
    for g in groups:
        names += g.get_parameter_names()
        ranges += [tuple(g.get_range())] * g.get_arity()
    assert list(P.NAMES) == names
    assert [(p.low, p.high) for p in P.PARAMS] == ranges


def test_table_shape_and_groups():
    assert P.NUM_PARAMS == 45 and len(set(P.NAMES)) == 45
    assert (P.EYEBROW.start, P.EYEBROW.stop, P.FACE.stop, P.ROTATION.stop) == (0, 12, 39, 45)
    assert {p.group for p in P.PARAMS[P.EYEBROW]} == {P.Group.EYEBROW}
    assert {p.group for p in P.PARAMS[P.FACE]} == {P.Group.FACE}
    assert [p.name for p in P.PARAMS[P.ROTATION]] == [
        "head_x", "head_y", "neck_z", "body_y", "body_z", "breathing"]
    assert P.Param.HEAD_Y == P.NAMES.index("head_y")


def test_pose_by_name_and_checks():
    pose = P.Pose()
    assert np.all(pose.values == 0)
    pose["head_y"] = -0.5
    assert pose.values[P.Param.HEAD_Y] == np.float32(-0.5)
    with pytest.raises(P.PoseValueError, match="did you mean 'head_y'"):
        pose["head_q"] = 1
    with pytest.raises(P.PoseValueError, match=r"eye_wink_left=1.5 is out of range.*\[0, 1\]"):
        pose.set_checked("eye_wink_left", 1.5)
    with pytest.raises(P.PoseValueError, match="out of range"):
        pose.set_checked("head_x", float("nan"))
    assert P.Pose(np.full(45, 3.0)).clamped()["head_x"] == 1.0
    with pytest.raises(P.PoseValueError, match="45 values"):
        P.Pose([0.0] * 44)


def test_parse_assignments():
    pose = P.parse_assignments(["head_y=0.25", " mouth_aaa = 1"])
    assert pose["head_y"] == 0.25 and pose["mouth_aaa"] == 1.0
    for bad, msg in [("head_y", "NAME=VALUE"), ("head_y=abc", "not a number"),
                     ("breathing=-1", "out of range")]:
        with pytest.raises(P.PoseValueError, match=msg):
            P.parse_assignments([bad])
    assert P.Pose.from_dict(pose.to_dict()) == pose

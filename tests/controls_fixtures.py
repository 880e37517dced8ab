"""A stand-in for the running pipeline that thacam.controls talks to (LiveTarget): it records
what it was asked to do, and its animator is the real one, so expressions really fade. Plus a
synthetic face and the pose a profile makes of it."""

from __future__ import annotations

from thacam.animation import Animator
from thacam.retarget import Retargeter
from thacam.tracking import Blendshapes, FaceObservation

# A face turned, nodded and tilted, the jaw half open and both brows lowered.
FACE = dict(yaw=12.0, pitch=6.0, roll=4.0, jawOpen=0.3, browDownLeft=0.4, browDownRight=0.4)


def face(t_ms: float, yaw=0.0, pitch=0.0, roll=0.0, **scores) -> FaceObservation:
    """A synthetic observation: head angles and the named blendshape scores (others 0)."""
    return FaceObservation(Blendshapes.from_dict(scores), yaw, pitch, roll, t_ms)


def pose_for(profile, **face_args):
    """The pose a profile's retarget settings and calibration make of a held face."""
    r = Retargeter(profile.retarget, profile.neutral)
    pose = None
    for i in range(5):
        pose = r.update(face(i * 33.0, **face_args))
    return pose


class FakeTarget:
    def __init__(self, calibration=None):
        self.calibration = calibration
        self.applied: list[dict] = []
        self.mirrors: list[bool] = []
        self.stopped: str | None = None
        self.animator = Animator(seed=0)
        self.t = 0.0

    def apply_settings(self, **changed):
        self.applied.append(changed)

    def calibrate(self):
        return self.calibration

    def press_expression(self, preset):
        self.animator.press_expression(preset, self.t)

    def release_expression(self, preset):
        self.animator.release_expression(preset, self.t)

    @property
    def expression(self):
        return self.animator.expression

    def set_mirror(self, mirror):
        self.mirrors.append(mirror)
        return mirror

    @property
    def mirror(self):
        return self.mirrors[-1] if self.mirrors else True

    def stop(self, reason="stopped"):
        self.stopped = reason

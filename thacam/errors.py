"""thacam's error tree.

A ``UserError`` is something the user can fix (a wrong image, a missing file, a bad flag, a broken
profile, OBS down): the CLI prints its message as one line on stderr and exits with code 2, no
traceback. Anything else is a bug and shows a traceback (exit 1).

    ThacamError
    ├── UserError                       exit 2, one line
    │   ├── CharacterError              the character image is unusable
    │   ├── WeightsError                model files
    │   │   ├── MissingWeights
    │   │   ├── ChecksumMismatch
    │   │   └── IncompatibleCheckpoint  wrong keys/shapes, truncated, unsafe pickle
    │   ├── FetchError                  `thacam fetch` could not download or unpack
    │   ├── ProfileError                a broken profile (file, key path, what is expected)
    │   ├── CaptureError
    │   │   └── CameraUnavailable
    │   ├── OutputError
    │   │   └── VirtualCameraUnavailable
    │   └── ObsError
    │       ├── ObsConnectionError
    │       └── ObsAuthError
    └── RenderError                     one frame failed to render (logged and skipped live)

Messages are complete sentences that end with what to do next.
"""

from __future__ import annotations

__all__ = [
    "ThacamError", "UserError", "CharacterError", "WeightsError", "MissingWeights",
    "ChecksumMismatch", "IncompatibleCheckpoint", "FetchError", "ProfileError", "CaptureError",
    "CameraUnavailable", "OutputError", "VirtualCameraUnavailable", "ObsError",
    "ObsConnectionError", "ObsAuthError", "RenderError",
]


class ThacamError(Exception):
    """Base of every error thacam raises on purpose."""


class UserError(ThacamError):
    """Something the user can fix; the CLI shows the message only and exits with code 2."""

    exit_code = 2


class CharacterError(UserError):
    def __init__(self, path: object, problem: str, remedy: str | None = None):
        self.path = path
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{path}: {problem}" + (f"; {remedy}" if remedy else ""))


class WeightsError(UserError):
    def __init__(self, path: object, problem: str, remedy: str = "run `thacam fetch`"):
        self.path = path
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{path}: {problem}; {remedy}")


class MissingWeights(WeightsError):
    pass


class ChecksumMismatch(WeightsError):
    pass


class IncompatibleCheckpoint(WeightsError):
    pass


class FetchError(UserError):
    pass


class ProfileError(UserError):
    def __init__(self, path: object, key: str | None, problem: str):
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}" + (f": {key}" if key else "")
        super().__init__(f"{where}: {problem}")


class CaptureError(UserError):
    pass


class CameraUnavailable(CaptureError):
    pass


class OutputError(UserError):
    pass


class VirtualCameraUnavailable(OutputError):
    pass


class ObsError(UserError):
    pass


class ObsConnectionError(ObsError):
    pass


class ObsAuthError(ObsError):
    pass


class RenderError(ThacamError):
    pass

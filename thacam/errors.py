"""thacam's error tree: every exception thacam raises on purpose is defined here.

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
    │   ├── SettingsError               a setting of the wrong type or out of range (owner, field)
    │   ├── ProfileError                a broken profile (file, key path, what is expected)
    │   ├── PoseValueError              an unknown pose parameter or a value out of its range
    │   ├── CaptureError
    │   │   └── CameraUnavailable
    │   ├── SourceError                 a face source (webcam, network tracker) cannot start
    │   │   └── AudioUnavailable        no microphone, or a file without readable sound
    │   ├── OutputError
    │   │   └── SinkUnavailable         an output that may be skipped when others work
    │   │       └── VirtualCameraUnavailable
    │   ├── ObsError
    │   │   ├── ObsConnectionError
    │   │   ├── ObsAuthError
    │   │   └── ObsRequestError         OBS refused a request (code, comment)
    │   └── PanelError                  the control panel cannot serve (address, port in use)
    ├── BadPacket                       a network tracker's packet that cannot be read (kind:
    │                                   malformed, truncated, oversized, wrong protocol); the
    │                                   source counts it and reads on, it never reaches the user
    └── ExportError                     the optional OpenVINO engine cannot run (falls back)

    KeyboardInterrupt
    └── Terminated                      SIGTERM: ends a command the way Ctrl-C does

An ``OSError`` from the system (disk full, read-only folder, a folder where a file should be) is
not a bug either: :func:`os_error_message` turns it into the same one-line form, naming the path
and what to do.

``SettingsError`` and ``PoseValueError`` are also ``ValueError`` s: they are raised by
constructors (a settings dataclass, a Pose) where Python code expects a ValueError.

Messages are complete sentences that end with what to do next. Must not import anything heavy.
"""

from __future__ import annotations

import errno

__all__ = [
    "ThacamError", "UserError", "CharacterError", "WeightsError", "MissingWeights",
    "ChecksumMismatch", "IncompatibleCheckpoint", "FetchError", "SettingsError", "ProfileError",
    "PoseValueError", "CaptureError", "CameraUnavailable", "SourceError", "AudioUnavailable", "OutputError",
    "SinkUnavailable", "VirtualCameraUnavailable", "ObsError", "ObsConnectionError",
    "ObsAuthError", "ObsRequestError", "PanelError", "BadPacket", "ExportError", "Terminated",
    "os_error_message",
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


class SettingsError(UserError, ValueError):
    """A setting of the wrong type or out of range. ``owner`` is the settings class (or a
    description of the object), ``field`` the field's name (dotted below it: ``overrides.x``)."""

    def __init__(self, owner: str, field: str, problem: str):
        self.owner = owner
        self.field = field
        self.problem = problem
        super().__init__(f"{owner}.{field}: {problem}")


class ProfileError(UserError):
    def __init__(self, path: object, key: str | None, problem: str):
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}" + (f": {key}" if key else "")
        super().__init__(f"{where}: {problem}")


class PoseValueError(UserError, ValueError):
    """An unknown parameter name or a value out of its range."""


class CaptureError(UserError):
    pass


class CameraUnavailable(CaptureError):
    pass


class SourceError(UserError):
    pass


class AudioUnavailable(SourceError):
    pass


class OutputError(UserError):
    pass


class SinkUnavailable(OutputError):
    """An output that cannot open here; the live run goes on with its other outputs."""


class VirtualCameraUnavailable(SinkUnavailable):
    pass


class ObsError(UserError):
    pass


class ObsConnectionError(ObsError):
    pass


class ObsAuthError(ObsError):
    pass


class ObsRequestError(ObsError):
    """OBS answered a request with an error status; ``code`` is obs-websocket's RequestStatus."""

    def __init__(self, request: str, code: int, comment: str | None):
        self.request = request
        self.code = code
        self.comment = comment
        super().__init__(f"OBS refused {request} (code {code}: {comment or 'no comment'})")


class PanelError(UserError):
    """``--panel``: an address that is not HOST:PORT, one beyond this machine without
    ``--panel-allow-remote``, or a port another program holds."""


class BadPacket(ThacamError, ValueError):
    """A packet a network face source cannot read. ``kind`` is what the source counts it as:
    "malformed", "truncated", "oversized" or "wrong protocol"."""

    KINDS = ("malformed", "truncated", "oversized", "wrong protocol")

    def __init__(self, kind: str, detail: str):
        if kind not in self.KINDS:
            raise ValueError(f"unknown bad-packet kind {kind!r}")
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


class ExportError(ThacamError):
    """The optional exported backend cannot be used here (the caller falls back to PyTorch)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop the way Ctrl-C stops (outputs finished or aborted, old files kept)."""


# errno -> what the user can do about it (the system's own words say what happened)
_OS_REMEDIES = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EFBIG: "write somewhere else, or less",
    errno.EROFS: "write somewhere else",
    errno.EACCES: "check the permissions or write somewhere else",
    errno.EPERM: "check the permissions or write somewhere else",
    errno.EISDIR: "give a file name, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.EEXIST: "move it away or choose another name",
    errno.ENOENT: "check the path",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the path, what the system said, and what to do."""
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    said = exc.strerror or str(exc) or type(exc).__name__
    remedy = _OS_REMEDIES.get(exc.errno or 0)
    text = f"{where}: {said}" if where else said
    return f"{text}; {remedy}" if remedy else text

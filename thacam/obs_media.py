"""The OBS source that shows thacam's alpha stream (``--output stream``): a Media Source
(``ffmpeg_source``) reading the NUT stream thacam serves on a local TCP port.

Settings chosen for latency and for a stream that comes and goes (checked against OBS 29 under
Xvfb, scripts/stream_latency.py measures them): not a local file (so OBS reconnects instead of
ending), no network buffering, reconnect after 1 s, restart when the source becomes active, and
keep the last frame when thacam stops rather than flash an empty one. No chroma key: the frames
carry their own straight alpha, which OBS keeps exactly.

Must not import anything heavy (obs.py uses it; no thacam imports, so no cycle).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MEDIA_KIND", "media_input", "stream_input_url", "reopen_stream"]

MEDIA_KIND = "ffmpeg_source"


def stream_input_url(port: int, host: str = "127.0.0.1") -> str:
    """What the Media Source's "Input" reads: thacam serving on this machine."""
    return f"tcp://{host}:{port}"


def media_input(port: int) -> tuple[str, dict[str, Any]]:
    """OBS input kind and settings of the Media Source that reads ``--output stream:PORT``."""
    return MEDIA_KIND, {
        "is_local_file": False,
        "input": stream_input_url(port),
        "input_format": "nut",
        "buffering_mb": 0,               # OBS's network buffer: every MB is frames of latency
        "reconnect_delay_sec": 1,        # thacam restarted: frames again within a second
        "restart_on_activate": True,
        "close_when_inactive": False,    # closing would drop the connection on a scene switch
        "clear_on_media_end": False,
        "hw_decode": False,              # raw video: nothing to decode
    }


def reopen_stream(source: str, port: int) -> tuple[str, dict[str, Any]]:
    """The request that makes OBS open the stream again, for when thacam starts serving it.

    OBS 29 gives up on a Media Source that failed to connect while it was off air (the scene not
    on program): its reader thread ends and neither reconnecting nor coming on air starts it
    again. Setting its input anew does.
    """
    return "SetInputSettings", {"inputName": source, "overlay": True,
                                "inputSettings": {"input": stream_input_url(port)}}

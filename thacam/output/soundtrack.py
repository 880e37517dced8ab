"""Sound for rendered videos: ``thacam render`` keeps the voice that moved the mouth.

The frames are written first (thacam.output.video); then the finished video's frames are copied
as they are (no second encode) next to the sound, encoded as AAC (.mp4, .mov) or Opus (.webm),
both starting at the video's time 0, as the poses do. The result goes to a temporary name,
is checked to decode back whole, and replaces the silent file only then. PyAV (FFmpeg's libraries
in one pip package) does the muxing, so no ``ffmpeg`` program is needed. Must not import torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputError
from ..files import temp_beside
from .video import decode_count

__all__ = ["add_sound", "SOUND_RATE"]

SOUND_RATE = 48000          # Opus's only rate; AAC takes it too


def add_sound(video: Path | str, sound: Path | str) -> None:
    """Give ``video`` the sound of ``sound`` (an audio file or another video).

    Raises:
        OutputError: the sound cannot be added; the silent video is kept.
    """
    import av
    video, sound = Path(video), Path(sound)
    frames, size = decode_count(video)
    tmp = temp_beside(video, suffix=f".part{video.suffix}")
    try:
        with av.open(str(video)) as vin, av.open(str(sound)) as ain, \
                av.open(str(tmp), "w") as out:
            vs = vin.streams.video[0]
            ovs = out.add_stream_from_template(vs)
            codec = "libopus" if video.suffix.lower() == ".webm" else "aac"
            oas = out.add_stream(codec, rate=SOUND_RATE, layout="mono")
            for packet in vin.demux(vs):
                if packet.dts is None:          # the demuxer's end-of-stream marker
                    continue
                packet.stream = ovs
                out.mux(packet)
            resampler = av.AudioResampler(format=oas.codec_context.format, layout="mono",
                                          rate=SOUND_RATE,
                                          frame_size=oas.codec_context.frame_size or None)
            # The sound stops with the pictures (a longer voice would play over a frozen frame).
            rate = vs.average_rate or vs.guessed_rate or 30
            left = int(SOUND_RATE * frames / float(rate))
            for frame in (*ain.decode(audio=0), None):
                for chunk in resampler.resample(frame):
                    if left <= 0:
                        break
                    left -= chunk.samples
                    chunk.pts = None
                    out.mux(oas.encode(chunk))
            out.mux(oas.encode(None))
        got, got_size = decode_count(tmp)
        if got != frames or got_size != size:
            raise OutputError(f"{video}: adding the sound lost frames ({got} of {frames}); the "
                              "silent video is kept. Is the disk full?")
        os.replace(tmp, video)
        tmp = None
    except av.FFmpegError as exc:
        raise OutputError(f"{video}: cannot add the sound of {sound} ({exc}); the silent video "
                          "is kept") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)

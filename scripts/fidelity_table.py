"""Print the expression-fidelity table (thacam.fidelity) for every video in a folder.

    .venv/bin/python scripts/fidelity_table.py ../shared/data/faces [--cache DIR] [--profile P]

Each clip runs as `thacam track --no-mirror` runs it (the profile's retarget and smoothing, 30
calibration frames without a calibrated profile); the avatar's mouth, brows and eyes are compared
with the landmark-geometry truth. MediaPipe costs seconds per clip, so ``--cache DIR`` keeps each
clip's observations (a pickle per clip, keyed by size and mtime) for the next run.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from thacam import fidelity  # noqa: E402
from thacam.profile import Profile, load_profile  # noqa: E402

VIDEO = (".mp4", ".mov", ".webm", ".avi", ".mkv")


def observations(clip: Path, model: Path, cache: Path | None) -> list:
    key = None
    if cache is not None:
        st = clip.stat()
        key = cache / f"{clip.stem}-{st.st_size}-{int(st.st_mtime)}.pkl"
        if key.is_file():
            return pickle.loads(key.read_bytes())
    from thacam.capture.opencv import video_frames
    from thacam.tracking import FaceTracker
    with FaceTracker(model) as tracker:
        obs = [tracker.detect(frame) for frame in video_frames(clip)]
    if key is not None:
        cache.mkdir(parents=True, exist_ok=True)
        key.write_bytes(pickle.dumps(obs))
    return obs


COLUMNS = (("mouth recall", "mouth_recall", "mouth_open_frames"),
           ("mouth phantom", "mouth_phantom", "mouth_shut_frames"),
           ("mouth rank", "mouth_rank", None),
           ("brow recall", "brow_recall", "brow_raised_frames"),
           ("brow phantom", "brow_phantom", "brow_neutral_frames"),
           ("blink recall", "blink_recall", "blink_shut_frames"),
           ("blink phantom", "blink_phantom", "blink_open_frames"))


def cell(value: float, n: int | None) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3f}" + (f" ({n})" if n is not None else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--weights", type=Path, default=REPO / "weights")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--no-smooth", dest="smooth", action="store_false")
    args = ap.parse_args(argv)
    profile = load_profile(args.profile) if args.profile else Profile()
    clips = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in VIDEO)
    if not clips:
        ap.error(f"no videos in {args.folder}")
    rows = []
    print("| clip | frames | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for clip in clips:
        obs = observations(clip, args.weights / "face_landmarker.task", args.cache)
        fig = fidelity.figures(obs, fidelity.avatar_poses(obs, profile, args.smooth))
        rows.append(fig)
        print(f"| {clip.stem} | {len(obs)} | " + " | ".join(
            cell(getattr(fig, a), getattr(fig, n) if n else None) for _, a, n in COLUMNS) + " |")
    # Rates over all frames of all clips; the rank correlation is the mean over clips.
    print("| all | | " + " | ".join(cell(*fidelity.pooled(rows, a, n)) if n else
                                    cell(fidelity.pooled(rows, a, n)[0], None)
                                    for _, a, n in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

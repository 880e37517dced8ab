"""`thacam voice devices|calibrate`: the microphones, and the user's own vowel templates."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

from ..errors import UserError
from .options import add_common, add_profile

__all__ = ["add_voice"]

log = logging.getLogger("thacam")

PROMPTS = {"a": "a (あ, as in 'father')", "i": "i (い, as in 'see')", "u": "u (う, as in 'food', "
           "lips relaxed)", "e": "e (え, as in 'bed')", "o": "o (お, as in 'more')"}


def cmd_devices(args: argparse.Namespace) -> int:
    from ..sources.audio import input_devices
    devices = input_devices()
    if not devices:
        print("no microphone found (no audio input device)")
        return 1
    for index, name, rate in devices:
        print(f"{index:3d}  {name}  ({rate:g} Hz)")
    return 0


def _target(args: argparse.Namespace) -> Path:
    from ..profile import PROFILES_DIR, profile_path_for
    if args.profile is not None:
        return profile_path_for(args.profile)
    if args.character is not None:
        return PROFILES_DIR / f"{args.character.stem}.toml"
    raise UserError("thacam voice calibrate needs --character IMG or --profile PATH|NAME: the "
                    "profile your vowels are saved in")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..lipsync import VOWELS, calibrate, default_templates, heard_vowel
    from ..profile import Profile, load_profile, save_profile
    from ..sources.audio import read_audio, record
    path = _target(args)
    profile = load_profile(path) if path.exists() else Profile()
    if args.character is not None and profile.character.image is None:
        profile = dataclasses.replace(profile, character=dataclasses.replace(
            profile.character, image=args.character.resolve()))
    if args.vowels:
        if len(args.vowels) != len(VOWELS):
            raise UserError(f"--vowels takes five files, a i u e o in that order; got "
                            f"{len(args.vowels)}")
        recordings = {v: read_audio(f) for v, f in zip(VOWELS, args.vowels)}
    else:
        recordings = {}
        for v in VOWELS:
            print(f"say {PROMPTS[v]} and hold it for {args.seconds:g} s: in 3...", end="",
                  flush=True)
            for n in ("2...", "1...", "now\n"):
                time.sleep(0.6)
                print(n, end="", flush=True)
            recordings[v] = record(args.mic, args.seconds)
    quiet = [v for v in VOWELS if heard_vowel(recordings[v], profile.lipsync) is None]
    if quiet:
        raise UserError(f"no voice heard in the recording of {', '.join(quiet)}: speak louder or "
                        "closer to the microphone (or lower lipsync.gate_db), then calibrate again")
    try:
        tuned = calibrate(recordings, profile.lipsync)
    except ValueError as exc:
        raise UserError(f"calibration failed: {exc}; record each vowel for at least 0.5 s") \
            from None
    builtin = tuned.with_templates(default_templates(tuned.pre_emphasis))
    before = {v: heard_vowel(recordings[v], builtin) for v in VOWELS}
    after = {v: heard_vowel(recordings[v], tuned) for v in VOWELS}
    for v in VOWELS:
        print(f"  {v}: built-in templates hear {before[v]}, yours hear {after[v]}")
    right = sum(after[v] == v for v in VOWELS)
    save_profile(dataclasses.replace(profile, lipsync=tuned), path,
                 keys=[f"lipsync.template_{v}" for v in VOWELS])
    print(f"saved your vowels to {path} ({right}/5 told apart; built-in: "
          f"{sum(before[v] == v for v in VOWELS)}/5)")
    if right < 5:
        print("some vowels sound alike in your recordings: say each one clearly and steadily, "
              "then calibrate again")
    return 0


def add_voice(sub) -> None:
    p = sub.add_parser("voice", help="microphones and lip sync: list the inputs, record your own "
                       "vowels")
    vsub = p.add_subparsers(dest="voice_command", metavar="ACTION", required=True)
    d = vsub.add_parser("devices", help="list the audio inputs (for --mic DEVICE)")
    d.set_defaults(func=cmd_devices)
    c = vsub.add_parser("calibrate", help="record your five vowels (a i u e o) into the "
                        "profile's [lipsync] templates")
    c.add_argument("--character", type=Path, default=None, metavar="IMG",
                   help="save into profiles/<IMG stem>.toml")
    add_profile(c, set_profile=False)
    c.add_argument("--mic", default=None, metavar="DEVICE",
                   help="the microphone (default: the system's input)")
    c.add_argument("--seconds", type=float, default=1.5, metavar="S",
                   help="how long each vowel is recorded (default: %(default)s)")
    c.add_argument("--vowels", nargs="+", type=Path, default=None, metavar="FILE",
                   help="calibrate from five recordings (a i u e o) instead of the microphone")
    c.set_defaults(func=cmd_calibrate)
    for q in (d, c):
        add_common(q)

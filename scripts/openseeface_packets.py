"""Record real OpenSeeFace packets of known test images: tests/data/openseeface_packets.json.

thacam's OpenSeeFace source (thacam/sources/openseeface.py) has to read angles, eyes and mouth the
way OpenSeeFace really sends them, so its tests decode packets that OpenSeeFace itself wrote, of
pictures whose geometry is known: scikit-image's ``astronaut()`` (a public-domain NASA portrait),
as it is, mirrored left-right, rotated by +15 and -15 degrees on screen, and smaller. No person's
webcam footage goes into the fixture.

Each picture becomes a short still video; OpenSeeFace's facetracker.py reads it (``-c FILE``) and
sends one UDP packet per frame to a port this script listens on; the last packet of each video
(the tracker has settled by then) is kept, base64 in JSON, with what the picture is.

Used: OpenSeeFace at commit dee5bb76066d062e7d80828ff407cbc5854f94f1 (2025-06-16), landmark model
0 (``--model 0``: the only landmark model in the snapshot this was made from; the packet layout
is the same for every model), run in a venv of its own (onnxruntime, opencv-python-headless,
pillow, numpy). OpenSeeFace is never a thacam dependency.

    python3 -m venv /tmp/osf-venv
    /tmp/osf-venv/bin/pip install onnxruntime opencv-python-headless pillow numpy
    git clone https://github.com/emilianavt/OpenSeeFace /tmp/osf
    .venv/bin/python scripts/openseeface_packets.py --osf /tmp/osf --python /tmp/osf-venv/bin/python

The test images are made by ``images()`` here; tests/test_openseeface.py makes them again to run
thacam's own MediaPipe tracker on the very same pixels.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "data" / "openseeface_packets.json"
OSF_COMMIT = "dee5bb76066d062e7d80828ff407cbc5854f94f1"
SIZE = 640          # the canvas: room around the 512x512 photo so a rotation crops nothing
FRAMES = 40         # frames per still video; the tracker's 3-D fit settles within ~10

# name -> (mirrored, roll in degrees counter-clockwise on screen, turn in degrees toward
# image-right). The astronaut looks straight at the camera, so a turn is made by wrapping the
# photo round a vertical cylinder through her head and turning that (see _turned).
SHOTS: dict[str, tuple[bool, float, float]] = {
    "original": (False, 0.0, 0.0),
    "mirrored": (True, 0.0, 0.0),
    "roll_ccw15": (False, 15.0, 0.0),
    "roll_cw15": (False, -15.0, 0.0),
    "turn_right25": (False, 0.0, 25.0),
    "turn_right25_mirrored": (True, 0.0, 25.0),
}


def images() -> dict[str, np.ndarray]:
    """The test pictures (RGB uint8, SIZE x SIZE): the photo on a grey canvas, turned in depth,
    rolled about the face and flipped as SHOTS says (the flip last: a mirrored shot is the
    mirror image of the unmirrored one)."""
    import cv2
    from skimage import data
    photo = data.astronaut()                        # 512x512 RGB
    canvas = np.full((SIZE, SIZE, 3), 128, np.uint8)
    off = (SIZE - 512) // 2
    canvas[off:off + 512, off:off + 512] = photo
    face = (off + 216.0, off + 110.0)               # about the middle of the face (x, y)
    out = {}
    for name, (mirror, roll, turn) in SHOTS.items():
        img = canvas
        if turn:
            img = cv2.remap(img, *_turned(face, turn), cv2.INTER_LINEAR)
        if roll:
            # cv2's positive angle turns the picture counter-clockwise as shown on screen.
            img = cv2.warpAffine(img, cv2.getRotationMatrix2D(face, roll, 1.0), (SIZE, SIZE),
                                 flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128))
        out[name] = np.ascontiguousarray(img[:, ::-1]) if mirror else img
    return out


def _turned(face: tuple[float, float], deg: float, radius: float = 110.0):
    """remap()'s maps that turn the head by ``deg`` toward image-right: the picture within
    ``radius`` of the vertical line through ``face`` is read as the front of a cylinder (a head
    is roughly one, side to side), which turns, so the nose moves right while the features
    beyond it crowd toward the cylinder's edge. (A flat card turned in perspective reads as
    barely turned: MediaPipe saw 1.4 deg for 25.) Outside the cylinder nothing moves."""
    a = np.radians(deg)
    xs, ys = np.meshgrid(np.arange(SIZE, dtype=np.float32), np.arange(SIZE, dtype=np.float32))
    x = (xs - face[0]) / radius
    inside = np.abs(x) < 1.0
    src = np.where(inside, face[0] + radius * np.sin(np.arcsin(np.clip(x, -1, 1)) - a), xs)
    return src.astype(np.float32), ys


def _write_video(rgb: np.ndarray, path: Path) -> None:
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24.0,
                             (rgb.shape[1], rgb.shape[0]))
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for _ in range(FRAMES):
        writer.write(bgr)
    writer.release()


def _record(osf: Path, python: str, video: Path) -> list[bytes]:
    """Run facetracker.py on the video; every datagram it sends, in order."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    got: list[bytes] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                got.append(sock.recv(65536))
            except socket.timeout:
                pass

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        subprocess.run([python, str(osf / "facetracker.py"), "-c", str(video), "--model", "0",
                        "--ip", "127.0.0.1", "--port", str(sock.getsockname()[1]), "-s", "1",
                        "--max-threads", "1"], cwd=osf, check=True, timeout=300)
    finally:
        import time
        time.sleep(0.5)                 # the last datagrams are still in flight
        done.set()
        thread.join(2)
        sock.close()
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--osf", type=Path, required=True, help="an OpenSeeFace checkout")
    ap.add_argument("--python", default=sys.executable,
                    help="the Python that has OpenSeeFace's requirements")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    shots = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rgb in images().items():
            video = Path(tmp) / f"{name}.avi"
            _write_video(rgb, video)
            packets = _record(args.osf, args.python, video)
            if not packets:
                print(f"{name}: OpenSeeFace found no face", file=sys.stderr)
                return 1
            mirror, roll, turn = SHOTS[name]
            shots.append({"image": name, "mirrored": mirror, "roll_deg": roll, "turn_deg": turn,
                          "packets_sent": len(packets),
                          "packet": base64.b64encode(packets[-1]).decode()})
            print(f"{name}: {len(packets)} packets, kept the last ({len(packets[-1])} bytes)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "made_by": "scripts/openseeface_packets.py",
        "openseeface_commit": OSF_COMMIT, "model": 0, "frames_per_image": FRAMES,
        "images": "skimage.data.astronaut() on a 640x640 grey canvas (see images())",
        "shots": shots}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real OBS Studio (29.x, obs-websocket 5.x) under Xvfb for the OBS tests.

Recipe and quirks: ../shared/notes/obs-headless.md. The essentials encoded here:
- a pre-seeded private ``global.ini`` (a bare config leaves the websocket server off with a random
  password) and a small, cheap canvas (640x360 @ 10 fps, preview off) so CI's two cores cope;
- Xvfb picks its own display (``-displayfd``); OBS without an X display exits with rc 0, so the
  start-up wait polls the process as well as the port;
- OBS's outbound fetches (rtmp-services) are pointed at a dead loopback proxy;
- stop with SIGINT (SIGTERM is not a clean shutdown in OBS 29) and treat a non-zero exit, or an OBS
  that died on its own, as a failure of the test that owned it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

GLOBAL_INI = """\
[General]
FirstRun=true
LastVersion=486539266
EnableAutoUpdates=false
Pre19Defaults=false
Pre21Defaults=false
Pre23Defaults=false
Pre24.1Defaults=false
MaxLogs=10
ConfirmOnExit=false

[BasicWindow]
SysTrayEnabled=false
SysTrayWhenStarted=false
PreviewEnabled=false
WarnBeforeStartingStream=false
WarnBeforeStoppingStream=false
WarnBeforeStoppingRecord=false

[Basic]
Profile=Untitled
ProfileDir=Untitled
SceneCollection=Untitled
SceneCollectionFile=Untitled

[OBSWebSocket]
FirstLoad=false
ServerEnabled=true
ServerPort={port}
AlertsEnabled=false
AuthRequired=false
ServerPassword=
"""

BASIC_INI = """\
[General]
Name=Untitled

[Video]
BaseCX={width}
BaseCY={height}
OutputCX={width}
OutputCY={height}
FPSType=2
FPSNum={fps}
FPSDen=1
"""

DEAD_PROXY = "http://127.0.0.1:9"
UI_SETTLE_S = 1.0


def require_obs_binaries() -> None:
    """Skip (or fail under CI) when OBS or Xvfb is not installed."""
    missing = [b for b in ("obs", "Xvfb") if shutil.which(b) is None]
    if not missing:
        return
    msg = (f"{' and '.join(missing)} not installed; install with `apt-get install "
           "--no-install-recommends obs-studio xvfb libgl1-mesa-dri`")
    if os.environ.get("CI"):
        pytest.fail(msg + " (CI must run the OBS tests, not skip them)")
    pytest.skip(msg)


def free_port() -> int:
    # OBS listens on every interface, so probe the wildcard address, not only loopback.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def connections_to(port: int) -> int:
    """This process's established TCP connections to ``port`` (from /proc: no psutil here)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                remote, state, inode = fields[2], fields[3], fields[9]
                if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
                    count += 1
    return count


class ObsDied(AssertionError):
    pass


class HeadlessOBS:
    """One Xvfb display and one OBS on it, with a private config under ``root``.

    ``start()`` may be called again after ``stop()``/``kill()`` (same display and port), with
    ``fresh=True`` to wipe OBS's saved scenes first: an OBS that comes back with nothing in it.
    """

    def __init__(self, root: Path, *, port: int | None = None, password: str = "",
                 width: int = 640, height: int = 360, fps: int = 10):
        self.root = Path(root)
        self.port = port or free_port()
        self.password = password
        self.width, self.height, self.fps = width, height, fps
        self.xvfb: subprocess.Popen | None = None
        self.proc: subprocess.Popen | None = None
        self.display: str | None = None
        self.launched_at = 0.0      # time.monotonic() when OBS was spawned
        self.ready_at = 0.0         # ... and when its websocket port accepted a connection
        self._logs: list[Path] = []

    # ------------------------------------------------------------------ lifecycle
    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def log_path(self) -> Path:
        return self._logs[-1]

    def _write_config(self, fresh: bool) -> None:
        cfg = self.home / ".config" / "obs-studio"
        if fresh and cfg.exists():
            shutil.rmtree(cfg)
        (cfg / "basic" / "profiles" / "Untitled").mkdir(parents=True, exist_ok=True)
        if not (cfg / "global.ini").exists():
            (cfg / "global.ini").write_text(GLOBAL_INI.format(port=self.port))
        (cfg / "basic" / "profiles" / "Untitled" / "basic.ini").write_text(
            BASIC_INI.format(width=self.width, height=self.height, fps=self.fps))

    def _start_xvfb(self) -> None:
        if self.xvfb is not None and self.xvfb.poll() is None:
            return
        r, w = os.pipe()
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        with os.fdopen(r) as f:
            number = f.readline().strip()   # Xvfb writes it once the display is usable
        if not number:
            raise RuntimeError("Xvfb did not report a display number")
        self.display = f":{number}"

    def start(self, fresh: bool = False, timeout_s: float = 30.0) -> "HeadlessOBS":
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("OBS is already running")
        self._write_config(fresh)
        self._start_xvfb()
        run = self.root / "run"
        run.mkdir(parents=True, exist_ok=True)
        run.chmod(0o700)
        # Importing cv2 (opencv-python's Qt build) sets QT_QPA_PLATFORM_PLUGIN_PATH to its own
        # plugins in os.environ; OBS inheriting it aborts (rc -6) loading the wrong xcb plugin.
        env = {k: v for k, v in os.environ.items()
               if k.lower() != "no_proxy" and not k.startswith(("QT_QPA_PLATFORM_PLUGIN_PATH",
                                                               "QT_PLUGIN_PATH"))}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_RUNTIME_DIR=str(run), DISPLAY=self.display, LIBGL_ALWAYS_SOFTWARE="1",
                   QT_QPA_PLATFORM="xcb", http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY,
                   HTTPS_PROXY=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY)
        cmd = ["obs", "--multi", "--disable-missing-files-check", "--websocket_port",
               str(self.port)]
        if self.password:
            cmd += ["--websocket_password", self.password]
        log = self.root / f"obs-{len(self._logs)}.log"
        self._logs.append(log)
        with open(log, "wb") as out:
            self.launched_at = time.monotonic()
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.root)
        deadline = self.launched_at + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.kill()
                self._stop_xvfb()  # nothing of this instance is left running
                raise ObsDied(f"OBS exited with rc {rc} while starting\n" + self.log_tail())
            if _port_open(self.port):
                self.ready_at = time.monotonic()
                return self
            time.sleep(0.05)
        self.kill()
        raise ObsDied(f"OBS did not open port {self.port} within {timeout_s} s\n" + self.log_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGINT (OBS's clean shutdown); raises ObsDied if it was already dead or exits non-zero."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is not None:
            raise ObsDied(f"OBS had died (rc {proc.returncode})\n" + self.log_tail())
        self._drain_ui()
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ObsDied(f"OBS ignored SIGINT for {timeout_s} s\n" + self.log_tail()) from None
        if rc != 0:
            raise ObsDied(f"OBS exited with rc {rc} on SIGINT\n" + self.log_tail())
        return rc

    def _drain_ui(self) -> None:
        """Wait until OBS's UI thread has handled every queued scene/source change.

        OBS 29's frontend applies websocket changes on its Qt thread, queued; a SIGINT that lands
        while some are pending hangs or crashes the shutdown (seen: "User added source" logged
        after "Shutting down", then no exit; a segfault after a RemoveScene). SetCurrentProgramScene
        is a blocking round trip through that thread, so once it answers the queue is empty.
        """
        try:
            with self.client(timeout=5) as c:
                current = c.send("GetCurrentProgramScene", raw=True)["currentProgramSceneName"]
                c.send("SetCurrentProgramScene", {"sceneName": current})
        except Exception:   # noqa: BLE001 - best effort; stop() reports what happens next
            pass
        # ... and let the repaint that round trip causes finish: a close during a paint segfaulted.
        time.sleep(UI_SETTLE_S)

    def kill(self) -> None:
        """SIGKILL: OBS crashing or being killed by the user (no clean shutdown on purpose)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop OBS (cleanly) and Xvfb; raises ObsDied when OBS had died or shut down badly."""
        try:
            self.stop()
        finally:
            self._stop_xvfb()

    def _stop_xvfb(self) -> None:
        if self.xvfb is not None:
            self.xvfb.terminate()
            self.xvfb.wait()
            self.xvfb = None

    def __enter__(self) -> "HeadlessOBS":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ inspection
    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except (OSError, IndexError):
            return "(no OBS log)"
        return "\n".join(text[-lines:])

    def client(self, timeout: float = 10.0):
        """A ReqClient (use it as a context manager: an open client delays OBS's shutdown 5 s)."""
        import obsws_python
        return obsws_python.ReqClient(host="127.0.0.1", port=self.port, password=self.password,
                                      timeout=timeout)

    def events(self, timeout: float = 10.0):
        import obsws_python
        return obsws_python.EventClient(host="127.0.0.1", port=self.port,
                                        password=self.password, timeout=timeout)

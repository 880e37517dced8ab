"""The control panel: a local web page and a JSON/WebSocket API to tune a running thacam.

    api.py       PanelApi: the settings table generated from the settings metadata, the state
                 snapshot, the commands (set, calibrate, expression, save), the request checks
                 (token, Origin, Host); no web framework
    server.py    PanelServer: aiohttp on its own thread and event loop: the page, the API, the
                 WebSocket, the preview
    preview.py   PanelPreview: keeps the newest frame and encodes it (PNG with alpha) on its own
                 thread at a throttled rate, so the frame loop never waits on the browser
    static/      the page (index.html, panel.js, panel.css)

Everything the panel changes goes through thacam.controls.Controls; what it shows comes from
``LivePipeline.status()``. It binds 127.0.0.1 unless told otherwise (``allow_remote``), and every
request needs the run's random token. Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import PanelError

__all__ = ["PanelAddress", "parse_address", "DEFAULT_HOST", "DEFAULT_PORT"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class PanelAddress:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT     # 0 = any free port (tests)
    allow_remote: bool = False   # the user said that other machines may reach it

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_address(text: str | None, allow_remote: bool = False) -> PanelAddress:
    """``--panel [HOST:PORT]`` -> a PanelAddress ("PORT", "HOST", "HOST:PORT", "[::1]:PORT").

    Raises:
        PanelError: not an address, a port out of range, or a host beyond this machine without
            ``allow_remote``.
    """
    host, port = DEFAULT_HOST, DEFAULT_PORT
    text = (text or "").strip()
    if text:
        if text.isdigit():
            port_text, host_text = text, ""
        elif text.startswith("["):                       # [v6]:PORT
            host_text, _, rest = text[1:].partition("]")
            port_text = rest.lstrip(":")
        elif text.count(":") == 1:
            host_text, _, port_text = text.partition(":")
        else:
            host_text, port_text = text, ""
        host = host_text or DEFAULT_HOST
        if port_text:
            if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
                raise PanelError(f"--panel {text}: {port_text!r} is not a port; give HOST:PORT "
                                 f"with a port in 1-65535, e.g. --panel {DEFAULT_HOST}:"
                                 f"{DEFAULT_PORT}")
            port = int(port_text)
    address = PanelAddress(host, port, allow_remote)
    if not address.loopback and not allow_remote:
        raise PanelError(f"--panel {text}: {host} lets other machines reach the control panel "
                         "(anyone with its link can change your avatar); add "
                         "--panel-allow-remote if you mean it, or leave the host out for "
                         f"{DEFAULT_HOST}")
    return address

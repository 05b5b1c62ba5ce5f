"""``batchwork dashboard``: serve the dashboard with uvicorn, safely by default."""

from __future__ import annotations

import ipaddress
import sys
from typing import TYPE_CHECKING

from ._app import create_app

if TYPE_CHECKING:
    from batchwork.jobs import JobProcessor

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the dashboard on this machine.

    Example::

        is_loopback("127.0.0.1")   # True
        is_loopback("0.0.0.0")     # False
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_warning(host: str, token: str | None) -> str | None:
    """The warning to print before serving, or ``None`` when the binding is safe."""
    if is_loopback(host) or token:
        return None
    return (
        f"warning: the dashboard is bound to {host} without --token: anyone who can reach "
        "this port can see every job and cancel, retry or enqueue jobs"
    )


def serve(
    processor: JobProcessor, *, host: str = "127.0.0.1", port: int = 8321, token: str | None = None
) -> int:
    """Serve the dashboard until interrupted; returns the exit status.

    On loopback only loopback ``Host`` names are accepted (no DNS rebinding); elsewhere
    any host is, and a warning is printed unless ``token`` is set.

    Example::

        serve(processor, port=8321)
    """
    import uvicorn

    warning = bind_warning(host, token)
    if warning:
        print(warning, file=sys.stderr)
    allowed = LOOPBACK_NAMES if is_loopback(host) else None
    app = create_app(processor, token=token, allowed_hosts=allowed)
    shown = f"[{host}]" if ":" in host else host
    print(f"batchwork dashboard on http://{shown}:{port}/", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0

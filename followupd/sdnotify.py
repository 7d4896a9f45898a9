"""sd_notify(3) without libsystemd: readiness, status, watchdog and stopping messages to systemd.

systemd passes ``NOTIFY_SOCKET`` (a unix datagram socket: a path, or ``@name`` in the abstract namespace) to a
``Type=notify`` service; every message is one datagram of ``KEY=VALUE`` lines. ``WATCHDOG_USEC`` (and, when
set, ``WATCHDOG_PID``) say that the service must send ``WATCHDOG=1`` at least that often; we ping at half the
interval. Outside systemd every call is a cheap no-op, and a failed send is never fatal: the daemon's work
matters more than telling systemd about it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | None:
    """The address to send to for a ``NOTIFY_SOCKET`` value; None when it is empty or unsupported.

    ``@name`` is the abstract namespace (a leading NUL byte on the wire); an absolute path is a file system
    socket. Other forms (``vsock:...``) are not supported and disable notifications.
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(env: Mapping[str, str], *, pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``); None when there is no watchdog.

    ``WATCHDOG_PID`` names the process the watchdog is meant for; another process (a child that inherited the
    environment) must not ping.
    """
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    wanted_pid = env.get("WATCHDOG_PID", "")
    if wanted_pid:
        try:
            if int(wanted_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 2_000_000


class Notifier:
    """Sends notifications to systemd's ``NOTIFY_SOCKET``; does nothing when there is none."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        if env.get("NOTIFY_SOCKET") and self.address is None:
            log.warning(
                "NOTIFY_SOCKET=%s is not supported; systemd will not hear from us", env["NOTIFY_SOCKET"]
            )
        self.watchdog_interval = watchdog_interval(env) if self.address else None
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls, env: MutableMapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        """A notifier for this process; with ``unset`` the variables are removed so children never inherit
        them (a password command must not be able to speak for the daemon)."""
        env = os.environ if env is None else env
        notifier = cls(env)
        if unset:
            for name in _VARIABLES:
                env.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True when it was sent."""
        if self.address is None or not assignments:
            return False
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """``READY=1``: start-up is complete (systemd ends ``systemctl start`` here)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=``: one line shown by ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    def reloading(self) -> bool:
        """``RELOADING=1`` with the monotonic time systemd wants; follow with :meth:`ready`."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str = "") -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: we are alive. Only sent when systemd asked for a watchdog."""
        if self.watchdog_interval is None:
            return False
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket (further notifications open a new one)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

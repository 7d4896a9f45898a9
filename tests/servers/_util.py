"""Small helpers shared by the loopback test servers (ports, ownership, log tails)."""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def wait_port_free(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_free(port):
            return True
        time.sleep(0.05)
    return port_is_free(port)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


@dataclass(frozen=True)
class Identity:
    """A Unix user and group, by name and number."""

    user: str
    group: str
    uid: int
    gid: int

    @classmethod
    def current(cls) -> Identity:
        uid, gid = os.getuid(), os.getgid()
        return cls(pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name, uid, gid)

    @classmethod
    def named(cls, user: str, group: str | None = None) -> Identity:
        entry = pwd.getpwnam(user)
        gid = entry.pw_gid
        if group is not None:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:  # e.g. no "nogroup" outside Debian: the user's own group will do
                gid = entry.pw_gid
        return cls(user, grp.getgrgid(gid).gr_name, entry.pw_uid, gid)

    def chown(self, path: Path) -> None:
        """Give `path` to this identity when we are allowed to (as root); a no-op otherwise."""
        if os.geteuid() == 0 and (path.stat().st_uid, path.stat().st_gid) != (self.uid, self.gid):
            os.chown(path, self.uid, self.gid)

    def chown_tree(self, root: Path) -> None:
        self.chown(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                self.chown(Path(dirpath, name))


def running_as_root() -> bool:
    return os.geteuid() == 0


def terminate_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after ``timeout`` seconds)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

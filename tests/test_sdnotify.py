"""sd_notify without libsystemd: datagrams on a test NOTIFY_SOCKET (file system and abstract namespace), the
watchdog interval, and the real daemon's READY / STATUS / WATCHDOG / RELOADING / STOPPING messages."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from followupd.sdnotify import Notifier, socket_address, watchdog_interval
from tests.test_daemon import Spawn, spawn  # noqa: F401 (the fixture)

pytestmark = pytest.mark.timeout(30)


class Listener:
    """The systemd side: a unix datagram socket that collects what arrives."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float = 5.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        message = dict(line.split("=", 1) for line in data.splitlines())
        self.messages.append(message)
        return message

    def wait_for(self, key: str, value: str | None = None, timeout: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if key in message and (value is None or message[key] == value):
                return message

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def abstract() -> Iterator[tuple[str, Listener]]:
    name = f"followupd-test-{secrets.token_hex(6)}"
    listener = Listener("\0" + name)
    yield f"@{name}", listener
    listener.close()


def test_messages_reach_a_file_system_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    listener = Listener(str(path))
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    try:
        assert notifier.enabled
        assert notifier.ready("up and running")
        assert listener.receive() == {"READY": "1", "STATUS": "up and running"}
        assert notifier.status("line one\nline two")
        assert listener.receive() == {"STATUS": "line one line two"}  # one line, always
        assert notifier.stopping()
        assert listener.receive() == {"STOPPING": "1"}
        assert notifier.reloading()
        reloading = listener.receive()
        assert reloading["RELOADING"] == "1"
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert not notifier.watchdog()  # no WATCHDOG_USEC: no pings
    finally:
        notifier.close()
        listener.close()


def test_messages_reach_an_abstract_socket(abstract: tuple[str, Listener]) -> None:
    address, listener = abstract
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"})
    try:
        assert notifier.watchdog_interval == 1.0
        assert notifier.watchdog()
        assert listener.receive() == {"WATCHDOG": "1"}
    finally:
        notifier.close()


def test_without_systemd_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.watchdog_interval is None
    notifier.close()


def test_a_missing_socket_is_not_fatal(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    try:
        assert notifier.enabled
        assert not notifier.ready()
    finally:
        notifier.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("@name", "\0name"), ("/run/notify", "/run/notify"), ("", None), ("@", None), ("vsock:2:1", None)],
)
def test_socket_address(value: str, expected: str | None) -> None:
    assert socket_address(value) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "120000000"}, 60.0),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "4242"}, 60.0),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_usec(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, pid=4242) == expected


def test_the_variables_are_not_inherited_by_children() -> None:
    env = {
        "NOTIFY_SOCKET": "@x",
        "WATCHDOG_USEC": "1000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/bin",
    }
    notifier = Notifier.from_environment(env)
    assert notifier.enabled
    assert notifier.watchdog_interval == 0.5
    assert env == {"PATH": "/bin"}


def test_the_daemon_notifies_systemd(
    tmp_path: Path,
    database_url: str,
    spawn: Spawn,  # noqa: F811
    abstract: tuple[str, Listener],
) -> None:
    address, listener = abstract
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n'
        f'[[accounts]]\nname = "local"\nemail = "me@example.org"\n[accounts.maildir]\npath = "{maildir}"\n'
    )
    config.chmod(0o600)
    daemon = spawn(config, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})

    ready = listener.wait_for("READY", "1")
    assert "accounts: 1 " in ready["STATUS"]
    pings = 0
    while pings < 3:  # every 0.2 s (half of WATCHDOG_USEC)
        pings += "WATCHDOG" in listener.receive(timeout=2)
    status_lines = [m["STATUS"] for m in listener.messages if "STATUS" in m and "READY" not in m]
    assert status_lines, listener.messages  # STATUS= after the first scan, plan and send
    assert status_lines[-1].startswith("accounts: 1 ")

    daemon.signal(signal.SIGHUP)
    reloading = listener.wait_for("RELOADING", "1")
    assert "MONOTONIC_USEC" in reloading
    assert "STATUS" in listener.wait_for("READY", "1")

    daemon.signal(signal.SIGTERM)
    listener.wait_for("STOPPING", "1")
    assert daemon.proc.wait(15) == 0
    seen = [key for m in listener.messages for key in m]
    assert seen.index("READY") < seen.index("WATCHDOG") < seen.index("STOPPING")

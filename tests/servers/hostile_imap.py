"""A hostile IMAP server on 127.0.0.1: a fault-injecting proxy in front of a real Dovecot.

Everything the client sends goes to the real server and everything the server answers comes back, except at
the chosen command (by name: ``GREETING``, ``CAPABILITY``, ``LOGIN``, ``LIST``, ``STATUS``, ``SELECT``
(also EXAMINE), ``SEARCH``, ``FETCH``; ``UID x`` counts as ``x``; ``nth`` picks its n-th occurrence on a
connection), where the proxy does one of:

``disconnect``    close the connection without a word.
``bye``           ``* BYE`` then close.
``stall``         swallow the command and never answer (the client must time out).
``garbage``       swallow the command and answer with malformed untagged data and a tagged OK.
``huge_literal``  answer with a FETCH announcing a 1 GiB literal, send a few bytes of it, then stall.
``unsolicited``   forward the command, but first push ``* n EXPUNGE`` / ``* n EXISTS`` / ``* n FETCH`` lines
                  the client did not ask for (a mailbox changing mid-fetch).

``times`` limits the fault to the first ``times`` connections (None: every connection), so a test can check
both "fails every time, reported cleanly" and "fails once, recovered by a retry". Threads only; ``close()``
closes every socket and joins every thread.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from tests.servers._util import LOOPBACK

Action = Literal["disconnect", "bye", "stall", "garbage", "huge_literal", "unsolicited"]
COMMANDS = ("GREETING", "CAPABILITY", "LOGIN", "LIST", "STATUS", "SELECT", "SEARCH", "FETCH")
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n$")
GARBAGE = (
    b"* 1 FETCH (UID \xff\x00 BODY[HEADER.FIELDS (FROM)] {3}\r\nab)\r\n"
    b"* SEARCH 1 two )( 3\r\n"
    b'* STATUS "INBOX" (UIDNEXT x UIDVALIDITY)\r\n'
    b"* LIST (\\Sent) NIL\r\n"
    b"* ))))((((\r\n"
)


@dataclass(frozen=True)
class Fault:
    command: str
    action: Action
    nth: int = 1
    times: int | None = None


class HostileImap:
    """``HostileImap(upstream_port, fault)``; ``port`` is where clients connect."""

    def __init__(self, upstream_port: int, fault: Fault | None = None) -> None:
        self._upstream = upstream_port
        self.fault = fault
        self._lock = threading.Lock()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.faults_injected = 0
        self.commands: list[str] = []
        self._accepter = threading.Thread(target=self._accept, name="hostile-imap", daemon=True)
        self._accepter.start()

    # --------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        _close(self._listener)  # shutdown() is what wakes a thread blocked in accept() on Linux
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._accepter.join(5)
        for thread in list(self._threads):
            thread.join(5)

    # ------------------------------------------------------------------------------------------ proxy

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                times = None if self.fault is None else self.fault.times
                faulty = self.fault is not None and (times is None or self.connections <= times)
                self._sockets.append(client)
            thread = threading.Thread(target=self._serve, args=(client, faulty), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _serve(self, client: socket.socket, faulty: bool) -> None:
        fault = self.fault if faulty else None
        try:
            upstream = socket.create_connection((LOOPBACK, self._upstream), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        pump = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        if fault is not None and fault.command == "GREETING":
            if self._inject(client, upstream, fault, b"*") == "close":
                return
            fault = None
        pump.start()
        self._threads.append(pump)
        reader = client.makefile("rb")
        try:
            self._relay(reader, client, upstream, fault)
        except OSError:
            pass
        finally:
            reader.close()
            _close(client)
            _close(upstream)

    def _relay(
        self, reader: Any, client: socket.socket, upstream: socket.socket, fault: Fault | None
    ) -> None:
        seen: dict[str, int] = {}
        while not self._closing.is_set():
            line = reader.readline(1 << 20)
            if not line:
                return
            name = _command_name(line)
            seen[name] = seen.get(name, 0) + 1
            with self._lock:
                self.commands.append(name)
            if fault is not None and fault.command == name and fault.nth == seen[name]:
                outcome = self._inject(client, upstream, fault, line.split(b" ", 1)[0])
                if outcome == "close":
                    return
                if outcome == "swallow":
                    continue
            upstream.sendall(line)
            literal = _LITERAL.search(line)
            if literal:
                upstream.sendall(reader.read(int(literal.group(1))))

    def _inject(
        self, client: socket.socket, upstream: socket.socket, fault: Fault, tag: bytes
    ) -> Literal["forward", "swallow", "close"]:
        """Act out ``fault``; say what becomes of the command (and the connection)."""
        with self._lock:
            self.faults_injected += 1
        action = fault.action
        if action == "unsolicited":
            client.sendall(b"* 1 EXPUNGE\r\n* 9999 EXISTS\r\n* 2 FETCH (FLAGS (\\Seen))\r\n* 0 RECENT\r\n")
            return "forward"
        if action == "bye":
            client.sendall(b"* BYE hostile server going away\r\n")
        elif action == "garbage":
            # The real server never sees the command: the client gets malformed data and an OK for it.
            client.sendall(GARBAGE + (b"" if tag == b"*" else tag + b" OK \xff\xfe done\r\n"))
            return "swallow"
        elif action == "huge_literal":
            client.sendall(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (FROM)] {1073741824}\r\nFrom: a")
            self._closing.wait()
        elif action == "stall":
            self._closing.wait()
        _close(client)
        _close(upstream)
        return "close"

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(sink)


def _command_name(line: bytes) -> str:
    words = line.split(None, 3)
    if len(words) < 2:
        return ""
    name = words[1].upper().decode("ascii", "replace")
    if name == "UID" and len(words) > 2:
        name = words[2].upper().decode("ascii", "replace")
    return "SELECT" if name == "EXAMINE" else name


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()

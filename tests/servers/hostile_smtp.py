"""A scripted, hostile SMTP server on 127.0.0.1 (threads, one per connection).

It speaks just enough SMTP (220, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and misbehaves at one phase
(``GREETING``, ``EHLO``, ``MAIL``, ``RCPT``, ``DATA`` — the 354 —, ``END`` — the reply to the message
itself):

``disconnect``  close without a word.
``stall``       never answer (the client must time out).
``garbage``     answer with bytes that are no SMTP reply (no code, binary, an unterminated multi-line).
``bogus_code``  answer ``999 what?`` (a well-formed line with a code no RFC defines).

Messages whose data arrived completely are kept in ``received`` (whatever the reply was).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Literal, Self

from tests.servers._util import LOOPBACK

Phase = Literal["GREETING", "EHLO", "MAIL", "RCPT", "DATA", "END"]
Action = Literal["disconnect", "stall", "garbage", "bogus_code"]
PHASES: tuple[Phase, ...] = ("GREETING", "EHLO", "MAIL", "RCPT", "DATA", "END")
GARBAGE = b"\xff\xfe\x00garbage without a code\r\n250-unterminated multi-line\r\n"


class HostileSmtp:
    def __init__(self, phase: Phase, action: Action) -> None:
        self.phase, self.action = phase, action
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.received: list[bytes] = []
        self.faults_injected = 0
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        _close(self._listener)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _reply(self, conn: socket.socket, phase: Phase, normal: bytes) -> bool:
        """Send ``normal`` or act out the fault at ``phase``; False when the connection is finished."""
        if phase != self.phase:
            conn.sendall(normal)
            return True
        with self._lock:
            self.faults_injected += 1
        if self.action == "garbage":
            conn.sendall(GARBAGE)
            return True
        if self.action == "bogus_code":
            conn.sendall(b"999 what?\r\n")
            return True
        if self.action == "stall":
            self._closing.wait()
        return False

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            if self._reply(conn, "GREETING", b"220 hostile.localhost ESMTP\r\n"):
                self._session(conn, reader)
        except OSError:
            pass
        finally:
            reader.close()
            _close(conn)

    def _session(self, conn: socket.socket, reader: object) -> None:
        readline = reader.readline  # type: ignore[attr-defined]
        while not self._closing.is_set():
            line: bytes = readline(65536)
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                ok = self._reply(conn, "EHLO", b"250-hostile.localhost\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                ok = self._reply(conn, "MAIL", b"250 OK\r\n")
            elif verb == b"RCPT":
                ok = self._reply(conn, "RCPT", b"250 OK\r\n")
            elif verb == b"DATA":
                ok = self._reply(conn, "DATA", b"354 go ahead\r\n") and self._data(conn, readline)
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                ok = True
                conn.sendall(b"250 OK\r\n")
            if not ok:
                return

    def _data(self, conn: socket.socket, readline: object) -> bool:
        lines = []
        while True:
            line: bytes = readline(1 << 20)  # type: ignore[operator]
            if not line:
                return False
            if line == b".\r\n":
                break
            lines.append(line)
        with self._lock:
            self.received.append(b"".join(lines))
        return self._reply(conn, "END", b"250 queued\r\n")


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()

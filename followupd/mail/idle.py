"""IMAP IDLE (RFC 2177) on one folder, with a watchdog for the calls that are known to hang.

imapclient is blocking and its ``idle_check`` can only wait on the IMAP socket. :meth:`Idler.wait` instead
polls the socket *and* a :class:`Waker` pipe, so the daemon can interrupt a wait at once (shutdown, reload)
without a periodic wake-up, and asks ``idle_check(timeout=0)`` to read and parse what arrived.

Known traps handled here:

- ``idle_check`` swallows end-of-file: a server that went away makes it return ``[]`` immediately, forever.
  A ``BYE``, or POLLRDHUP/POLLHUP on the socket with nothing to read, is therefore reported as a lost
  connection (:class:`~followupd.errors.MailError`), so the caller reconnects and catches up.
- ``idle_done()`` (and SELECT/IDLE on a half-dead connection) can block until the socket timeout or longer.
  :func:`guard` runs a timer that shuts the socket down when a call overruns its bound; the call then fails
  with :class:`~followupd.errors.MailTimeoutError`. The timer shuts the *socket* down rather than calling
  ``client.shutdown()``: that first closes imaplib's buffered reader, which blocks on the lock the hung
  reader holds. The owning thread cleans up (``ImapSession.close``) once the call has failed.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from followupd.errors import MailError, MailTimeoutError
from followupd.mail.imap import translate

log = logging.getLogger(__name__)

_RDHUP = getattr(select, "POLLRDHUP", 0)
_CLOSED = select.POLLHUP | select.POLLERR | select.POLLNVAL | _RDHUP
_NEW_MAIL = frozenset({b"EXISTS", b"RECENT"})
_MAX_EMPTY_READS = 20
"""Readable-but-nothing-parsed wake-ups in a row before the connection is declared broken (no busy loop)."""


class IdleEvent(enum.Enum):
    """Why :meth:`Idler.wait` returned."""

    NEW_MAIL = "new mail"
    TIMEOUT = "timeout"
    WOKEN = "woken"


class Waker:
    """A pipe another thread writes to, to end a wait early. Level-triggered: a wake is never lost."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        """End the current (or the next) wait. Safe from any thread, and from a signal handler."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write, b"\0")

    def clear(self) -> None:
        """Forget pending wakes."""
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._read, 512):
                pass

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True (and cleared) when woken."""
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        if poller.poll(max(0.0, timeout) * 1000):
            self.clear()
            return True
        return False

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


def drop_connection(client: Any) -> None:
    """Shut the client's socket down from any thread: a read or write blocked in another thread fails now."""
    try:
        sock = client.socket()
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the base class: no TLS bookkeeping from this thread
    except (OSError, AttributeError, ValueError) as exc:
        log.debug("dropping the IMAP connection: %s", exc)


@contextlib.contextmanager
def guard(client: Any, bound: float, what: str) -> Iterator[None]:
    """Run the body with a watchdog: after ``bound`` seconds the connection is dropped and the body's failure
    (or its late success) becomes MailTimeoutError."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        log.warning("%s: no answer in %.0f s; dropping the connection", what, bound)
        drop_connection(client)

    timer = threading.Timer(bound, fire)
    timer.daemon = True
    timer.name = f"imap-watchdog: {what}"
    timer.start()
    try:
        yield
    except Exception as exc:
        if fired.is_set():
            raise MailTimeoutError(f"{what}: no answer in {bound:.0f} s; connection dropped") from exc
        raise
    finally:
        timer.cancel()
    if fired.is_set():
        raise MailTimeoutError(f"{what}: no answer in {bound:.0f} s; connection dropped")


class Idler:
    """IDLE on one folder of a logged-in imapclient client: ``start``, ``wait``, ``done``, repeat."""

    def __init__(self, client: Any, *, bound: float) -> None:
        self._client = client
        self._bound = bound
        self._idling = False

    @property
    def idling(self) -> bool:
        return self._idling

    def start(self, folder: str = "INBOX") -> int | None:
        """EXAMINE ``folder`` and enter IDLE; returns the folder's UIDNEXT from the SELECT response (if sent),
        so the caller can tell whether mail arrived since its last scan."""
        with guard(self._client, self._bound, f"IMAP SELECT {folder}"), translate(f"IMAP SELECT {folder}"):
            info = self._client.select_folder(folder, readonly=True)
        with guard(self._client, self._bound, "IMAP IDLE"), translate("IMAP IDLE"):
            self._client.idle()
        self._idling = True
        uidnext = info.get(b"UIDNEXT")
        return int(uidnext) if uidnext is not None else None

    def wait(self, timeout: float, waker: Waker) -> IdleEvent:
        """Wait up to ``timeout`` seconds for new mail (EXISTS/RECENT) or a wake; MailError when the server
        says BYE or the connection is gone. Keep-alives, flag changes and expunges are read and ignored."""
        if not self._idling:
            raise MailError("IDLE wait without IDLE")
        sock = self._client.socket()
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI | _RDHUP)
        poller.register(waker.fileno(), select.POLLIN)
        deadline = time.monotonic() + timeout
        empty = 0
        while (remaining := deadline - time.monotonic()) > 0:
            events = dict(poller.poll(remaining * 1000))
            if not events:
                break
            if waker.fileno() in events:
                waker.clear()
                return IdleEvent.WOKEN
            with translate("IMAP IDLE"):
                responses = self._client.idle_check(timeout=0)
            if any(_is_bye(r) for r in responses):
                raise MailError(f"IMAP server ended the IDLE connection: {_describe(responses)}")
            if any(len(r) > 1 and r[1] in _NEW_MAIL for r in responses):
                return IdleEvent.NEW_MAIL
            if responses:
                empty = 0
                continue
            empty += 1
            if events.get(sock.fileno(), 0) & _CLOSED or empty >= _MAX_EMPTY_READS:
                raise MailError("IMAP server closed the IDLE connection")
        return IdleEvent.TIMEOUT

    def done(self) -> list[Any]:
        """Leave IDLE (DONE) under the watchdog; returns the responses that came with the end of IDLE."""
        if not self._idling:
            return []
        self._idling = False
        with guard(self._client, self._bound, "IMAP IDLE DONE"), translate("IMAP IDLE DONE"):
            _text, responses = self._client.idle_done()
        return list(responses)


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"


def _describe(responses: list[Any]) -> str:
    for response in responses:
        if _is_bye(response):
            return " ".join(
                p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in response
            )
    return "BYE"

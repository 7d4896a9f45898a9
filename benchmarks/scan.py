"""Benchmark of a whole IMAP scan against a real, throw-away Dovecot on 127.0.0.1.

Usage: python benchmarks/scan.py [--messages 50000] [--batch-size 2000] [--profile] [--keep]
                                 [--mail-cache DIR] [--dovecot-config LINE]...
                                 [--database sqlite|postgresql] [--database-url URL] [--statements]

It builds a realistic mailbox of N messages (about 600 people, some with RFC 2047 names; 70 % INBOX,
30 % Sent; threads with In-Reply-To/References; a quarter newsletters and notifications with List-Unsubscribe,
List-Id and noreply senders; mailing-list posts; several To/Cc recipients; a few messages without Message-ID
and a few copies of the user's own mail in INBOX), seeded deterministically and written straight into Maildir
files, lets Dovecot index it (warm-up login, STATUS and one header fetch per folder, not timed), then measures
in one run:

(a) the server's own limit: the scanner's ``UID FETCH 1:* (UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (...)])``
    read straight off a socket without any parsing (best of two; also in UID batches like the scanner's);
(b) followupd's first full scan, end to end: ``scan_once`` with login, LIST, STATUS, SELECT, SEARCH, fetch,
    parse, classify, store (SQLite file, WAL), in a subprocess; ``[scan] meetings = false`` unless
    ``--meetings`` is given (the meetings pass fetches BODYSTRUCTUREs and some parts: a separate cost);
(c) an incremental scan with no new mail: ``scan_once`` again in that process, database and config open
    (a fresh IMAP login is part of it; the login alone, the server's own share (raw login, STATUS INBOX,
    LIST, STATUS Sent, logout; and in the order before issue 3, LIST and STATUS Sent before STATUS INBOX),
    and each step of 9 more such scans timed apart are reported too);
(d) the scanner's peak RSS (VmHWM of that subprocess; nothing else runs in it).

Targets: (b) >= 10,000 messages/s on 2 cores; (c) <= 20 ms per account; (d) <= 150 MB and flat in N (run with
``--messages 200000`` to compare). ``--profile`` runs the first scan under cProfile and prints the top entries
by cumulative and by own time. ``--mail-cache DIR`` keeps the seeded Maildir (with Dovecot's index) under DIR
and reuses it next time, so repeated runs skip seeding. ``--keep`` leaves the temporary directory in place.
``--dovecot-config`` appends a line to dovecot.conf (e.g. ``"mailbox_list_index = no"``).

``--database postgresql`` stores into PostgreSQL instead of a SQLite file: a throw-away cluster on 127.0.0.1
(``tests.servers.postgres.Postgres``: fsync off) with a fresh database, or the empty database given by
``--database-url``. ``--statements`` counts the statements the first scan sends (round trips and rows).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
USER = "me@example.org"
USER_NAME = "Sam Taylor"
PASSWORD = "bench-secret"
SEED = 20250601
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GENERATOR_VERSION = 2  # bump when the generator changes, so --mail-cache does not reuse an old mailbox

FIRST = [
    "Alice", "Bob", "Chen", "Dmitri", "Élodie", "Fatima", "Günther", "Hiroshi", "Inès", "José", "Kwame",
    "Lena",
    "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Søren", "Tomás", "Uma", "Viktor", "Wen", "Yusuf",
    "Zoë", "Ana", "Björn", "Chloé", "David", "Eva", "Farid", "Grace", "Hannah", "Igor", "Julia", "Karim",
]  # fmt: skip
LAST = [
    "Smith", "Okafor", "Müller", "García", "Nakamura", "O'Brien", "Larsen", "Ivanova", "Singh", "Dubois",
    "Rossi", "Nguyen", "Kowalski", "Haddad", "Svensson", "Costa", "Yılmaz", "Fischer", "Moreau", "Tanaka",
]  # fmt: skip
DOMAINS = [
    "gmail.com", "example.com", "corp.example.com", "uni.example.edu", "outlook.com", "startup.io",
    "fastmail.example.net", "agency.example.co.uk", "lab.example.de", "studio.example.fr",
]  # fmt: skip
WORDS = [
    "project", "coffee", "quarterly", "review", "draft", "meeting", "invoice", "lunch", "paper", "plan",
    "intro", "budget", "launch", "hiring", "roadmap", "workshop", "feedback", "contract", "slides", "trip",
]  # fmt: skip
UNICODE_SUBJECTS = ["Café demain ?", "Grüße aus München", "Propuesta de colaboración", "会議の件", "Привет!"]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
ZONES = ["+0000", "-0500", "+0100", "+0200", "+0530", "-0800", "+0900", "-0300"]
NEWSLETTERS = [
    ("Acme Weekly", "news@acme-weekly.example.com"),
    ("The Daily Byte", "hello@dailybyte.example.net"),
    ("Gadget Deals", "deals@gadgets.example.com"),
    ("Founders Digest", "digest@founders.example.org"),
    ("Conference Team", "team@events.example.io"),
    ("Travel Offers", "offers@travel.example.com"),
]
NOTIFIERS = [
    ("GitHub", "notifications@github.com"),
    ("Jira", "jira@acme.atlassian.example.net"),
    ("Google Calendar", "calendar-notification@google.com"),
    ("Bank Alerts", "no-reply@alerts.bank.example.com"),
    ("Shop", "noreply@shop.example.com"),
    ("LinkedIn", "messages-noreply@linkedin.example.com"),
    ("Slack", "feedback@slack.example.com"),
]
LISTS = [
    ("Developers", "dev@lists.example.org"),
    ("Python Users", "users@python.example.org"),
    ("Local Meetup", "meetup@groups.example.com"),
    ("Research Group", "research@lists.uni.example.edu"),
    ("Open Source Project", "discuss@project.example.org"),
]


# ---------------------------------------------------------------------------------------------- generator


@dataclass
class Thread:
    subject: str
    ids: list[str]
    people: list[int]
    list_index: int | None = None


@dataclass
class Generator:
    """Deterministic mailbox generator: yields (folder, raw message, unix time) in time order."""

    count: int
    seed: int = SEED
    rng: random.Random = field(init=False)
    people: list[tuple[str, str]] = field(init=False)
    threads: list[Thread] = field(init=False, default_factory=list)
    list_threads: list[Thread] = field(init=False, default_factory=list)
    serial: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        seen: set[str] = set()
        self.people = []
        while len(self.people) < 600:
            first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
            local = f"{first}.{last}".lower().replace("'", "")
            local = local.encode("ascii", "ignore").decode() + str(self.rng.randint(1, 99))
            email = f"{local}@{self.rng.choice(DOMAINS)}"
            if email not in seen:
                seen.add(email)
                self.people.append((f"{first} {last}", email))

    # --- pieces

    def name_addr(self, name: str, email: str) -> str:
        if not name:
            return email
        if name.isascii():
            return f'"{name}" <{email}>' if "'" in name else f"{name} <{email}>"
        if self.rng.random() < 0.5:
            return f"=?UTF-8?B?{base64.b64encode(name.encode()).decode()}?= <{email}>"
        quoted = "".join(
            c if c.isascii() and c.isalnum() else "".join(f"={b:02X}" for b in c.encode()) for c in name
        )
        return f"=?utf-8?q?{quoted.replace('=20', '_')}?= <{email}>"

    def person(self, index: int) -> str:
        name, email = self.people[index]
        return self.name_addr(name, email)

    def some_people(self, low: int, high: int, exclude: int | None = None) -> list[int]:
        # A few close contacts get most of the mail: pick with a skewed distribution.
        chosen: list[int] = []
        for _ in range(self.rng.randint(low, high)):
            index = min(int(self.rng.paretovariate(1.2) * 20) - 20, 599)
            index = (index * 7919) % 600
            if index != exclude and index not in chosen:
                chosen.append(index)
        return chosen

    def msgid(self, domain: str) -> str:
        self.serial += 1
        return f"<{self.rng.getrandbits(64):016x}.{self.serial}@{domain}>"

    def subject(self) -> str:
        if self.rng.random() < 0.05:
            text = self.rng.choice(UNICODE_SUBJECTS)
            return f"=?UTF-8?B?{base64.b64encode(text.encode()).decode()}?="
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(2, 6))).capitalize()

    @staticmethod
    def date(at: float, zone: str) -> str:
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        local = datetime.fromtimestamp(at, UTC) + timedelta(seconds=offset)
        return (
            f"{WEEKDAYS[local.weekday()]}, {local.day} {MONTHS[local.month - 1]} {local.year} "
            f"{local.hour:02d}:{local.minute:02d}:{local.second:02d} {zone}"
        )

    def received(self, at: float, sender_domain: str) -> list[str]:
        hop = self.rng.getrandbits(32)
        stamp = self.date(at, "+0000")
        return [
            f"Received: from mail-{hop % 97}.{sender_domain} (mail-{hop % 97}.{sender_domain} "
            f"[198.51.100.{hop % 250}])\r\n\tby mx1.example.org (Postfix) with ESMTPS id {hop:08X}\r\n"
            f"\tfor <{USER}>; {stamp} (UTC)",
            f"Received: by mail-{hop % 97}.{sender_domain} with SMTP id {self.rng.getrandbits(48):x};\r\n"
            f"\t{stamp}",
        ]

    def dkim(self, domain: str) -> str:
        sig = base64.b64encode(self.rng.randbytes(192)).decode()
        folded = "\r\n\t ".join(sig[i : i + 72] for i in range(0, len(sig), 72))
        return (
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s1;\r\n"
            "\th=from:to:subject:date:message-id:mime-version;"
            f" bh={base64.b64encode(self.rng.randbytes(32)).decode()};"
            f"\r\n\tb={folded}"
        )

    def body(self, lines: int) -> str:
        return "\r\n".join(
            " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(6, 14))) for _ in range(lines)
        )

    # --- messages

    def reply_to_thread(self, pool: list[Thread]) -> Thread | None:
        if not pool or self.rng.random() < 0.4:
            return None
        return pool[-1 - min(int(self.rng.expovariate(1 / 25)), len(pool) - 1)]

    def thread_headers(self, thread: Thread | None, domain: str) -> tuple[str, list[str]]:
        mid = self.msgid(domain)
        if thread is None:
            return mid, []
        refs = thread.ids[:1] + thread.ids[-9:] if len(thread.ids) > 10 else list(thread.ids)
        thread.ids.append(mid)
        return mid, [f"In-Reply-To: {refs[-1]}", "References: " + "\r\n ".join(refs)]

    def person_mail(self, at: float) -> tuple[str, bytes]:
        thread = self.reply_to_thread(self.threads)
        if thread is not None:
            sender = self.rng.choice(thread.people)
            others = [p for p in thread.people if p != sender][:3]
            subject = "Re: " + thread.subject
        else:
            sender = self.some_people(1, 1)[0] if self.rng.random() < 0.8 else self.rng.randrange(600)
            others = self.some_people(0, 3, exclude=sender) if self.rng.random() < 0.3 else []
            subject = self.subject()
        domain = self.people[sender][1].partition("@")[2]
        mid, threading = self.thread_headers(thread, domain)
        if thread is None:
            self.threads.append(Thread(subject, [mid], [sender, *others]))
            if len(self.threads) > 3000:
                del self.threads[:1000]
        to = [USER] if not others or self.rng.random() < 0.7 else [self.person(others[0]), USER]
        cc = [self.person(p) for p in others[1:] if self.rng.random() < 0.8]
        lines = [
            f"Return-Path: <{self.people[sender][1]}>",
            f"Delivered-To: {USER}",
            *self.received(at, domain),
            self.dkim(domain),
            f"From: {self.person(sender)}",
            "To: " + ",\r\n ".join(to),
            *(["Cc: " + ",\r\n ".join(cc)] if cc else []),
            f"Subject: {subject}",
            f"Date: {self.date(at, self.rng.choice(ZONES))}",
            *([f"Message-ID: {mid}"] if self.rng.random() > 0.003 else []),
            *threading,
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="UTF-8"',
            "Content-Transfer-Encoding: 8bit",
            *(["X-Auto-Response-Suppress: All"] if self.rng.random() < 0.1 else []),
            *(["X-Mailer: Apple Mail (2.3774)"] if self.rng.random() < 0.2 else []),
        ]
        return "INBOX", _message(lines, self.body(self.rng.randint(2, 12)))

    def sent_mail(self, at: float) -> tuple[str, bytes]:
        thread = self.reply_to_thread(self.threads) if self.rng.random() < 0.85 else None
        list_reply = thread is None and self.list_threads and self.rng.random() < 0.1
        if list_reply:
            thread = self.list_threads[-1 - self.rng.randrange(min(50, len(self.list_threads)))]
        if thread is not None:
            subject = "Re: " + thread.subject
            people = thread.people[:3]
        else:
            people = self.some_people(1, 3)
            subject = self.subject()
        mid, threading = self.thread_headers(thread, "example.org")
        if thread is None:
            self.threads.append(Thread(subject, [mid], people))
        if thread is not None and thread.list_index is not None:
            to = [LISTS[thread.list_index][1]]
            cc = [self.person(people[0])]
        else:
            to = [self.person(p) for p in people[:2]]
            cc = [self.person(p) for p in people[2:]]
            if self.rng.random() < 0.15:
                cc.append(self.person(self.rng.randrange(600)))
        lines = [
            f"From: {USER_NAME} <{USER}>",
            "To: " + ",\r\n ".join(to),
            *(["Cc: " + ",\r\n ".join(cc)] if cc else []),
            f"Subject: {subject}",
            f"Date: {self.date(at, '+0200')}",
            f"Message-ID: {mid}",
            *threading,
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="UTF-8"',
            "User-Agent: Mozilla Thunderbird",
        ]
        return "Sent", _message(lines, self.body(self.rng.randint(2, 10)))

    def newsletter(self, at: float) -> tuple[str, bytes]:
        if self.rng.random() < 0.45:
            name, email = self.rng.choice(NEWSLETTERS)
            extra = [
                "List-Unsubscribe: <https://list-manage.example.com/unsubscribe?u=a1b2c3&id="
                f"{self.rng.getrandbits(40):x}>,\r\n"
                f" <mailto:unsubscribe-{self.rng.getrandbits(32):x}@mc.example.net>",
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                f"Feedback-ID: {self.rng.getrandbits(20)}:{self.rng.getrandbits(20)}:campaign:mc",
                "Content-Type: multipart/alternative;"
                f' boundary="_----------=_MCPart_{self.rng.getrandbits(32)}"',
            ]
            if self.rng.random() < 0.5:  # the rest are bulk by List-Unsubscribe alone
                extra += [
                    f"List-Id: {name} <{self.rng.getrandbits(24):x}.list-id.mc.example.net>",
                    "Precedence: bulk",
                ]
            subject = f"Your {self.rng.choice(WORDS)} digest: {self.subject()}"
        else:
            name, email = self.rng.choice(NOTIFIERS)
            if email == "notifications@github.com":
                name = self.people[self.rng.randrange(600)][0]
            extra = [
                'Content-Type: multipart/alternative; boundary="--==_mimepart_5f1"',
                "X-Auto-Response-Suppress: All",
            ]
            if email.startswith(("notifications@", "jira@")):
                extra += [
                    "Precedence: list",
                    f"List-Id: acme/widget <widget.acme.{email.partition('@')[2]}>",
                    f"List-Unsubscribe: <mailto:unsub+{self.rng.getrandbits(40):x}"
                    f"@{email.partition('@')[2]}>",
                ]
            elif self.rng.random() < 0.5:  # the others: a noreply/role sender, sometimes Auto-Submitted too
                extra.append("Auto-Submitted: auto-generated")
            subject = f"[acme/widget] {self.subject()} (#{self.rng.randint(1, 4000)})"
        domain = email.partition("@")[2]
        lines = [
            f"Return-Path: <bounce-{self.rng.getrandbits(32):x}@{domain}>",
            f"Delivered-To: {USER}",
            *self.received(at, domain),
            self.dkim(domain),
            f"From: {self.name_addr(name, email)}",
            f"To: {USER}",
            f"Subject: {subject}",
            f"Date: {self.date(at, '+0000')}",
            f"Message-ID: {self.msgid(domain)}",
            "MIME-Version: 1.0",
            *extra,
        ]
        return "INBOX", _message(lines, self.body(self.rng.randint(10, 30)))

    def list_post(self, at: float) -> tuple[str, bytes]:
        thread = self.reply_to_thread(self.list_threads)
        list_index = thread.list_index if thread is not None else self.rng.randrange(len(LISTS))
        assert list_index is not None
        list_name, list_addr = LISTS[list_index]
        sender = self.rng.randrange(600)
        subject = (
            "Re: " + thread.subject
            if thread is not None
            else f"[{list_name.split()[0].lower()}] {self.subject()}"
        )
        domain = list_addr.partition("@")[2]
        mid, threading = self.thread_headers(thread, self.people[sender][1].partition("@")[2])
        if thread is None:
            self.list_threads.append(Thread(subject, [mid], [sender], list_index))
            if len(self.list_threads) > 2000:
                del self.list_threads[:500]
        elif sender not in thread.people:
            thread.people.append(sender)
        lines = [
            f"Return-Path: <{list_addr.replace('@', '-bounces@')}>",
            f"Delivered-To: {USER}",
            *self.received(at, domain),
            f"From: {self.person(sender)}",
            f"To: {list_name} <{list_addr}>",
            f"Subject: {subject}",
            f"Date: {self.date(at, self.rng.choice(ZONES))}",
            f"Message-ID: {mid}",
            *threading,
            f"List-Id: {list_name} <{list_addr.replace('@', '.')}>",
            f"List-Post: <mailto:{list_addr}>",
            f"List-Unsubscribe: <https://{domain}/mailman/options>,\r\n"
            f" <mailto:{list_addr.replace('@', '-request@')}>",
            "Precedence: list",
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="utf-8"',
        ]
        return "INBOX", _message(lines, self.body(self.rng.randint(3, 15)))

    def messages(self) -> Iterator[tuple[str, bytes, float]]:
        """(folder, raw, time): 30 % Sent; INBOX 25 % of all bulk, 8 % list posts, the rest people."""
        end = NOW.timestamp() - 3600
        start = end - 3 * 365 * 86400
        step = (end - start) / max(self.count, 1)
        for index in range(self.count):
            at = start + index * step + self.rng.random() * step
            roll = self.rng.random()
            if roll < 0.30:
                folder, raw = self.sent_mail(at)
                if self.rng.random() < 0.01:  # the user Cc'd themself: the same Message-ID in INBOX too
                    yield folder, raw, at
                    folder = "INBOX"
            elif roll < 0.55:
                folder, raw = self.newsletter(at)
            elif roll < 0.63:
                folder, raw = self.list_post(at)
            else:
                folder, raw = self.person_mail(at)
            yield folder, raw, at


def _message(lines: list[str], body: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


# ---------------------------------------------------------------------------------------------- mailbox


def seed_mailbox(dovecot: Any, count: int) -> dict[str, int]:
    """Write the generated messages as Maildir files (owned by the mail user); returns counts per folder."""
    for folder in ("INBOX", "Sent"):
        dovecot.write_maildir(USER, folder, [])  # creates the directories with the right owner
    cur = {f: str(dovecot.maildir(USER, f) / "cur") for f in ("INBOX", "Sent")}
    st = os.stat(cur["INBOX"])
    chown = os.geteuid() == 0
    counts = {"INBOX": 0, "Sent": 0}
    for n, (folder, raw, at) in enumerate(Generator(count).messages()):
        path = f"{cur[folder]}/{int(at)}.M{n}P1.bench:2,S"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, raw)
        os.close(fd)
        os.utime(path, (at, at))
        if chown:
            os.chown(path, st.st_uid, st.st_gid)
        counts[folder] += 1
    return counts


TAIL = 4096  # longer than any tagged response line (LOGIN's carries the whole CAPABILITY list)


class RawImap:
    """The least a client can do: send a command, read the response as bytes, no parsing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = bytearray(1 << 20)
        self.serial = 0
        self._until(tagged=None)

    def command(self, text: str) -> int:
        """Send ``text``; return how many bytes came back once the tagged answer arrived."""
        self.serial += 1
        tag = f"RAW{self.serial}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        return self._until(tagged=tag)

    def _until(self, *, tagged: bytes | None) -> int:
        view = memoryview(self.buf)
        total = 0
        tail = b""
        while True:
            n = self.sock.recv_into(view)
            if n == 0:
                raise ConnectionError("server closed the connection")
            total += n
            tail = (tail + bytes(view[:n]))[-TAIL:] if n < TAIL else bytes(view[n - TAIL : n])
            if not tail.endswith(b"\r\n"):
                continue
            if tagged is None:
                return total
            start = tail.rfind(b"\r\n", 0, len(tail) - 2)
            last = tail if start < 0 else tail[start + 2 :]
            if last.startswith(tagged + b" "):
                if not last.startswith(tagged + b" OK"):
                    raise RuntimeError(f"IMAP said {last!r}")
                return total

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.command("LOGOUT")
        self.sock.close()


def raw_fetch(port: int, folders: dict[str, int], batch: int | None = None) -> tuple[float, int]:
    """(a): the scanner's header FETCH of every folder read off the socket, no parsing: (seconds, bytes).

    One ``UID FETCH 1:*`` per folder, or with ``batch`` one ``UID FETCH a:b`` per ``batch`` UIDs (the
    mailbox's UIDs are 1..n, as Dovecot numbers freshly indexed Maildir files).
    """
    from followupd.mail.imap import HEADER_FIELDS

    items = f"(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])"
    client = RawImap(port)
    client.command(f"LOGIN {USER} {PASSWORD}")
    elapsed = 0.0
    received = 0
    for folder, count in folders.items():
        client.command(f"EXAMINE {folder}")
        ranges = (
            ["1:*"]
            if batch is None
            else [f"{a}:{min(a + batch - 1, count)}" for a in range(1, count + 1, batch)]
        )
        started = time.perf_counter()
        for uids in ranges:
            received += client.command(f"UID FETCH {uids} {items}")
        elapsed += time.perf_counter() - started
    client.close()
    return elapsed, received


SCANNER_ORDER = ("STATUS INBOX", "LIST", "STATUS Sent")  # what an unchanged account costs, in this order
SENT_FIRST = ("LIST", "STATUS Sent", "STATUS INBOX")  # the order before issue 3, for comparison


def raw_incremental_ms(port: int, commands: tuple[str, ...]) -> float:
    """The server's share of (c): connect, LOGIN, ``commands`` in this order, LOGOUT (median ms)."""
    times = []
    for _ in range(7):
        started = time.perf_counter()
        client = RawImap(port)
        client.command(f"LOGIN {USER} {PASSWORD}")
        for command in commands:
            if command == "LIST":
                client.command('LIST "" "*"')
            else:
                client.command(f"{command} (UIDNEXT UIDVALIDITY MESSAGES HIGHESTMODSEQ)")
        client.close()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def warm_up(port: int, folders: dict[str, int]) -> float:
    """First login (Dovecot indexes the Maildir), STATUS, and one header fetch per folder. Returns seconds."""
    started = time.perf_counter()
    client = RawImap(port)
    client.command(f"LOGIN {USER} {PASSWORD}")
    for folder in folders:
        client.command(f"STATUS {folder} (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
    client.close()
    raw_fetch(port, folders)
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------ scanner (child)


def _vm(field_name: str) -> int:
    """A VmXXX value of this process, in kB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _incremental(db: Any, config: Any, session_class: Any, scan_once: Any) -> tuple[list[float], list[float]]:
    """(c): scan_once again (nothing new) and, apart, a bare connect + LOGIN + LOGOUT; seconds, 9 of each."""
    incremental = []
    for _ in range(9):
        started = time.perf_counter()
        again = scan_once(db, config, now=NOW)
        incremental.append(time.perf_counter() - started)
        if again.messages_new or again.errors:
            raise SystemExit(f"the incremental scan found something: {again}")
    imap_cfg = config.accounts[0].imap
    if imap_cfg is None:
        raise SystemExit("no IMAP config")
    logins = []
    for _ in range(9):
        started = time.perf_counter()
        with session_class(imap_cfg, PASSWORD):
            pass
        logins.append(time.perf_counter() - started)

    return incremental, logins


def _steps(db: Any, config: Any, scan_once: Any) -> dict[str, float]:
    """(c) step by step: 9 more scans with each IMAP call and database step timed (median ms per scan)."""
    from followupd.engine import scan as scan_mod
    from followupd.engine import scan_imap
    from followupd.mail.imap import ImapSession

    spent: dict[str, list[float]] = {}
    patched: list[tuple[Any, str, Any]] = []

    def timed(owner: Any, name: str, label: str, by_folder: bool = False) -> None:
        original = getattr(owner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = f"{label} {args[1]}" if by_folder else label
                spent.setdefault(key, []).append(time.perf_counter() - started)

        patched.append((owner, name, original))
        setattr(owner, name, call)

    timed(scan_mod, "start_account", "start_account")
    timed(ImapSession, "connect", "connect+LOGIN")
    timed(ImapSession, "status", "STATUS", by_folder=True)
    timed(ImapSession, "folders", "LIST")
    timed(scan_imap, "read_cursors", "cursors")
    timed(ImapSession, "close", "LOGOUT")
    timed(scan_mod, "_record", "record")
    try:
        for _ in range(9):
            scan_once(db, config, now=NOW)
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    # A step taken once a scan: its median; more often (none here, but a folder list may grow): mean per scan.
    return {
        key: statistics.median(values) * 1000 if len(values) == 9 else sum(values) / 9 * 1000
        for key, values in spent.items()
    }


class _StatementCounter:
    """Counts the statements sent through an engine (executions, parameter sets, time), by SQL text."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.stats: dict[str, list[float]] = {}
        self._started: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:  # noqa: PLR0917
        self._started.append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:  # noqa: PLR0917
        took = time.perf_counter() - self._started.pop()
        entry = self.stats.setdefault(" ".join(statement.split())[:110], [0, 0, 0.0])
        entry[0] += 1
        entry[1] += len(params) if many and isinstance(params, list | tuple) else 1
        entry[2] += took

    def print_top(self) -> None:
        total = sum(e[0] for e in self.stats.values())
        print(f"--- statements of the first scan: {total} executions ({len(self.stats)} distinct SQL) ---")
        for sql, (calls, rows, took) in sorted(self.stats.items(), key=lambda i: -i[1][2])[:15]:
            print(f"{took:7.2f} s {int(calls):6d} calls {int(rows):8d} param sets  {sql}")

    def close(self) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def child(spec: dict[str, Any]) -> None:
    """Run (b) and (c) in this fresh process and print one JSON line of figures (and the profile)."""
    import cProfile
    import pstats

    from sqlalchemy import func, select

    from followupd import config as config_mod
    from followupd.engine.scan import scan_once
    from followupd.mail.imap import ImapSession
    from followupd.store.db import Database
    from followupd.store.models import AddressRow, Contact, Message, Thread

    rss_start = _vm("VmRSS")
    text = (
        f"[scan]\nmeetings = {'true' if spec['meetings'] else 'false'}\n"
        f'[[accounts]]\nname = "bench"\nemail = "{USER}"\n'
        f'[accounts.imap]\nhost = "127.0.0.1"\nport = {spec["port"]}\nsecurity = "none"\n'
        f'username = "{USER}"\npassword_env = "PW"\nbatch_size = {spec["batch_size"]}\n'
    )
    config = config_mod.parse(text, env={"PW": PASSWORD})
    os.environ["PW"] = PASSWORD
    db = Database(spec["url"])
    db.upgrade()
    counter = _StatementCounter(db.engine) if spec.get("statements") else None
    rss_before = _vm("VmRSS")

    profiler = cProfile.Profile() if spec["profile"] else None
    cpu_started = time.process_time()
    started = time.perf_counter()
    if profiler is not None:
        report = profiler.runcall(scan_once, db, config, now=NOW)
    else:
        report = scan_once(db, config, now=NOW)
    first = time.perf_counter() - started
    first_cpu = time.process_time() - cpu_started
    if report.errors:
        raise SystemExit(f"scan failed: {report.errors}")
    hwm_first = _vm("VmHWM")
    if counter is not None:
        counter.print_top()
        counter.close()

    incremental, logins = _incremental(db, config, ImapSession, scan_once)
    steps = _steps(db, config, scan_once)

    with db.read() as session:
        rows = {
            name: session.scalar(select(func.count()).select_from(model))
            for name, model in (("messages", Message), ("addresses", AddressRow), ("contacts", Contact))
        }
        rows["threads"] = session.scalar(select(func.count()).select_from(Thread))
    if profiler is not None:
        for order in ("cumulative", "tottime"):
            print(f"--- first scan, top 25 by {order} (under cProfile, so slower than the figures) ---")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats(order).print_stats(25)
    stats = report.accounts[0]
    figures = {
        "first_s": first,
        "first_cpu_s": first_cpu,
        "seen": stats.messages_seen,
        "new": stats.messages_new,
        "contacts_new": stats.contacts_new,
        "incremental_s": incremental,
        "login_s": logins,
        "steps_ms": steps,
        "rss_start_kb": rss_start,
        "rss_before_kb": rss_before,
        "hwm_first_kb": hwm_first,
        "hwm_kb": _vm("VmHWM"),
        "rows": rows,
    }
    print("RESULT " + json.dumps(figures), flush=True)


# ---------------------------------------------------------------------------------------------- driver


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.servers.dovecot import Dovecot

    work = Path(tempfile.mkdtemp(prefix="followupd-scanbench-"))
    work.chmod(0o755)
    cluster: Any = None
    dovecot = Dovecot(directory=work, extra_config="\n".join(args.dovecot_config))
    dovecot.add_user(USER, PASSWORD)
    home = dovecot.home(USER)
    cached = Path(args.mail_cache) / f"v{GENERATOR_VERSION}-{args.messages}" if args.mail_cache else None
    try:
        counts = _mailbox(dovecot, home, cached, args.messages)
        dovecot.start()
        took = warm_up(dovecot.port, counts)
        print(
            f"Dovecot on 127.0.0.1:{dovecot.port}; index warm: first login, STATUS and one header fetch per "
            f"folder done before timing ({took:.1f} s)"
            + (f"; extra config: {'; '.join(args.dovecot_config)}" if args.dovecot_config else "")
        )
        raw_s, raw_bytes = min(raw_fetch(dovecot.port, counts) for _ in range(2))
        raw_batched_s, _bytes = min(raw_fetch(dovecot.port, counts, args.batch_size) for _ in range(2))
        floor_ms = raw_incremental_ms(dovecot.port, SCANNER_ORDER)
        sent_first_ms = raw_incremental_ms(dovecot.port, SENT_FIRST)
        url, cluster = _database(args, work)
        print(f"database: {url.split('@')[-1] if '@' in url else url}")
        spec = {
            "port": dovecot.port,
            "url": url,
            "statements": args.statements,
            "batch_size": args.batch_size,
            "profile": args.profile,
            "meetings": args.meetings,
        }
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the scanner process failed:\n{done.stdout[-3000:]}{done.stderr[-5000:]}")
        children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result: dict[str, Any] = {}
        for line in done.stdout.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
            else:
                print(line)
        if done.stderr.strip():
            print(done.stderr.strip()[-3000:], file=sys.stderr)
        server = Server(sum(counts.values()), raw_s, raw_bytes, raw_batched_s, floor_ms, sent_first_ms)
        report(args, server, result, children_kb)
    finally:
        dovecot.stop()
        if cluster is not None:
            cluster.close()
        if cached is not None and (home / "bench-counts.json").exists() and not cached.exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            home.rename(cached)
        if args.keep:
            print(f"kept {work} (database: {work / 'followupd.db'})")
        else:
            dovecot.close()
            shutil.rmtree(work, ignore_errors=True)


def _database(args: argparse.Namespace, work: Path) -> tuple[str, Any]:
    """The database URL to store into, and the throw-away PostgreSQL cluster to close afterwards (or None)."""
    if args.database_url:
        return args.database_url, None
    if args.database == "postgresql":
        from tests.servers.postgres import Postgres

        cluster = Postgres()
        cluster.start()
        return cluster.create_database("scanbench"), cluster
    return f"sqlite:///{work / 'followupd.db'}", None


def _mailbox(dovecot: Any, home: Path, cached: Path | None, messages: int) -> dict[str, int]:
    """Seed the Maildir (or move a cached one in); returns messages per folder."""
    started = time.perf_counter()
    if cached is not None and cached.exists():
        shutil.rmtree(home, ignore_errors=True)
        cached.rename(home)
        counts: dict[str, int] = json.loads((home / "bench-counts.json").read_text())
        print(f"mailbox: reused {cached} ({counts['INBOX']} INBOX + {counts['Sent']} Sent)")
        return counts
    counts = seed_mailbox(dovecot, messages)
    (home / "bench-counts.json").write_text(json.dumps(counts))
    print(
        f"mailbox: wrote {counts['INBOX']} INBOX + {counts['Sent']} Sent messages as Maildir files "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return counts


@dataclass(frozen=True)
class Server:
    """What the raw-socket client measured."""

    messages: int
    fetch_s: float
    fetch_bytes: int
    fetch_batched_s: float
    incremental_ms: float
    sent_first_ms: float


def report(args: argparse.Namespace, server: Server, r: dict[str, Any], children_kb: int) -> None:
    total = server.messages
    first = r["first_s"]
    inc = statistics.median(r["incremental_s"]) * 1000
    login = statistics.median(r["login_s"]) * 1000
    print(
        f"messages: {total:,} (INBOX + Sent), batch size {args.batch_size}, index warm, meetings pass "
        + (
            "on ([scan] meetings = true)"
            if args.meetings
            else "off ([scan] meetings = false: the header scan)"
        )
    )
    print(
        "(a) server limit, the scanner's header FETCH read off a socket without parsing:"
        f" {server.fetch_s:.2f} s"
        f" = {total / server.fetch_s:,.0f} msg/s ({server.fetch_bytes / 1e6:.0f} MB;"
        f" in UID batches of {args.batch_size}: {server.fetch_batched_s:.2f} s)"
    )
    print(
        f"(b) first full scan end to end (fetch, parse, classify, store): {first:.2f} s"
        f" = {total / first:,.0f} msg/s  [target >= 10,000 msg/s]"
        f"  (CPU {r['first_cpu_s']:.2f} s; stored {r['new']:,} messages,"
        f" {r['rows']['addresses']:,} addresses,"
        f" {r['rows']['threads']:,} threads, {r['rows']['contacts']} contacts)"
    )
    print(
        f"(c) incremental scan, no new mail, same process: median {inc:.1f} ms, min"
        f" {min(r['incremental_s']) * 1000:.1f} ms  [target <= 20 ms]  (of which connect + LOGIN + LOGOUT"
        f" alone: {login:.1f} ms; the server's own share, raw login + {', '.join(SCANNER_ORDER)} + logout:"
        f" {server.incremental_ms:.1f} ms; in the order {', '.join(SENT_FIRST)}:"
        f" {server.sent_first_ms:.1f} ms)"
    )
    steps = ", ".join(f"{name} {ms:.1f}" for name, ms in r["steps_ms"].items())
    print(f"    (c) step by step (medians of 9 more scans, ms): {steps}")
    print(
        f"(d) peak RSS of the scanner process (VmHWM): {r['hwm_kb'] / 1024:.0f} MB  [target <= 150 MB]"
        f"  (after imports and opening the database: {r['rss_before_kb'] / 1024:.0f} MB;"
        f" RUSAGE_CHILDREN maxrss {children_kb / 1024:.0f} MB)"
    )
    print(f"ratio (b)/(a): {first / server.fetch_s:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000, help="mailbox size (default 50,000)")
    parser.add_argument(
        "--batch-size", type=int, default=2000, help="accounts.imap.batch_size (default 2000)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the first scan, print the top 25")
    parser.add_argument(
        "--meetings",
        action="store_true",
        help="include the meetings pass (BODYSTRUCTURE, invites, arrangements); default: headers only",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and database")
    parser.add_argument("--mail-cache", metavar="DIR", help="keep the seeded Maildir under DIR and reuse it")
    parser.add_argument(
        "--dovecot-config", metavar="LINE", action="append", default=[], help="extra dovecot.conf line"
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="store into a SQLite file (default) or a throw-away PostgreSQL cluster",
    )
    parser.add_argument("--database-url", metavar="URL", help="an empty database to store into instead")
    parser.add_argument(
        "--statements", action="store_true", help="count the first scan's statements (slows it a little)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
    else:
        run(args)


if __name__ == "__main__":
    main()

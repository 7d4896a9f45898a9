"""Benchmark of the scanner's hot path: parse_headers + classify over synthetic but realistic header blocks.

Usage: python benchmarks/parse.py [--count 50000] [--repeat 3] [--profile]

The blocks look like an IMAP ``BODY.PEEK[HEADER.FIELDS (...)]`` response (CRLF, trailing blank line): a
mix of people (some with RFC 2047 names, some replies with References), newsletters, mailing-list posts,
GitHub-style notifications, calendar robots, auto-replies and bounces, with 1-5 recipients. The budget is
well under 30 µs a message for parse + classify (the scan target is 10,000 messages/s end to end on 2 cores).
Times are CPU time of this process (time.process_time), so other work on a shared machine does not blur them.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import pstats
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from followupd.core.addresses import is_role_address
from followupd.core.classify import classify
from followupd.core.headers import (
    WANTED_FIELDS,
    _address,
    _cached_addresses,
    header_block,
    parse_headers,
    strip_mbox_from_line,
)

FIRST = ["Alice", "Bob", "Chen", "Dmitri", "Élodie", "Fatima", "Günther", "Hiroshi", "Ines", "José", "Kwame"]
LAST = ["Smith", "Okafor", "Müller", "García", "Nakamura", "O'Brien", "Larsen", "Ivanova", "Singh", "Dubois"]
DOMAINS = ["gmail.com", "example.org", "corp.example.com", "uni.example.edu", "outlook.com", "startup.io"]
WORDS = ["project", "coffee", "quarterly", "review", "draft", "meeting", "invoice", "lunch", "paper", "plan"]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class Synth:
    """Deterministic generator of header blocks (seeded, so runs are comparable)."""

    def __init__(self, seed: int, people: int = 5000) -> None:
        self.rng = random.Random(seed)
        self.people = [self._person() for _ in range(people)]

    def _person(self) -> tuple[str, str]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        local = f"{first}.{last}{self.rng.randint(1, 999)}".lower().encode("ascii", "ignore").decode()
        local = local.replace("'", "")
        return f"{first} {last}", f"{local}@{self.rng.choice(DOMAINS)}"

    def name_addr(self, person: tuple[str, str]) -> str:
        name, email = person
        if name.isascii():
            return f'"{name}" <{email}>' if "'" in name else f"{name} <{email}>"
        if self.rng.random() < 0.5:
            encoded = base64.b64encode(name.encode()).decode()
            return f"=?UTF-8?B?{encoded}?= <{email}>"
        quoted = "".join(c if c.isascii() and c.isalnum() else f"={b:02X}" for c in name for b in c.encode())
        return f"=?utf-8?q?{quoted.replace('=20', '_')}?= <{email}>"

    def date(self) -> str:
        rng = self.rng
        offset = rng.choice(["+0000", "-0500", "+0100", "+0530", "-0800", "+0900"])
        return (
            f"{rng.choice(WEEKDAYS)}, {rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(2015, 2025)} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} {offset}"
        )

    def msgid(self) -> str:
        return f"<{self.rng.getrandbits(64):016x}.{self.rng.randint(1, 99999)}@mail.example.com>"

    def subject(self) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(2, 7))).capitalize()

    def recipients(self) -> str:
        people = self.rng.sample(self.people, self.rng.randint(1, 5))
        return ",\r\n ".join(self.name_addr(person) for person in people)

    def block(self) -> bytes:
        roll = self.rng.random()
        kinds: list[tuple[float, Callable[[], list[str]]]] = [
            (0.55, self.person_mail),
            (0.70, self.newsletter),
            (0.82, self.list_post),
            (0.92, self.notification),
            (0.95, self.calendar_robot),
            (0.98, self.auto_reply),
            (1.01, self.bounce),
        ]
        lines = next(make for limit, make in kinds if roll < limit)()
        if self.rng.random() < 0.3:
            lines.append(f"X-GM-THRID: {self.rng.getrandbits(60)}")
        self.rng.shuffle(lines)
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def common(self, sender: str, subject: str) -> list[str]:
        return [
            f"From: {sender}",
            f"To: {self.recipients()}",
            f"Subject: {subject}",
            f"Date: {self.date()}",
            f"Message-ID: {self.msgid()}",
        ]

    def person_mail(self) -> list[str]:
        lines = self.common(self.name_addr(self.rng.choice(self.people)), self.subject())
        if self.rng.random() < 0.4:
            refs = [self.msgid() for _ in range(self.rng.randint(1, 6))]
            lines[2] = f"Subject: Re: {self.subject()}"
            lines += [f"In-Reply-To: {refs[-1]}", "References: " + "\r\n ".join(refs)]
        if self.rng.random() < 0.3:
            lines.append(f"Cc: {self.recipients()}")
        if self.rng.random() < 0.2:
            lines.append("X-Auto-Response-Suppress: All")
        lines.append('Content-Type: multipart/alternative; boundary="000000000000abcdef0123456789"')
        return lines

    def newsletter(self) -> list[str]:
        brand = self.rng.choice(["Acme Weekly", "The Daily Byte", "Gadget Deals"])
        lines = self.common(f"{brand} <news@{self.rng.choice(DOMAINS)}>", f"Your {self.subject()} digest")
        return [
            *lines,
            "List-Unsubscribe: <https://example.us1.list-manage.com/unsubscribe?u=abc&id=def>,\r\n"
            " <mailto:unsubscribe-abc@mailchimp.example.net>",
            "Precedence: bulk",
            "Feedback-ID: 12345:67890:campaign:mailchimp",
            'Content-Type: multipart/alternative; boundary="_----------=_MCPart_1234"',
        ]

    def list_post(self) -> list[str]:
        lines = self.common(self.name_addr(self.rng.choice(self.people)), f"[dev] {self.subject()}")
        lines[1] = "To: dev@lists.example.org"
        return [
            *lines,
            "List-Id: Developers <dev.lists.example.org>",
            "List-Post: <mailto:dev@lists.example.org>",
            "List-Unsubscribe: <https://lists.example.org/mailman/options/dev>,\r\n"
            " <mailto:dev-request@lists.example.org?subject=unsubscribe>",
            "Precedence: list",
        ]

    def notification(self) -> list[str]:
        name = self.rng.choice(self.people)[0]
        lines = self.common(f"{name} <notifications@github.com>", f"Re: [acme/widget] {self.subject()} (#42)")
        return [
            *lines,
            f"Reply-To: acme/widget <reply+AAAB{self.rng.getrandbits(40):x}@reply.github.com>",
            "List-Id: acme/widget <widget.acme.github.com>",
            "List-Unsubscribe: <mailto:unsub+AAAB@reply.github.com>",
            "Precedence: list",
            "X-Auto-Response-Suppress: All",
        ]

    def calendar_robot(self) -> list[str]:
        lines = self.common("Google Calendar <calendar-notification@google.com>", "Reminder: 1:1 @ 10am")
        return [*lines, "Auto-Submitted: auto-generated", "Content-Type: multipart/mixed; boundary=x"]

    def auto_reply(self) -> list[str]:
        lines = self.common(self.name_addr(self.rng.choice(self.people)), "Out of office")
        return [*lines, "Auto-Submitted: auto-replied", "X-Autoreply: yes", "Return-Path: <>"]

    def bounce(self) -> list[str]:
        lines = self.common("Mail Delivery System <MAILER-DAEMON@mx.example.com>", "Undelivered Mail")
        return [*lines, "Return-Path: <>", "Content-Type: multipart/report; report-type=delivery-status; b=x"]


TYPICAL = (
    b"From: Alice Smith <alice.smith@example.org>\r\n"
    b"To: Bob Jones <bob@example.com>, carol@example.net, Dave Li <dave.li@corp.example.com>\r\n"
    b"Subject: Re: Lunch next week?\r\n"
    b"Date: Tue, 15 Nov 2022 08:12:31 -0500\r\n"
    b"Message-ID: <CAF123abc456def@mail.gmail.com>\r\n"
    b"In-Reply-To: <CAF999@mail.gmail.com>\r\n"
    b"References: <CAF1@mail.gmail.com>\r\n <CAF999@mail.gmail.com>\r\n"
    b'Content-Type: multipart/alternative; boundary="0000000000001234"\r\n\r\n'
)


def run(blocks: list[bytes]) -> float:
    """Parse and classify every block once, from cold caches; return the CPU seconds."""
    _clear_caches()
    started = time.process_time()
    for raw in blocks:
        classify(parse_headers(raw))
    return time.process_time() - started


def main() -> None:
    """Build the blocks, time them, print the figures (and a profile with --profile)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    synth = Synth(seed=20240601)
    blocks = [synth.block() for _ in range(args.count)]
    verdicts = Counter(classify(parse_headers(raw)).reason or "person" for raw in blocks)
    print(f"{len(blocks)} synthetic blocks, mean {sum(map(len, blocks)) / len(blocks):.0f} bytes")
    print("verdicts:", ", ".join(f"{reason}={n}" for reason, n in verdicts.most_common()))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, blocks)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
        return
    best = min(run(blocks) for _ in range(args.repeat))
    print(f"caches after one pass: fields {_cached_addresses.cache_info()}")
    print(f"                       addresses {_address.cache_info()}")
    _report("synthetic mix, cold caches", best, len(blocks))
    typical = [TYPICAL] * 10_000
    _report("typical person, warm caches", min(run(typical) for _ in range(args.repeat)), len(typical))
    _report(
        "typical person, no caches", min(_timed(lambda: _parse_uncached(typical)) for _ in range(3)), 10_000
    )
    real = _corpus_blocks()
    if real:
        _report(
            f"{len(real)} corpus messages (fetched fields)",
            min(run(real) for _ in range(args.repeat)),
            len(real),
        )


def _report(label: str, seconds: float, count: int) -> None:
    print(f"{label + ':':40s} {seconds / count * 1e6:6.2f} µs/message, {count / seconds:9,.0f} messages/s")


def _corpus_blocks() -> list[bytes]:
    """Real header blocks from ../shared/corpus, cut down to the fields the IMAP scanner fetches."""
    corpus = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
    wanted = {name.encode() for name in WANTED_FIELDS}
    blocks = []
    for path in sorted(corpus.rglob("*.eml")) if corpus.is_dir() else []:
        kept, keep = [], False
        for line in header_block(strip_mbox_from_line(path.read_bytes())).splitlines():
            if line[:1] not in (b" ", b"\t"):
                keep = line.partition(b":")[0].strip().lower() in wanted
            if keep:
                kept.append(line)
        blocks.append(b"\r\n".join(kept) + b"\r\n\r\n")
    return blocks


def _parse_uncached(blocks: list[bytes]) -> None:
    for raw in blocks:
        _clear_caches()
        classify(parse_headers(raw))


def _clear_caches() -> None:
    is_role_address.cache_clear()
    _cached_addresses.cache_clear()
    _address.cache_clear()


def _timed(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


if __name__ == "__main__":
    main()

"""Invitation messages in the shapes calendar services send them, and plain-text scheduling threads.

The calendar texts are the ``tests/fixtures/ics`` files (written for the core's tests); the builders here wrap
them the way each service does:

- Google Calendar: multipart/mixed > [multipart/alternative > [text/plain (base64), text/html,
  text/calendar; method=...], application/ics "invite.ics" attachment (base64)]; Sender: the calendar robot.
- Outlook / Exchange: multipart/alternative > [text/plain, text/html, text/calendar (quoted-printable)], with
  ``Content-class: urn:content-classes:calendarmessage`` and Thread-Topic/Thread-Index.
- Teams: Exchange's shape with the calendar part in base64.
- Apple Calendar (iCloud): multipart/mixed > [text/plain, text/calendar "invite.ics" attachment (QP)].
- Zoom: multipart/mixed > [text/html, application/octet-stream "zoom.ics" attachment (base64)]: only the
  file name says it is a calendar.

Users: the fixtures invite ``sam@example.net``; tests configure it as an alias of the mailbox's user.
"""

from __future__ import annotations

import base64
import quopri
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from tests.mailgen import Mail, person, reply

FIXTURES = Path(__file__).parent / "fixtures" / "ics"
SAM = "sam@example.net"
ADA = "ada@example.org"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
"""A Friday: after the fixtures' March meetings, inside the Apple weekly series (17 March to 28 April)."""

GOOGLE_UID = "4k2j9x7q1m3n5p8r0t6v@google.com"
OUTLOOK_UID = (
    "040000008200E00074C5B7101A82E00800000000A0B1C2D3E4F5A601000000000000000"
    "010000000F1E2D3C4B5A69788796A5B4C3D2E1F00"
)
TEAMS_UID = "040000008200E00074C5B7101A82E00800000000C0FFEE00000000000000000010000000AA"
APPLE_UID = "9E3F1C2A-5B7D-4E8F-A1B2-C3D4E5F60718"
ZOOM_UID = "040000008200E00074C5B7101A82E008000000005A4B3C2D1E0F00110000000000000000"
CET = timezone(timedelta(hours=1))
EST = timezone(timedelta(hours=-5))


def ics(name: str) -> str:
    """A fixture calendar's text."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def eml(name: str) -> bytes:
    """A fixture message's bytes, with CRLF line ends (as IMAP APPEND wants them)."""
    return crlf((FIXTURES / name).read_bytes())


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _head(sender: str, to: str, subject: str, date: datetime, *, message_id: str, extra: list[str]) -> str:
    return "\r\n".join(
        [
            f"From: {sender}",
            f"To: {to}",
            f"Subject: {subject}",
            f"Date: {format_datetime(date)}",
            f"Message-ID: <{message_id}>",
            "MIME-Version: 1.0",
            *extra,
        ]
    )


def _b64(text: str) -> str:
    return base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", "\r\n")


def _qp(text: str) -> str:
    return (
        quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    )


def _method(calendar: str) -> str:
    for line in calendar.splitlines():
        if line.upper().startswith("METHOD:"):
            return line.split(":", 1)[1].strip()
    return "PUBLISH"


def google(calendar: str, *, sender: str, to: str, subject: str, date: datetime, message_id: str) -> bytes:
    """Google Calendar's shape (the calendar twice: inline and as invite.ics)."""
    method = _method(calendar)
    head = _head(
        sender,
        to,
        subject,
        date,
        message_id=message_id,
        extra=[
            "Sender: Google Calendar <calendar-notification@google.com>",
            f"Reply-To: {sender}",
            'Content-Type: multipart/mixed; boundary="000000000000mixed"',
        ],
    )
    body = (
        "--000000000000mixed\r\n"
        'Content-Type: multipart/alternative; boundary="000000000000alt"\r\n\r\n'
        "--000000000000alt\r\n"
        'Content-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{_b64('You have been invited to the following event.')}\r\n"
        "--000000000000alt\r\n"
        'Content-Type: text/html; charset="UTF-8"\r\n\r\n'
        "<p>You have been invited to the following event.</p>\r\n"
        "--000000000000alt\r\n"
        f'Content-Type: text/calendar; charset="UTF-8"; method={method}\r\n'
        "Content-Transfer-Encoding: 7bit\r\n\r\n"
        f"{calendar.replace(chr(10), chr(13) + chr(10)).replace(chr(13) * 2, chr(13))}\r\n"
        "--000000000000alt--\r\n\r\n"
        "--000000000000mixed\r\n"
        'Content-Type: application/ics; name="invite.ics"\r\n'
        'Content-Disposition: attachment; filename="invite.ics"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{_b64(calendar)}\r\n"
        "--000000000000mixed--\r\n"
    )
    return (head + "\r\n\r\n" + body).encode("utf-8")


def outlook(
    calendar: str, *, sender: str, to: str, subject: str, date: datetime, message_id: str, teams: bool = False
) -> bytes:
    """Exchange's shape: no attachment, the calendar is one alternative (QP; base64 for Teams)."""
    method = _method(calendar)
    encoding, payload = ("base64", _b64(calendar)) if teams else ("quoted-printable", _qp(calendar))
    head = _head(
        sender,
        to,
        subject,
        date,
        message_id=message_id,
        extra=[
            f"Thread-Topic: {subject}",
            "Thread-Index: AdqHk1fJbQ2Vd7sWRl6pN0Zq1xYh8w==",
            "Content-class: urn:content-classes:calendarmessage",
            "X-MS-Has-Attach:",
            "X-MS-TNEF-Correlator:",
            'Content-Type: multipart/alternative; boundary="_000_AM0PR01MB_"',
        ],
    )
    body = (
        "--_000_AM0PR01MB_\r\n"
        'Content-Type: text/plain; charset="us-ascii"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"{'Microsoft Teams meeting' if teams else 'Meeting invitation'}\r\n\r\n"
        "--_000_AM0PR01MB_\r\n"
        'Content-Type: text/html; charset="us-ascii"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "<html><body>Meeting</body></html>\r\n\r\n"
        "--_000_AM0PR01MB_\r\n"
        f'Content-Type: text/calendar; charset="utf-8"; method={method}\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        f"{payload}\r\n"
        "--_000_AM0PR01MB_--\r\n"
    )
    return (head + "\r\n\r\n" + body).encode("utf-8")


def apple(calendar: str, *, sender: str, to: str, subject: str, date: datetime, message_id: str) -> bytes:
    """iCloud's shape: a short text and the calendar as an invite.ics attachment."""
    method = _method(calendar)
    head = _head(
        sender,
        to,
        subject,
        date,
        message_id=message_id,
        extra=[
            'Content-Type: multipart/mixed; boundary="Apple-Mail=_5F3E"',
        ],
    )
    body = (
        "--Apple-Mail=_5F3E\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n"
        f"{subject}\r\n\r\n"
        "--Apple-Mail=_5F3E\r\n"
        f"Content-Type: text/calendar; charset=utf-8; method={method}; name=invite.ics\r\n"
        "Content-Disposition: attachment; filename=invite.ics\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"{_qp(calendar)}\r\n"
        "--Apple-Mail=_5F3E--\r\n"
    )
    return (head + "\r\n\r\n" + body).encode("utf-8")


def zoom(calendar: str, *, sender: str, to: str, subject: str, date: datetime, message_id: str) -> bytes:
    """Zoom's shape: an HTML note and the calendar as an octet-stream zoom.ics attachment."""
    head = _head(
        sender,
        to,
        subject,
        date,
        message_id=message_id,
        extra=[
            'Content-Type: multipart/mixed; boundary="zoom-boundary"',
        ],
    )
    body = (
        "--zoom-boundary\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        "<p>Riley Host is inviting you to a scheduled Zoom meeting.</p>\r\n"
        "--zoom-boundary\r\n"
        'Content-Type: application/octet-stream; name="zoom.ics"\r\n'
        'Content-Disposition: attachment; filename="zoom.ics"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{_b64(calendar)}\r\n"
        "--zoom-boundary--\r\n"
    )
    return (head + "\r\n\r\n" + body).encode("utf-8")


def vendor_invites() -> dict[str, bytes]:
    """One REQUEST of each service, addressed to Sam (the user's alias). Meeting times (UTC):

    - google: Coffee: Dana / Sam, 10 March 22:00-22:30 (15:00 Los Angeles, PDT)
    - outlook: Kennenlernen Jonas / Sam, 10 March 09:00-10:00 (10:00 "W. Europe Standard Time")
    - teams: Partnership chat, 5 March 17:00-17:30 (09:00 "Pacific Standard Time", before DST)
    - apple: Weekly 1:1 Mia / Sam, Tuesdays 10:00 Berlin from 17 March to 28 April, not 31 March
    - zoom: Zoom: intro call, 9 March 17:30-18:00 (13:30 in a zone Zoom names by its offsets, EDT)
    """
    return {
        "google": eml("gmail_invite.eml"),
        "outlook": eml("outlook_invite.eml"),
        "teams": eml("teams_invite.eml"),
        "apple": apple(
            ics("apple_weekly_exdate.ics"),
            sender="Mia Muster <mia@example.eu>",
            to=f"Sam Example <{SAM}>",
            subject="Invitation: Weekly 1:1 Mia / Sam",
            date=datetime(2026, 3, 1, 10, 16, tzinfo=CET),
            message_id="apple-weekly-1@icloud.example",
        ),
        "zoom": zoom(
            ics("zoom_custom_tzid.ics"),
            sender="Riley Host <riley@example.com>",
            to=SAM,
            subject="Zoom: intro call",
            date=datetime(2026, 3, 2, 10, 0, tzinfo=EST),
            message_id="zoom-intro-1@zoom.example",
        ),
    }


def google_update(name: str, message_id: str, *, day: int) -> bytes:
    """A Google fixture calendar (update, cancel) wrapped as Google sends it, dated ``day`` March 2026."""
    return google(
        ics(name),
        sender="Dana Organizer <dana@example.org>",
        to=SAM,
        subject=f"Updated: Coffee ({name})",
        date=datetime(2026, 3, day, 18, 0, tzinfo=UTC),
        message_id=message_id,
    )


def outlook_file(name: str, message_id: str, *, sender: str, to: str, day: int) -> bytes:
    """An Outlook fixture calendar (reply, cancel) wrapped as Exchange sends it."""
    return outlook(
        ics(name),
        sender=sender,
        to=to,
        subject=f"Kennenlernen ({name})",
        date=datetime(2026, 3, day, 9, 0, tzinfo=CET),
        message_id=message_id,
    )


def coffee_thread(me: str) -> tuple[Mail, Mail]:
    """Ada asks for coffee on Thursday at 3pm (her Date in CET); Sam answers that it works: a meeting on
    12 March 2026, 14:00-15:00 UTC, confirmed in words."""
    ask = person(
        f"Ada Lovelace <{ADA}>",
        me,
        "Coffee this week?",
        datetime(2026, 3, 9, 9, tzinfo=UTC),
        "ada-1",
        body="Hi Sam,\n\nWould you be up for coffee on Thursday at 3pm? There is a nice place near the"
        " station.\n\nBest,\nAda\n",
    )
    ask.date = ask.date.astimezone(CET)
    yes = reply(
        ask,
        SAM,
        datetime(2026, 3, 9, 11, tzinfo=UTC),
        "sam-ada-1",
        body="Thursday at 3pm works for me, see you then!\n\nOn Mon, 9 Mar 2026, Ada wrote:\n"
        "> coffee on Thursday?\n",
    )
    return ask, yes

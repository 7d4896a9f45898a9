"""Meetings learned during a scan of a real Dovecot: invites of every calendar service (REQUEST, updates,
REPLY, CANCEL, recurrences, time zones) and plain-text scheduling threads, delivered by IMAP APPEND.

Every test gets a fresh IMAP user and SQLite database, appends messages, runs ``scan_once`` and reads the
meetings table (through the CLI's views) and the contacts.
"""

from __future__ import annotations

import imaplib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine import meetings_scan
from followupd.engine.scan import ScanReport, scan_once
from followupd.errors import MailError
from followupd.store.contacts_repo import ContactView
from followupd.store.db import Database
from followupd.store.meetings_views import MeetingView, list_meetings
from followupd.store.models import Message
from tests import mailgen
from tests import meetingmail as mm
from tests.mailgen import Mail, person, reply
from tests.servers.plugin import Mailbox

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(60)]

NOW = mm.NOW
ADA = mm.ADA
BOB = "bob@example.com"
JONAS = "jonas.beispiel@example.de"


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ harness


@pytest.fixture
def config(mailbox: Mailbox, db: Database, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("PW", mailbox.password)
    return make_config(db, mailbox)


def make_config(db: Database, box: Mailbox, *, meetings: bool = True) -> Config:
    main = mailgen.account_toml("main", box.user, port=box.dovecot.port, aliases=[mm.SAM])
    text = mailgen.config_toml(str(db.url), main) + f"\n[scan]\nmeetings = {str(meetings).lower()}\n"
    return config_mod.parse(text, env={})


def scan(db: Database, config: Config, now: datetime = NOW) -> ScanReport:
    report = scan_once(db, config, now=now, sleep=lambda seconds: None)
    assert report.errors == {}
    return report


def append(box: Mailbox, folder: str, *raws: bytes) -> None:
    for raw in raws:
        box.dovecot.append(box.user, folder, raw, flags=["\\Seen"])


def append_mail(box: Mailbox, folder: str, *mails: Mail) -> None:
    append(box, folder, *(m.render() for m in mails))


def meetings(db: Database, now: datetime = NOW) -> dict[str, MeetingView]:
    with db.read() as session:
        return {m.uid: m for m in list_meetings(session, now=now)}


def contact(db: Database, email: str) -> ContactView:
    return mailgen.contacts(db)[email]


def people(meeting: MeetingView) -> dict[str, str]:
    return {a.email: a.partstat for a in meeting.attendees}


# ------------------------------------------------------------------------------------------------- invites


def test_invites_of_every_service_become_meetings_with_their_times_and_people(
    mailbox: Mailbox, db: Database, config: Config
) -> None:
    invites = mm.vendor_invites()
    append(mailbox, "INBOX", *invites.values())
    append(mailbox, "Sent", mm.eml("forwarded_invite.eml"))  # the Teams invite again, forwarded by Sam
    scan(db, config)

    found = meetings(db)
    assert set(found) == {mm.GOOGLE_UID, mm.OUTLOOK_UID, mm.TEAMS_UID, mm.APPLE_UID, mm.ZOOM_UID}
    expected = {
        mm.GOOGLE_UID: ("Coffee: Dana / Sam", utc(3, 10, 22), utc(3, 10, 22, 30), "dana@example.org"),
        mm.OUTLOOK_UID: ("Kennenlernen Jonas / Sam", utc(3, 10, 9), utc(3, 10, 10), JONAS),
        mm.TEAMS_UID: ("Partnership chat", utc(3, 5, 17), utc(3, 5, 17, 30), "alex@contoso.example"),
        # Weekly from 17 March (10:00 Berlin, CET): at NOW (20 March) the next occurrence is shown.
        mm.APPLE_UID: ("Weekly 1:1 Mia / Sam", utc(3, 24, 9), utc(3, 24, 9, 30), "mia@example.eu"),
        mm.ZOOM_UID: ("Zoom: intro call", utc(3, 9, 17, 30), utc(3, 9, 18), "riley@example.com"),
    }
    for uid, (subject, start, end, organizer) in expected.items():
        meeting = found[uid]
        assert (meeting.subject, meeting.start_at, meeting.end_at) == (subject, start, end), uid
        assert (meeting.status, meeting.source, meeting.confidence) == ("confirmed", "invite", 1.0)
        assert meeting.organizer == organizer
        assert people(meeting)[organizer] == "ACCEPTED"
        assert people(meeting)[mm.SAM] in {"NEEDS-ACTION", "ACCEPTED"}
        assert meeting.counts
    # Outlook's meeting room is invited like a person (CUTYPE=RESOURCE) but is nobody to follow up with.
    assert set(people(found[mm.OUTLOOK_UID])) == {"jonas.beispiel@example.de", mm.SAM}
    assert found[mm.APPLE_UID].rrule is not None
    assert found[mm.APPLE_UID].last_end_at == utc(3, 17, 9, 30)

    # The organizers were met: admitted as contacts, touched at the end of the meeting.
    for uid, (_subject, _start, end, organizer) in expected.items():
        view = contact(db, organizer)
        last_end = found[uid].last_end_at
        assert view.last_meeting_at == last_end == (end if uid != mm.APPLE_UID else utc(3, 17, 9, 30))
        assert view.last_touch_at == max(t for t in (view.last_inbound_at, last_end) if t is not None)
    with db.read() as session:
        flagged = set(session.scalars(select(Message.subject).where(Message.has_calendar.is_(True))))
    assert len(flagged) == 6  # the five invites and the forwarded one


def test_update_reply_and_cancel_follow_itip(mailbox: Mailbox, db: Database, config: Config) -> None:
    dana = "dana@example.org"
    append(mailbox, "INBOX", mm.eml("gmail_invite.eml"))
    scan(db, config)
    meeting = meetings(db)[mm.GOOGLE_UID]
    assert (meeting.start_at, meeting.status, meeting.sequence) == (utc(3, 10, 22), "confirmed", 0)
    assert contact(db, dana).last_meeting_at == utc(3, 10, 22, 30)

    # Sam declines (his REPLY sits in Sent): he did not meet Dana, whatever the REPLY says about times.
    declined = mm.google_update("google_reply_declined.ics", "reply-1@example.net", day=5)
    append(
        mailbox,
        "Sent",
        declined.replace(b"From: Dana Organizer <dana@example.org>", f"From: {mm.SAM}".encode()),
    )
    scan(db, config)
    meeting = meetings(db)[mm.GOOGLE_UID]
    assert people(meeting)[mm.SAM] == "DECLINED"
    assert meeting.start_at == utc(3, 10, 22) and not meeting.counts
    assert contact(db, dana).last_meeting_at is None

    # Dana moves it (SEQUENCE 1): the new time wins and Sam's answer to the old version no longer holds.
    append(mailbox, "INBOX", mm.google_update("google_update.ics", "update-1@google.example", day=6))
    scan(db, config)
    meeting = meetings(db)[mm.GOOGLE_UID]
    assert (meeting.start_at, meeting.end_at, meeting.sequence) == (utc(3, 11, 23), utc(3, 11, 23, 30), 1)
    assert people(meeting)[mm.SAM] == "NEEDS-ACTION" and meeting.counts
    assert contact(db, dana).last_meeting_at == utc(3, 11, 23, 30)

    # Dana cancels (SEQUENCE 2): cancelled, and no longer a meeting with her.
    append(mailbox, "INBOX", mm.google_update("google_cancel.ics", "cancel-1@google.example", day=7))
    scan(db, config)
    meeting = meetings(db)[mm.GOOGLE_UID]
    assert (meeting.status, meeting.counts, meeting.last_end_at) == ("cancelled", False, None)
    assert contact(db, dana).last_meeting_at is None
    assert contact(db, dana).last_touch_at == contact(db, dana).last_inbound_at


def test_arrival_order_does_not_matter_and_the_users_reply_counts(
    mailbox: Mailbox, db: Database, config: Config
) -> None:
    jonas = "Jonas Beispiel <jonas.beispiel@example.de>"
    append(
        mailbox,
        "INBOX",
        mm.google_update("google_cancel.ics", "cancel-1@google.example", day=7),
        mm.google_update("google_update.ics", "update-1@google.example", day=6),
        mm.eml("gmail_invite.eml"),
        mm.eml("outlook_invite.eml"),
    )
    accepted = mm.outlook_file(
        "outlook_reply_accepted.ics", "accept-1@example.net", sender=mm.SAM, to=jonas, day=4
    )
    append(mailbox, "Sent", accepted)
    scan(db, config)
    found = meetings(db)
    google, outlook = found[mm.GOOGLE_UID], found[mm.OUTLOOK_UID]
    assert (google.status, google.sequence, google.start_at) == ("cancelled", 2, utc(3, 11, 23))
    assert (outlook.status, people(outlook)[mm.SAM]) == ("confirmed", "ACCEPTED")
    assert contact(db, "jonas.beispiel@example.de").last_meeting_at == utc(3, 10, 10)

    # Jonas cancels his meeting too, from Outlook with a "Customized Time Zone".
    cancel = mm.outlook_file(
        "outlook_cancel_custom_tz.ics", "cancel-2@example.de", sender=jonas, to=mm.SAM, day=8
    )
    append(mailbox, "INBOX", cancel)
    scan(db, config)
    assert meetings(db)[mm.OUTLOOK_UID].status == "cancelled"
    assert contact(db, "jonas.beispiel@example.de").last_meeting_at is None


def test_a_recurring_meeting_moves_on_as_time_passes(mailbox: Mailbox, db: Database, config: Config) -> None:
    append(mailbox, "INBOX", mm.vendor_invites()["apple"])
    scan(db, config)
    weekly = meetings(db)[mm.APPLE_UID]
    assert (weekly.start_at, weekly.last_end_at) == (utc(3, 24, 9), utc(3, 17, 9, 30))

    # Five days later, no new mail: the 24 March occurrence has ended; 31 March is excluded (EXDATE) and
    # Berlin is on summer time from 29 March, so the next one is 7 April at 08:00 UTC.
    later = utc(3, 25, 12)
    scan(db, config, now=later)
    weekly = meetings(db, later)[mm.APPLE_UID]
    assert (weekly.start_at, weekly.end_at, weekly.last_end_at) == (
        utc(4, 7, 8),
        utc(4, 7, 8, 30),
        utc(3, 24, 9, 30),
    )
    assert contact(db, "mia@example.eu").last_meeting_at == utc(3, 24, 9, 30)

    # After the series (UNTIL 28 April 07:59:59Z, so the last occurrence is 21 April), that last occurrence
    # stays shown and counted.
    done = utc(6, 1)
    scan(db, config, now=done)
    weekly = meetings(db, done)[mm.APPLE_UID]
    assert (weekly.start_at, weekly.last_end_at) == (utc(4, 21, 8), utc(4, 21, 8, 30))
    assert contact(db, "mia@example.eu").last_meeting_at == utc(4, 21, 8, 30)


# ------------------------------------------------------------------------------------------- plain text


def test_scheduling_threads_in_plain_text(mailbox: Mailbox, db: Database, config: Config) -> None:
    ask, yes = mm.coffee_thread(mailbox.user)
    lunch = person(
        f"Bob Builder <{BOB}>",
        mm.SAM,
        "Lunch on Wednesday?",
        datetime(2026, 3, 16, 8, tzinfo=UTC),
        "bob-1",
        body="Hi Sam,\n\nHow about lunch on Wednesday at 1pm?\n\nBob\n",
    )
    sure = reply(
        lunch,
        mm.SAM,
        datetime(2026, 3, 16, 10, tzinfo=UTC),
        "sam-bob-1",
        body="Sounds good, see you Wednesday!\n",
    )
    moved = reply(
        sure,
        f"Bob Builder <{BOB}>",
        datetime(2026, 3, 17, 7, tzinfo=UTC),
        "bob-2",
        to=mm.SAM,
        body="Sorry, something came up and I need to reschedule.\n",
    )
    old = person(
        "Carol <carol@example.com>",
        mm.SAM,
        "Coffee?",
        datetime(2026, 1, 5, 9, tzinfo=UTC),
        "carol-1",
        body="Coffee on Thursday at 10am?\n",
    )
    old_yes = reply(
        old,
        mm.SAM,
        datetime(2026, 1, 5, 10, tzinfo=UTC),
        "sam-carol-1",
        body="Thursday works, see you then!\n",
    )
    webinar = mailgen.newsletter(
        "Events <events@brand.example>",
        mm.SAM,
        "Webinar Thursday 3pm",
        datetime(2026, 3, 16, 9, tzinfo=UTC),
        "news-1",
    )
    webinar.body = "Join our webinar on Thursday at 3pm. Register now!\n"
    append_mail(mailbox, "INBOX", ask, lunch, moved, old, webinar)
    append_mail(mailbox, "Sent", yes, sure, old_yes)
    scan(db, config)

    found = {m.subject: m for m in meetings(db).values()}
    assert set(found) == {
        "Coffee this week?",
        "Lunch on Wednesday?",
    }  # the January thread is past the lookback
    coffee = found["Coffee this week?"]
    assert (coffee.source, coffee.status, coffee.start_at, coffee.end_at) == (
        "text",
        "confirmed",
        utc(3, 12, 14),
        utc(3, 12, 15),
    )
    assert 0.8 <= coffee.confidence <= 0.95
    assert "proposed" in coffee.reason and "confirmed" in coffee.reason
    assert people(coffee) == {ADA: "ACCEPTED"} and coffee.counts
    assert contact(db, ADA).last_meeting_at == utc(3, 12, 15)
    assert contact(db, ADA).last_touch_at == utc(3, 12, 15)

    # Bob confirmed, then needed to reschedule: tentative, no time, and no meeting with him yet.
    lunch_meeting = found["Lunch on Wednesday?"]
    assert (lunch_meeting.status, lunch_meeting.counts) == ("tentative", False)
    assert "reschedule" in lunch_meeting.reason and lunch_meeting.confidence < 0.5
    assert contact(db, BOB).last_meeting_at is None

    # A new time is proposed and agreed: confirmed again, at the new time.
    again = reply(
        moved,
        mm.SAM,
        datetime(2026, 3, 17, 9, tzinfo=UTC),
        "sam-bob-2",
        to=BOB,
        body="No problem. How about lunch on Thursday at 1pm instead?\n",
    )
    fine = reply(
        again,
        BOB,
        datetime(2026, 3, 17, 10, tzinfo=UTC),
        "bob-3",
        to=mm.SAM,
        body="Thursday at 1pm works for me. See you then!\n",
    )
    append_mail(mailbox, "Sent", again)
    append_mail(mailbox, "INBOX", fine)
    scan(db, config)
    lunch_meeting = {m.subject: m for m in meetings(db).values()}["Lunch on Wednesday?"]
    assert (lunch_meeting.status, lunch_meeting.start_at, lunch_meeting.counts) == (
        "confirmed",
        utc(3, 19, 13),  # Bob's and Sam's mail is dated in UTC: 1pm is 13:00 UTC
        True,
    )
    assert contact(db, BOB).last_meeting_at == utc(3, 19, 14)


# --------------------------------------------------------------------------------------------- the wire


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every line the client sends to any IMAP server during the test."""
    sent: list[bytes] = []
    original = imaplib.IMAP4.send

    def spy(self: imaplib.IMAP4, data: Any) -> None:
        sent.append(bytes(data))
        original(self, data)

    monkeypatch.setattr(imaplib.IMAP4, "send", spy)
    return sent


def test_only_structures_calendar_parts_and_text_prefixes_are_fetched(
    mailbox: Mailbox, db: Database, config: Config, commands: list[bytes]
) -> None:
    append(mailbox, "INBOX", *mm.vendor_invites().values())
    ask, yes = mm.coffee_thread(mailbox.user)
    append_mail(mailbox, "INBOX", ask)
    append_mail(mailbox, "Sent", yes)
    commands.clear()
    scan(db, config)
    assert len(meetings(db)) == 6
    fetches = [c.decode() for c in commands if b"FETCH" in c.upper()]
    bodies = [c for c in fetches if "BODY" in c.upper() and "BODYSTRUCTURE" not in c.upper()]
    assert bodies and all("HEADER.FIELDS" in c or "BODY.PEEK[" in c for c in bodies)
    assert not any(
        "BODY[]" in c or "BODY.PEEK[]" in c or "RFC822" in c.upper() or "[TEXT]" in c for c in fetches
    )
    parts = [c for c in bodies if "HEADER.FIELDS" not in c]
    assert any("<0.2048>" in c for c in parts)  # the text prefix of the candidate messages
    assert any("BODYSTRUCTURE" in c for c in fetches)


def test_with_meetings_off_no_structure_or_part_is_read(
    mailbox: Mailbox, db: Database, monkeypatch: pytest.MonkeyPatch, commands: list[bytes]
) -> None:
    monkeypatch.setenv("PW", mailbox.password)
    append(mailbox, "INBOX", *mm.vendor_invites().values())
    commands.clear()
    scan(db, make_config(db, mailbox, meetings=False))
    assert meetings(db) == {}
    assert not any(b"BODYSTRUCTURE" in c or b"<0." in c for c in commands)


def test_a_connection_lost_during_the_pass_is_caught_up_on_retry(
    mailbox: Mailbox, db: Database, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    append(mailbox, "INBOX", *mm.vendor_invites().values())
    real = meetings_scan.parts.fetch_parts
    failures = [MailError("IMAP FETCH part: connection reset")]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(meetings_scan.parts, "fetch_parts", flaky)
    scan(db, config)  # the headers were stored before the failure; the retry finds no new message
    assert set(meetings(db)) == {mm.GOOGLE_UID, mm.OUTLOOK_UID, mm.TEAMS_UID, mm.APPLE_UID, mm.ZOOM_UID}
    scan(db, config, now=NOW + timedelta(minutes=5))  # and nothing is folded in twice
    assert len(meetings(db)) == 5


def test_bulk_invitations_are_not_read_and_search_trouble_falls_back(
    mailbox: Mailbox, db: Database, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An event announcement sent through a list (List-Id, List-Unsubscribe) is not a meeting with the user.
    announcement = mm.google_update("google_request.ics", "meetup-1@events.example", day=5).replace(
        b"MIME-Version: 1.0\r\n",
        b"MIME-Version: 1.0\r\nList-Id: Events <events.example>\r\n"
        b"List-Unsubscribe: <mailto:u@events.example>\r\n",
        1,
    )
    append(mailbox, "INBOX", announcement)
    # A server whose SEARCH HEADER cannot be trusted (Gmail): every eligible structure is read instead.
    monkeypatch.setattr(meetings_scan.parts, "search_structured", lambda *args: None)
    append(mailbox, "INBOX", mm.vendor_invites()["teams"], mm.vendor_invites()["zoom"])
    scan(db, config)
    assert set(meetings(db)) == {mm.TEAMS_UID, mm.ZOOM_UID}

# ruff: noqa: E501
# (The letters below are text: one message per line reads better than strings wrapped by the formatter.)
"""The demo mailbox: a year of Robin Vale's mail (a freelance product designer), written for ``followupd demo``.

Deterministic: no clock, no randomness, so the shipped ``mailbox.mbox`` is exactly what :func:`build` returns
(a test checks it). Regenerate with ``python -m followupd.demo.sample``. Every date is placed around
:data:`NOW`, the demo's fixed clock, so that each trigger is due when the demo runs:

- keep_in_touch: Jonas (last exchange in October), Priya (September), Wei (a list thread in October);
- new_contact: Tomás (met at a conference) and Lena (introduced by Maya), both in February;
- after_meeting: Aisha (a Google Calendar invite for a meeting that ended a day before NOW) and Chloé
  (coffee agreed in words: "coffee next Tuesday at 3pm?" / "Tuesday works!");
- awaiting_reply: Daniel (Robin asked a question a week ago; no answer);
- nothing due: Maya (she wrote last: a reply is owed), Henrik (an Outlook invite for tomorrow), Sofia and
  Ben (recent enough for their cadence);
- never contacts: newsletters, notifications, a bank, receipts, ticketing, an out-of-office reply, a mailing
  list and the people who only post there, and a cold pitch that was never answered.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr
from pathlib import Path
from zoneinfo import ZoneInfo

NOW = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
"""The demo's clock: Thursday 5 March 2026, 10:00 UTC (inside the default send window)."""

MBOX = Path(__file__).with_name("mailbox.mbox")


@dataclass(frozen=True)
class Person:
    """Someone in the mailbox; ``zone`` is where their Date headers are written from."""

    name: str
    email: str
    zone: str = "Europe/Berlin"

    @property
    def header(self) -> str:
        return formataddr((self.name, self.email))

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


ROBIN = Person("Robin Vale", "robin@valeworks.example")
MAYA = Person("Maya Lindqvist", "maya@northwind-labs.example", "Europe/Stockholm")
JONAS = Person("Jonas Weber", "jonas.weber@kessler-bau.example")
PRIYA = Person("Priya Raman", "priya@raman-advisory.example", "Asia/Kolkata")
TOMAS = Person("Tomás Aguilar", "tomas@brightpath.example", "America/Argentina/Buenos_Aires")
LENA = Person("Lena Fischer", "lena@fjordtype.example", "Europe/Oslo")
DANIEL = Person("Daniel Osei", "daniel@oseistudio.example", "Europe/London")
AISHA = Person("Aisha Karimi", "aisha.karimi@lumen-health.example", "Europe/London")
HENRIK = Person("Henrik Sørensen", "hso@meridian-group.example", "Europe/Copenhagen")
CHLOE = Person("Chloé Martin", "chloe@atelier-martin.example", "Europe/Paris")
WEI = Person("Wei Chen", "wei.chen@parallax.example", "Asia/Singapore")
SOFIA = Person("Sofia Moreau", "sofia@moreau-partners.example", "Europe/Lisbon")
BEN = Person("Ben Adler", "ben@adlerworks.example", "America/New_York")
KYLE = Person("Kyle Brennan", "kyle@growthrocket.example", "America/Chicago")
MARTA = Person("Marta Kowalski", "marta@kowalski.example", "Europe/Warsaw")
JAMAL = Person("Jamal Reed", "jamal@reedux.example", "America/Toronto")
INES = Person("Ines Duarte", "ines@duarte.example", "Europe/Lisbon")
GUILD = Person("Design Systems Guild", "guild@lists.dsguild.example")

CONTACTS = (MAYA, JONAS, PRIYA, TOMAS, LENA, DANIEL, AISHA, HENRIK, CHLOE, WEI, SOFIA, BEN)
"""Everyone who should become a contact; no other address in the mailbox should."""

# One row per message: ">" Robin wrote it, "<" the contact did; a subject starts a thread, "" replies in it.
Row = tuple[str, str, str, str]

# fmt: off
LETTERS: dict[Person, tuple[Row, ...]] = {
    MAYA: (  # a close collaborator: a long project, mail every few weeks
        ("<", "2025-07-08 09:07", "Kick-off notes for Northwind", "Thank you for a great start. The notes and the research folder are in the shared drive, interview recordings included, in case they help."),
        (">", "2025-07-08 15:17", "", "Thank you, Maya. I added a page of open questions at the end, and two onboarding teardowns I think your team will enjoy."),
        ("<", "2025-07-24 09:10", "Interview synthesis", "Here is the synthesis from the twelve interviews. Your question about first-week habits turned out to be the key one."),
        (">", "2025-07-24 15:20", "", "This is excellent work. I turned the three big themes into a one-page poster for the office wall; the file is attached."),
        ("<", "2025-09-02 09:16", "Onboarding sketches, first pass", "The first sketches are up. The checklist idea from your poster made it into every version."),
        (">", "2025-09-02 15:26", "", "The checklist works. I recorded a short walkthrough of the sketches for your engineers, so nobody has to decode my arrows."),
        ("<", "2025-09-23 09:19", "Usability test results", "Seven of eight people finished the new flow without help. The report is attached, with clips."),
        (">", "2025-09-23 15:29", "", "Seven of eight is a wonderful result. I wrote up two small fixes for the eighth case; they are in the report's comments."),
        ("<", "2025-10-14 09:22", "Copy for the welcome screens", "Our writer drafted the welcome copy. Could you check it against the flow?"),
        (">", "2025-10-14 15:32", "", "Done, with notes in the margins. I also added a glossary, so the same thing is always called by the same name."),
        ("<", "2025-12-16 09:31", "Thank you for this year", "Before the break: thank you for everything this year. The team keeps quoting your poster."),
        (">", "2025-12-16 15:41", "", "That means a lot, thank you. Enjoy the holidays, and say hello to the team from me."),
        ("<", "2026-01-20 09:34", "Metrics from the first month", "The first month of numbers is in: activation is up by a fifth. The dashboard link is below."),
        (">", "2026-01-20 15:44", "", "Congratulations! I put together a short story of the project for your board, using the dashboard, in case it helps."),
        ("<", "2026-02-10 09:37", "Phase two scope", "Phase two is approved. I wrote a scope note from your list of open questions."),
        (">", "2026-02-10 15:47", "", "The scope note is clear. I added estimates and flagged one item that could wait for phase three."),
        ("<", "2026-03-03 16:20", "Onboarding flow, round two", "The engineers finished the second round of the onboarding flow. Could you take a look at the new screens and tell me what you think? The build link is below."),
    ),
    LENA: (  # introduced by Maya (see intro()); the conversation stopped after Robin's last note
        (">", "2026-02-16 14:05", "Re: Intro: Robin, meet Lena", "Thank you, Maya (moving you to bcc).\n\nLena, lovely to meet you. I have admired Fjord Sans since it came out. I keep a list of studios that look for custom type, and would be glad to share it if it helps."),
        ("<", "2026-02-17 10:30", "", "Thank you, Robin! That list would be a wonderful help. Here is our specimen, in case any of your clients need a face for screens."),
        (">", "2026-02-18 09:45", "", "Here is the list, with a note on whom to write to at each studio. Good luck with the launch!"),
    ),
    TOMAS: (  # met at a conference
        ("<", "2026-02-21 10:15", "Great meeting you at Interaction Week", "Hi Robin,\n\nIt was great to meet you at the accessibility session in Lisbon. Here is the contrast checker I mentioned; it has saved our team hours. If you ever want a second pair of eyes on an audit, I am happy to help."),
        (">", "2026-02-22 18:40", "", "Thank you, Tomás! The checker is great; I have already passed it on to a client. Here is the essay on plain-language forms I promised, which fits what you are doing at Brightpath."),
    ),
    JONAS: (  # a former client: busy in 2025, quiet since October
        ("<", "2025-03-11 08:50", "Website relaunch", "Dear Robin,\n\nWe would like help with the relaunch of our website. A colleague at the chamber of commerce gave me your name."),
        (">", "2025-03-11 13:20", "", "Thank you for thinking of me, Jonas, and please thank your colleague. I attached two case studies close to what you describe, and a short list of questions to start with."),
        (">", "2025-04-02 10:00", "Sitemap draft", "Here is the sitemap draft. I kept the project pages at the top, since that is what your clients ask about first."),
        ("<", "2025-04-03 07:55", "", "It looks right to us. The team liked the project pages especially."),
        ("<", "2025-05-20 16:10", "Photos from the building sites", "Our photographer finished the site photos; the link is below. Use whatever helps."),
        (">", "2025-05-21 09:30", "", "These are wonderful. The timber frame series will carry the home page on its own."),
        (">", "2025-07-01 11:00", "Staging site is up", "The staging site is up with every page. I also wrote a one-page guide for your team on editing the news section."),
        ("<", "2025-07-02 08:15", "", "Thank you! Anna already posted the first news item with your guide."),
        ("<", "2025-09-09 17:05", "We are live", "The new site is live and the first enquiries are coming in through the form. Thank you for all the care."),
        (">", "2025-09-10 08:40", "", "Congratulations to you and the whole team, Jonas. It was a pleasure."),
        (">", "2025-10-14 10:25", "The first month in numbers", "I pulled the numbers from the first month: enquiries through the site are up by a third. Here is a short summary you can share with your partners."),
    ),
    PRIYA: (  # a mentor: a few letters a year
        (">", "2025-02-03 19:10", "Going independent", "Dear Priya,\n\nI finally made the jump and work on my own now. Your talk on choosing clients is the reason I felt ready. Thank you."),
        ("<", "2025-02-04 08:30", "", "Wonderful news, Robin! Write down what each client says they want at the start; it settles most arguments later."),
        ("<", "2025-06-10 07:45", "An essay you might like", "This essay on charging for outcomes made me think of you. No need to reply."),
        (">", "2025-06-11 21:05", "", "Thank you, it was exactly what I needed this month. I passed it on to two friends who are starting out."),
        ("<", "2025-09-22 09:00", "How did the Kessler project land", "How did the building company project land in the end? I have been curious."),
        (">", "2025-09-24 20:15", "", "It launched well. Your advice about writing down what the client said at the start saved me twice. I wrote a short case study and credited you; the link is below."),
    ),
    DANIEL: (  # a peer from the guild; Robin asked a question a week ago and nothing came back
        ("<", "2025-06-05 09:40", "Your onboarding talk", "Hi Robin,\n\nI really enjoyed your talk on onboarding. I wrote up my notes for my team and linked your slides; I hope that is alright."),
        (">", "2025-06-05 12:10", "", "Of course, and thank you for sharing them, Daniel! Your question about empty states gave me an idea for a follow-up piece."),
        (">", "2025-11-12 10:30", "The piece on empty states", "The piece on empty states is out, and it owes a lot to your question. Here is the link; your team gets a mention."),
        ("<", "2025-11-12 14:50", "", "Thank you! I shared it with the whole team."),
        (">", "2026-02-26 10:05", "Co-hosting the April workshop?", "Hi Daniel,\n\nThe guild asked me to run a workshop on onboarding patterns in April, and it would be twice as good with you. Would you co-host it with me? It would mean about two evenings of preparation, and I would handle everything else. If the timing is bad, no worries at all."),
    ),
    AISHA: (  # a client since January (referred by Priya); the invite is in invites()
        ("<", "2026-01-12 10:05", "Design help for the patient app", "Hi Robin,\n\nPriya Raman suggested I get in touch. We are redesigning the app our patients use to book appointments, and she said you are the person to ask."),
        (">", "2026-01-12 16:30", "", "Thank you for reaching out, Aisha, and for Priya's kind words. I would be glad to help. I attached two short case studies and a note on how I usually start."),
        (">", "2026-01-28 11:00", "Research plan", "Here is the research plan, with the interview guide attached."),
        ("<", "2026-01-29 09:20", "", "The team approved it. Our clinicians are keen to take part."),
        ("<", "2026-02-18 15:00", "Interview findings", "The findings deck from the clinician interviews is in the folder."),
        (">", "2026-02-19 10:10", "", "Thank you. I turned the findings into five design principles; they are on the first page of the deck now."),
        ("<", "2026-02-27 08:50", "Roadmap notes", "Ahead of the review, here are the three questions our board keeps asking. Anything you can bring on the first one would be gold."),
        (">", "2026-02-27 12:35", "", "Thanks, Aisha. I will bring two options for the first question and a one-page summary the board can keep."),
    ),
    HENRIK: (  # a corporate client on Outlook; the invite (for tomorrow) and an out-of-office reply are below
        (">", "2025-10-06 13:30", "Proposal for the design system", "Hi Henrik,\n\nThank you for showing me around the Meridian offices. Here is the proposal for the design system, with three options for the first phase."),
        ("<", "2025-10-13 09:05", "", "Thank you for the proposal, Robin. We would like to go ahead with the second option in the new year."),
        (">", "2025-10-13 11:40", "", "Wonderful, thank you, Henrik. I will send a short reading list for your team before we start."),
        ("<", "2026-01-15 10:00", "Design system: budget approved", "The budget is approved. We can start whenever you are ready."),
        (">", "2026-01-15 14:20", "", "Great news. I will begin with an audit of the existing components."),
        (">", "2026-02-12 16:00", "Audit of existing components", "The audit is done: 212 components, of which about 40 do the real work. The report is attached."),
        ("<", "2026-02-13 08:30", "", "Very useful. The team was surprised by how much we can retire."),
        (">", "2026-03-03 10:00", "Materials for the kickoff", "Hi Henrik,\n\nAttached are the component audit and a short reading list for the team, so everyone starts from the same page."),
    ),
    CHLOE: (  # referred by Sofia; a coffee agreed in words took place two days before NOW
        ("<", "2025-11-18 10:40", "Hello from Atelier Martin", "Hi Robin,\n\nSofia Moreau passed on your name; she says you are the person to ask about design systems for small teams. Would you be open to swapping notes by email?"),
        (">", "2025-11-18 17:15", "", "Hello Chloé, and thank you; Sofia is too kind. Gladly. I attached the checklist I use with small teams; it is a good place to start."),
        ("<", "2025-12-09 09:30", "The checklist, six weeks on", "The checklist worked wonders: we cut our button styles from fourteen to three. Thank you!"),
        (">", "2025-12-09 13:00", "", "Fourteen to three is brilliant. May I quote you, anonymously, in a piece I am writing?"),
        ("<", "2025-12-10 08:45", "", "Of course, and with my name if you like."),
        (">", "2025-12-10 09:30", "", "Thank you! I will send you the draft first."),
        (">", "2026-02-25 09:12", "Catching up", "Hi Chloé,\n\nI will be in Paris for a client workshop. Would you have time for a coffee next Tuesday at 3pm? I would love to hear how the studio move went, and I can bring the hiring notes you asked about. Half an hour is plenty, and if the timing is bad, no worries at all."),
        ("<", "2026-02-25 16:40", "", "Tuesday works! See you at Café Lomi. Thank you for bringing the notes."),
        (">", "2026-02-25 17:05", "", "Lovely, see you there!"),
    ),
    SOFIA: (  # a regular: every month or two; the last exchange was two weeks ago
        ("<", "2025-04-08 10:00", "A bakery chain looking for a designer", "A bakery chain I advise needs help with their ordering app. Shall I introduce you?"),
        (">", "2025-04-09 09:00", "", "Yes please, and thank you for thinking of me. I will send you the write-up when we are done, for your files."),
        ("<", "2025-06-17 10:07", "The recording of your workshop", "The recording of your workshop is up. People keep asking me for the slides."),
        (">", "2025-06-18 09:05", "", "Thank you for hosting it! The slides are linked below, free for anyone who asks."),
        ("<", "2025-09-30 10:14", "An illustrator for your list", "You asked for illustrators last spring: Tove Berg has just gone freelance and is wonderful."),
        (">", "2025-10-01 09:10", "", "Thank you! Tove is on my list now, and I already sent her one small job."),
        ("<", "2025-11-17 10:21", "Chloé at Atelier Martin", "I gave your name to Chloé Martin, who runs a small studio in Paris. I hope that is alright."),
        (">", "2025-11-18 09:15", "", "More than alright, thank you. She has already written; I will look after her."),
        ("<", "2026-02-19 10:28", "Notes from the conference", "I missed the conference this year. Did you bring back anything worth reading?"),
        (">", "2026-02-20 09:20", "", "I did: three talks worth your time, with my notes, are below. The one on research operations would suit your clients."),
    ),
    BEN: (  # a former colleague: every couple of months; the last exchange was in January
        ("<", "2025-05-06 09:01", "New job!", "I started at the museum this week. Your portfolio advice helped a lot."),
        (">", "2025-05-06 18:00", "", "Congratulations, Ben! They are lucky. Here is the reading list I promised for your first month."),
        ("<", "2025-07-15 09:07", "Wayfinding book", "Found the wayfinding book you were after in a second-hand shop. Shall I post it?"),
        (">", "2025-07-15 18:04", "", "You are a star. Yes please, and I will send you the exhibition catalogue I have two copies of."),
        ("<", "2025-11-11 09:19", "Accessibility audit template", "Do you still have that audit template from our old team?"),
        (">", "2025-11-11 18:12", "", "I do; here it is, updated for the new guidelines."),
        ("<", "2026-01-08 09:25", "Happy new year", "Happy new year, Robin! The museum app won an award, and your audit template is in the credits."),
        (">", "2026-01-08 18:16", "", "Happy new year, and congratulations to the whole team! Thank you for the credit."),
    ),
    KYLE: (  # a cold pitch, twice, never answered: a person, but not a contact
        ("<", "2026-02-10 08:30", "Grow your studio 3x this quarter", "Hi Robin,\n\nI help studios like yours book more clients with our lead engine. Would you have fifteen minutes for a quick demo?"),
        ("<", "2026-02-24 08:30", "Any thoughts on my last note", "Hi Robin,\n\nBumping this in case it got buried. Would you have fifteen minutes for a quick demo?"),
    ),
}

GUILD_TOPICS = (  # (subject, who started it, who replied)
    ("Documenting component states", WEI, (MARTA, JAMAL)), ("Naming tokens for motion", MARTA, (INES, DANIEL, JAMAL)),
    ("Who owns the design system?", JAMAL, (DANIEL, WEI, INES, MARTA)), ("Libraries across teams", INES, (MARTA, WEI)),
    ("Deprecating components kindly", DANIEL, (JAMAL, INES, WEI)), ("Icons: outline or filled", WEI, (MARTA, DANIEL)),
    ("Contribution guidelines that work", MARTA, (JAMAL, INES, DANIEL, WEI)), ("Measuring adoption", JAMAL, (WEI, MARTA)),
    ("Accessibility checks in CI", INES, (DANIEL, JAMAL, MARTA)), ("Release notes people read", DANIEL, (INES, WEI)),
    ("Tokens for data visualisation", WEI, (JAMAL, MARTA, INES)), ("Docs sites: build or buy", MARTA, (DANIEL, WEI, JAMAL)),
    ("Onboarding new contributors", JAMAL, (INES, MARTA)), ("Versioning a design system", INES, (WEI, DANIEL, JAMAL, MARTA)),
)
GUILD_REPLIES = (
    "Thank you for starting this. Here is what worked for us, with the template attached.",
    "We tried something similar and wrote it up; the link is below in case it helps.",
    "Seconding this. Our approach is in the guild wiki, and I am happy to answer questions here.",
    "Good thread. One thing that helped us: write the decision down next to the component.",
)
ROBIN_ON_THE_LIST = "Wei, your state matrix is the clearest I have seen. I adapted it for a client and wrote up what changed; happy to share the file with anyone here."
NEWSLETTER_TOPICS = ("Onboarding that sticks", "The case for boring software", "Research on a shoestring", "Metrics that matter", "Writing for interfaces", "Design debt", "Small teams, big systems", "Retention by design", "The quiet launch", "Accessibility wins", "Naming things", "Roadmaps without dates")
FORGE_ISSUES = ("Fix contrast on the primary button", "Add dark mode tokens", "Case study page layout", "Bump image optimiser", "Broken link on the about page", "Lazy-load the gallery")
# fmt: on


@dataclass
class _Mail:
    at: datetime
    sender: str
    raw: bytes


@dataclass
class Mailbox:
    """Messages being written; :meth:`render` sorts them by date into mbox bytes."""

    mails: list[_Mail] = field(default_factory=list)
    serial: int = 0

    def add(
        self,
        sender: Person,
        to: Sequence[Person],
        when: str,
        subject: str,
        body: str,
        *,
        cc: Sequence[Person] = (),
        parents: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = 'text/plain; charset="utf-8"',
        encoding: str = "8bit",
    ) -> str:
        """Write one message (``when`` on the sender's wall clock) and return its Message-ID."""
        at = local(sender, when)
        self.serial += 1
        message_id = f"<{at:%Y%m%d%H%M}.{self.serial:04d}@{sender.email.partition('@')[2]}>"
        fields = [
            ("From", sender.header),
            ("To", ", ".join(p.header for p in to)),
            *([("Cc", ", ".join(p.header for p in cc))] if cc else []),
            ("Subject", subject if subject.isascii() else Header(subject, "utf-8").encode()),
            ("Date", format_datetime(at)),
            ("Message-ID", message_id),
            *([("In-Reply-To", parents[-1]), ("References", " ".join(parents))] if parents else []),
            *headers,
            ("MIME-Version", "1.0"),
            ("Content-Type", content_type),
            ("Content-Transfer-Encoding", encoding),
        ]
        head = "".join(f"{name}: {value}\n" for name, value in fields)
        self.mails.append(_Mail(at, sender.email, (head + "\n" + body.rstrip("\n") + "\n").encode()))
        return message_id

    def render(self) -> bytes:
        """The mbox: messages oldest first, each after a ``From `` line (a body line "From " is quoted)."""
        out = bytearray()
        for mail in sorted(self.mails, key=lambda m: (m.at, m.raw)):
            out += f"From {mail.sender} {mail.at.astimezone(UTC):%a %b %e %H:%M:%S %Y}\n".encode()
            out += mail.raw.replace(b"\nFrom ", b"\n>From ") + b"\n"
        return bytes(out)


def local(person: Person, when: str) -> datetime:
    """``when`` ("2026-02-25 09:12") on the wall clock of ``person``, as an aware datetime."""
    return datetime.fromisoformat(when).replace(tzinfo=ZoneInfo(person.zone))


def signed(body: str, person: Person) -> str:
    return f"{body}\n\n{person.first_name}"


def letters(box: Mailbox, contact: Person, rows: Sequence[Row], threads: dict[str, list[str]]) -> None:
    """Write a contact's rows; ``threads`` maps a base subject to its Message-IDs, so replies thread."""
    ids: list[str] = []
    subject = ""
    for direction, when, title, body in rows:
        if title:
            subject = title.removeprefix("Re: ")
            ids = threads.setdefault(subject, [])
        sender, to = (ROBIN, contact) if direction == ">" else (contact, ROBIN)
        shown = f"Re: {subject}" if ids else subject
        ids.append(box.add(sender, [to], when, shown, signed(body, sender), parents=list(ids)))


def people(box: Mailbox) -> None:
    """Every person's letters, Maya's introduction of Lena, and Henrik's out-of-office reply."""
    threads: dict[str, list[str]] = {}
    intro = "Robin, meet Lena Fischer, who designs typefaces for screens and has just opened a studio in Oslo. Lena, Robin designed our new onboarding.\n\nYou both care about readable interfaces, and I think you would enjoy comparing notes. I will let you take it from here."  # fmt: skip
    threads["Intro: Robin, meet Lena"] = [
        box.add(MAYA, [ROBIN, LENA], "2026-02-16 11:20", "Intro: Robin, meet Lena", signed(intro, MAYA))
    ]
    for contact, rows in LETTERS.items():
        letters(box, contact, rows, threads)
    away = "I am out of the office with limited access to email. For urgent matters, please contact the front desk."  # fmt: skip
    auto = [("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")]
    proposal = threads["Proposal for the design system"][:1]
    subject = "Automatic reply: Proposal for the design system"
    box.add(HENRIK, [ROBIN], "2025-10-06 13:31", subject, away, parents=proposal, headers=auto)


def invites(box: Mailbox) -> None:
    """Aisha's Google Calendar invite (ended a day before NOW) and Henrik's Outlook one (for tomorrow)."""
    google_invite(box, AISHA, uid="5u1fq0demo8roadmap@google.com", summary="Roadmap review", start="2026-03-04 09:00", minutes=60, sent="2026-02-26 14:15")  # fmt: skip
    uid = "040000008200E00074C5B7101A82E0080000000060D1E2F3A4B5DC01000000000000000010000000DEMOKICKOFF"
    ics = calendar(HENRIK, uid=uid, summary="Design system kickoff", start="2026-03-06 14:00", minutes=90, sent="2026-03-02 09:40", windows_zone="Romance Standard Time")  # fmt: skip
    encoded = base64.encodebytes(ics.encode()).decode()
    outlook = [
        ("Thread-Topic", "Design system kickoff"),
        ("Content-Class", "urn:content-classes:calendarmessage"),
    ]
    kind = 'text/calendar; charset="utf-8"; method=REQUEST'
    subject = "Design system kickoff"
    box.add(HENRIK, [ROBIN], "2026-03-02 09:40", subject, encoded, headers=outlook, content_type=kind, encoding="base64")  # fmt: skip


def calendar(organizer: Person, *, uid: str, summary: str, start: str, minutes: int, sent: str, windows_zone: str = "") -> str:  # fmt: skip
    """An iTIP REQUEST from ``organizer`` inviting Robin (``start`` on the organizer's wall clock). Google
    writes UTC times; Outlook writes wall-clock times with a Windows zone name (``windows_zone``)."""
    begin = local(organizer, start)
    end, stamp = begin + timedelta(minutes=minutes), local(organizer, sent).astimezone(UTC)
    zone: tuple[str, ...] = ()
    if windows_zone:  # a VTIMEZONE as Exchange writes it for Central European time
        zone = ("BEGIN:VTIMEZONE", f"TZID:{windows_zone}", "BEGIN:STANDARD", "DTSTART:16010101T030000", "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10", "END:STANDARD", "BEGIN:DAYLIGHT", "DTSTART:16010101T020000", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3", "END:DAYLIGHT", "END:VTIMEZONE")  # fmt: skip
        times = (f"DTSTART;TZID={windows_zone}:{begin:%Y%m%dT%H%M%S}", f"DTEND;TZID={windows_zone}:{end:%Y%m%dT%H%M%S}")  # fmt: skip
    else:
        times = (f"DTSTART:{begin.astimezone(UTC):%Y%m%dT%H%M%SZ}", f"DTEND:{end.astimezone(UTC):%Y%m%dT%H%M%SZ}")  # fmt: skip
    lines = (
        "BEGIN:VCALENDAR", "PRODID:-//followupd demo//EN", "VERSION:2.0", "METHOD:REQUEST", *zone, "BEGIN:VEVENT",
        *times, f"DTSTAMP:{stamp:%Y%m%dT%H%M%SZ}", f"ORGANIZER;CN={organizer.name}:mailto:{organizer.email}", f"UID:{uid}",
        f"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN={ROBIN.name}:mailto:{ROBIN.email}",
        f"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN={organizer.name}:mailto:{organizer.email}",
        "SEQUENCE:0", "STATUS:CONFIRMED", f"SUMMARY:{summary}", "TRANSP:OPAQUE", "END:VEVENT", "END:VCALENDAR",
    )  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


def google_invite(box: Mailbox, organizer: Person, *, uid: str, summary: str, start: str, minutes: int, sent: str) -> None:  # fmt: skip
    """Google-style: multipart/mixed holding multipart/alternative (text, html, text/calendar) and invite.ics."""
    ics = calendar(organizer, uid=uid, summary=summary, start=start, minutes=minutes, sent=sent)
    begin = local(organizer, start)
    when = f"{begin:%A %-d %B %Y, %H:%M} ({organizer.zone}), {minutes} minutes"
    text = f"{organizer.name} has invited you to: {summary}\nWhen: {when}\n\nJoining details are in the invitation."
    mixed, alt = f"0000000000{uid[:10]}m", f"0000000000{uid[:10]}a"
    attachment = base64.encodebytes(ics.encode()).decode()
    body = (
        f'--{mixed}\nContent-Type: multipart/alternative; boundary="{alt}"\n\n'
        f'--{alt}\nContent-Type: text/plain; charset="UTF-8"\n\n{text}\n\n'
        f'--{alt}\nContent-Type: text/html; charset="UTF-8"\n\n<p>{text}</p>\n\n'
        f'--{alt}\nContent-Type: text/calendar; charset="UTF-8"; method=REQUEST\n\n{ics}\n--{alt}--\n\n'
        f'--{mixed}\nContent-Type: application/ics; name="invite.ics"\n'
        f'Content-Disposition: attachment; filename="invite.ics"\nContent-Transfer-Encoding: base64\n\n'
        f"{attachment}\n--{mixed}--"
    )
    subject = f"Invitation: {summary} @ {begin:%a %b %-d, %Y %-I%p}".replace("AM", "am").replace("PM", "pm")
    headers = [
        ("Sender", "Google Calendar <calendar-notification@google.com>"),
        ("Reply-To", organizer.header),
    ]
    kind = f'multipart/mixed; boundary="{mixed}"'
    box.add(organizer, [ROBIN], sent, subject, body, headers=headers, content_type=kind, encoding="7bit")


def every(first: str, step: timedelta, count: int) -> list[str]:
    """Up to ``count`` UTC times from ``first``, ``step`` apart, before NOW."""
    start = datetime.fromisoformat(first).replace(tzinfo=UTC)
    times = (start + step * n for n in range(count))
    return [f"{at:%Y-%m-%d %H:%M}" for at in times if at < NOW]


def robots(box: Mailbox) -> None:
    """Newsletters, notifications, a bank, receipts and ticketing: mail that must never make a contact."""
    letter = Person("The Product Letter", "hello@productletter.example", "UTC")
    bulk = [("List-Unsubscribe", "<https://productletter.example/u/robin>"), ("Precedence", "bulk")]
    for n, when in enumerate(every("2025-03-06 07:00", timedelta(weeks=1), 53)):
        topic = NEWSLETTER_TOPICS[n % len(NEWSLETTER_TOPICS)]
        text = f"This week: {topic.lower()}.\n\nRead it online: https://productletter.example/{112 + n}\nUnsubscribe: https://productletter.example/u/robin"  # fmt: skip
        box.add(letter, [ROBIN], when, f"#{112 + n}: {topic}", text, headers=bulk)
    news = Person("Type & Pixel", "news@typeandpixel.example", "UTC")
    listed = [("List-Id", "Type & Pixel <news.typeandpixel.example>"), ("List-Unsubscribe", "<https://typeandpixel.example/leave>")]  # fmt: skip
    for n, when in enumerate(every("2025-03-15 12:00", timedelta(days=28), 13)):
        box.add(news, [ROBIN], when, f"Type & Pixel, issue {40 + n}", "New faces, one interview, and a tool worth knowing.", headers=listed)  # fmt: skip
    forge = [("List-Id", "valeworks/portfolio <portfolio.valeworks.forge.example>"), ("List-Unsubscribe", "<mailto:unsub@reply.forge.example>")]  # fmt: skip
    for n, when in enumerate(every("2025-09-01 13:00", timedelta(days=3, hours=7), 48)):
        author = ("Mira Patel", "forge-bot", "Ola Nilsen")[n % 3]
        issue, title = 40 + n // 4, FORGE_ISSUES[(n // 4) % len(FORGE_ISSUES)]
        notifier = Person(author, "notifications@forge.example", "UTC")
        box.add(notifier, [ROBIN], when, f"[valeworks/portfolio] {title} (#{issue})", f"{author} commented on #{issue}.\n\nReply to this email directly or view it on Forge.", headers=forge)  # fmt: skip
    bank = Person("Northbank", "no-reply@northbank.example", "UTC")
    for n, when in enumerate(every("2025-03-03 06:00", timedelta(days=28), 13)):
        box.add(bank, [ROBIN], when, "Your statement is ready", f"Statement {n + 1} is ready in online banking.", headers=[("Auto-Submitted", "auto-generated")])  # fmt: skip
    shop = Person("Payflow Receipts", "receipts@payflow.example", "UTC")
    for n, when in enumerate(every("2025-04-09 15:30", timedelta(days=31), 11)):
        box.add(shop, [ROBIN], when, f"Your receipt from Valeworks hosting (#{3100 + n})", "Thank you for your payment. Receipt attached.", headers=[("Return-Path", "<>")])  # fmt: skip
    tickets = Person("Interaction Week", "tickets@interactionweek.example", "UTC")
    for when, subject in (("2026-01-14 12:00", "Your ticket for Interaction Week Lisbon"), ("2026-02-16 08:00", "Your badge and the programme")):  # fmt: skip
        box.add(tickets, [ROBIN], when, subject, "See you in Lisbon! Manage your booking online.", headers=[("Auto-Submitted", "auto-generated")])  # fmt: skip


def mailing_list(box: Mailbox) -> None:
    """The Design Systems Guild: posts from people, and one reply by Robin, To the list and Cc Wei."""
    listed = [("List-Id", "Design Systems Guild <guild.lists.dsguild.example>"), ("List-Post", "<mailto:guild@lists.dsguild.example>"), ("Precedence", "list")]  # fmt: skip
    for n, (subject, author, others) in enumerate(GUILD_TOPICS):
        start = datetime(2025, 9, 30, 8, 0) + timedelta(days=11 * n)
        opening = f"Hello all,\n\nHow do your teams handle this: {subject.lower().rstrip('?')}? What I have so far is in the guild wiki."  # fmt: skip
        turns = [(author, start, opening)]
        turns += [
            (p, start + timedelta(hours=5 * (i + 1)), GUILD_REPLIES[(n + i) % 4])
            for i, p in enumerate(others)
        ]
        ids: list[str] = []
        for index, (sender, at, body) in enumerate(turns):
            title = f"[guild] {'Re: ' if index else ''}{subject}"
            ids.append(box.add(sender, [GUILD], f"{at:%Y-%m-%d %H:%M}", title, signed(body, sender), parents=list(ids), headers=listed))  # fmt: skip
            if n == 0 and index == 1:
                text = signed(ROBIN_ON_THE_LIST, ROBIN)
                ids.append(box.add(ROBIN, [GUILD], "2025-10-02 10:00", f"[guild] Re: {subject}", text, cc=[WEI], parents=list(ids)))  # fmt: skip


def build() -> bytes:
    """The whole demo mailbox as mbox bytes (the same bytes every time)."""
    box = Mailbox()
    for part in (people, invites, robots, mailing_list):
        part(box)
    return box.render()


def main() -> None:
    """Write :data:`MBOX`; run ``python -m followupd.demo.sample`` after changing this file."""
    data = build()
    MBOX.write_bytes(data)
    count = data.count(b"\nFrom ") + 1
    print(f"wrote {MBOX} ({len(data)} bytes, {count} messages)")


if __name__ == "__main__":
    main()

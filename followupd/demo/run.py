"""The demo pipeline: the real scan, plan, review and outbox transport, run on the shipped sample mailbox.

Everything happens in one directory of its own (a copy of the mailbox, a config, a SQLite database and an
outbox) with the clock fixed at :data:`followupd.demo.sample.NOW`, so every run shows the same thing. Nothing
of the user's is read or written: no config file of theirs, no XDG directory, no network.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from followupd import config as config_mod
from followupd.config import Config
from followupd.core.lint import DEFAULT_SLOT_PATTERN
from followupd.demo import sample
from followupd.engine.plan import PlanResult, plan_once
from followupd.engine.scan import scan_once
from followupd.errors import FollowupdError, UsageError
from followupd.store import contacts_repo, drafts_repo
from followupd.store.contacts_repo import ContactView, ExcludedView
from followupd.store.db import Database
from followupd.store.drafts_repo import DraftView
from followupd.store.models import Meeting, MeetingAttendee, Message

ACCOUNT = "demo"
# What Robin would type into the offer slot at review, for the drafts the demo approves and sends.
OFFERS = {
    sample.AISHA.email: "the one-page summary of the two options, ready for your board:"
    " https://valeworks.example/lumen/options",
    sample.JONAS.email: "a short guide on keeping a project gallery fresh after launch, with examples from"
    " three other builders: https://valeworks.example/notes/galleries",
}
GENERIC_OFFER = "a short reading list on the topic we last wrote about, with my notes"
SEND_FIRST = (sample.AISHA.email, sample.JONAS.email)  # the drafts the demo approves, when they exist
_SLOT = re.compile(DEFAULT_SLOT_PATTERN, re.IGNORECASE)

CONFIG_TEMPLATE = """\
# followupd demo: a sample mailbox, its database and an outbox, all in this directory.
# Written by `followupd demo`; see config/followupd.example.toml for every option.

[database]
url = {url}

[[accounts]]
name = "{account}"
email = "{email}"
display_name = "{name}"

[accounts.mbox]
path = {mbox}

[scan]
meetings = true

[cadence]
max_new_per_day = 20
max_new_per_week = 60

[[cadence.rules]]
tier = "close"
domain = "northwind-labs.example"

[send]
transport = "outbox"               # nothing is ever sent: approved drafts are written to outbox_dir
outbox_dir = {outbox}
timezone = "Europe/Berlin"
"""


@dataclass(frozen=True)
class MeetingSeen:
    """A meeting the scan recorded: what, when, learned how (invite/text), and with whom."""

    subject: str
    start_at: datetime
    end_at: datetime
    source: str
    status: str
    people: tuple[str, ...]


@dataclass(frozen=True)
class Sent:
    """A draft the demo approved and handed to the outbox transport."""

    draft_id: int
    to: str
    reason: str
    state: str
    detail: str
    path: Path | None


@dataclass
class DemoResult:
    """Everything the demo did, for the command to show."""

    directory: Path
    config_path: Path
    now: datetime
    messages: int = 0
    contacts: list[ContactView] = field(default_factory=list)
    excluded: list[ExcludedView] = field(default_factory=list)
    meetings: list[MeetingSeen] = field(default_factory=list)
    plan: PlanResult = field(default_factory=PlanResult)
    sent: list[Sent] = field(default_factory=list)
    drafts: list[DraftView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def make_directory(requested: Path | None) -> Path:
    """``requested`` (created if missing, refused unless empty) or a new private temporary directory."""
    if requested is None:
        return Path(tempfile.mkdtemp(prefix="followupd-demo-"))
    path = requested.expanduser().resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(
            f"{path} exists and is not an empty directory; the demo only writes into a new one",
            hint="Pass --dir with a new path, or leave it out to use a temporary directory.",
        )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def prepare(directory: Path) -> Path:
    """Copy the sample mailbox into ``directory`` and write the demo's config there; returns its path."""
    directory = directory.resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mbox = directory / "mailbox.mbox"
    shutil.copyfile(sample.MBOX, mbox)
    mbox.chmod(0o600)
    config_path = directory / "config.toml"
    text = CONFIG_TEMPLATE.format(
        url=_toml(f"sqlite:///{directory / 'followupd.db'}"),
        account=ACCOUNT,
        email=sample.ROBIN.email,
        name=sample.ROBIN.name,
        mbox=_toml(str(mbox)),
        outbox=_toml(str(directory / "outbox")),
    )
    config_path.write_text(text, encoding="utf-8")
    config_path.chmod(0o600)
    return config_path


def run(directory: Path, *, now: datetime = sample.NOW, send: bool = True) -> DemoResult:
    """Prepare ``directory`` and run scan, plan and (with ``send``) review-and-send on it at ``now``."""
    config_path = prepare(directory)
    # An empty environment: the demo's config names every path, so nothing falls back to the user's XDG dirs.
    config = config_mod.load(config_path, env={})
    result = DemoResult(config_path.parent, config_path, now)
    db = Database(config.database.url)
    try:
        db.upgrade()
        _scan(db, config, result)
        result.plan = plan_once(db, config, now=now)
        if send:
            result.sent = _review_and_send(db, config, result)
        with db.read() as session:
            result.drafts = drafts_repo.list_drafts(session)
    finally:
        db.dispose()
    return result


def _scan(db: Database, config: Config, result: DemoResult) -> None:
    report = scan_once(db, config, now=result.now)
    for name, error in report.errors.items():
        raise FollowupdError(f"the demo scan of account {name} failed: {error}")
    with db.read() as session:
        result.messages = session.scalar(select(func.count()).select_from(Message)) or 0
        result.contacts = contacts_repo.list_contacts(session)
        result.excluded = contacts_repo.list_excluded(session)
        result.meetings = _meetings(session)
    if not result.meetings:
        result.notes.append(
            "The scan recorded no meetings (meeting detection is switched off or missing from this build),"
            " so there are no after_meeting drafts."
        )


def _meetings(session: Session) -> list[MeetingSeen]:
    people: dict[int, list[str]] = {}
    for meeting_id, email in session.execute(select(MeetingAttendee.meeting_id, MeetingAttendee.email)):
        if email != sample.ROBIN.email:
            people.setdefault(meeting_id, []).append(email)
    rows = session.scalars(select(Meeting).order_by(Meeting.start_at)).all()
    return [
        MeetingSeen(
            m.subject,
            _aware(m.start_at),
            _aware(m.end_at),
            m.source,
            m.status,
            tuple(people.get(m.id, ())),
        )
        for m in rows
    ]


def _review_and_send(db: Database, config: Config, result: DemoResult) -> list[Sent]:
    """What a user does at review for two drafts: fill the offer slot, approve; then the sender runs."""
    from followupd.engine import review

    with db.read() as session:
        queued = drafts_repo.list_drafts(session, states=["queued"])
    chosen = [v for email in SEND_FIRST for v in queued if v.contact == email][:2] or queued[:1]
    rules = config.lint.core_rules()
    for view in chosen:
        offer = OFFERS.get(view.contact, GENERIC_OFFER)
        text = _SLOT.sub(offer, review.editable_text(view))
        edited = review.save_edit(db, view.id, text, version=view.version, now=result.now, rules=rules)
        review.approve(db, view.id, now=result.now, version=edited.version)
    try:
        from followupd.engine.send import send_due
    except ImportError:  # the sender is optional for the demo: the drafts stay approved
        result.notes.append("This build has no sender yet: the approved drafts stay approved.")
        return []
    report = send_due(db, config, now=result.now)
    reasons = {v.id: v.reason for v in chosen}
    directory = config.send.outbox_dir
    return [
        Sent(
            d.draft_id,
            d.to,
            reasons.get(d.draft_id, ""),
            d.state,
            d.reason,
            _outbox_file(directory, d.draft_id),
        )
        for d in report.drafts
    ]


def _outbox_file(directory: Path | None, draft_id: int) -> Path | None:
    from followupd.mail import outbox

    return outbox.find(directory, draft_id) if directory is not None else None


def _aware(value: datetime) -> datetime:
    from followupd.engine.contact_state import aware

    result = aware(value)
    assert result is not None
    return result


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(text, ensure_ascii=False)

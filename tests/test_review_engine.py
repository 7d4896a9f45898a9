"""The review transitions (engine/review.py) on a scanned and planned world: every state change, the
compare-and-set against drafts that changed meanwhile, edits (valid, invalid, kept), waking snoozed drafts,
and reading times in words.

Also the shared world for the CLI tests: :func:`world_template` scans and plans the small Maildir of
tests/test_plan_engine.py once per session and backend; :func:`copy_world` gives each test its own copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update

from followupd import config as config_mod
from followupd.config import Config
from followupd.core.lint import LintRules
from followupd.engine import review
from followupd.engine.plan import plan_once
from followupd.engine.scan import scan_once
from followupd.errors import ConflictError, NotFoundError, UsageError
from followupd.store import drafts_repo
from followupd.store.db import Database
from followupd.store.models import Draft
from tests.servers.plugin import DatabaseTemplates, DatabaseUrlFactory
from tests.test_plan_engine import ADA, BOB, CAROL, EVE, NOW, Mailbox, build_world, open_world, write_config

LATER = NOW + timedelta(hours=1)
FILLED = "Subject: A talk you will like\n\nHi Ada,\n\nHere is the talk I mentioned: an intro to Grace.\n"


@dataclass(frozen=True)
class WorldTemplate:
    """The scanned and planned world, built once per session and backend: its Maildir and database."""

    maildir: Path
    database: str  # a reference for database_url_factory(name, template=...)


def world_template(
    backend: str, templates: DatabaseTemplates, tmp_path_factory: pytest.TempPathFactory
) -> WorldTemplate:
    """Scan the test Maildir and plan at NOW (queued drafts for Ada, Bob, Carol and Eve), once per backend."""
    root = tmp_path_factory.getbasetemp() / f"planned-world-{backend}"

    def build(url: str) -> None:
        root.mkdir()
        build_world(Mailbox(root / "Maildir"))
        db, config = open_world(root, url)
        try:
            plan_once(db, config, now=NOW)
        finally:
            db.dispose()

    return WorldTemplate(root / "Maildir", templates.get("planned-world", backend, build))


def copy_world(
    template: WorldTemplate, tmp_path: Path, make_url: DatabaseUrlFactory
) -> tuple[Path, Database, Config]:
    """A private copy of the template world: (config file, open database, config)."""
    config_path = write_config(tmp_path, make_url("followupd", template=template.database))
    shutil.copytree(template.maildir, tmp_path / "Maildir")
    config = config_mod.load(config_path)
    return config_path, Database(config.database.url), config


def draft_ids(db: Database) -> dict[str, int]:
    """contact address -> id of that contact's newest draft."""
    with db.read() as session:
        return {v.contact: v.id for v in drafts_repo.list_drafts(session)}


def draft(db: Database, draft_id: int) -> drafts_repo.DraftView:
    with db.read() as session:
        return drafts_repo.get_draft(session, draft_id)


@pytest.fixture
def template(
    db_backend: str, database_templates: DatabaseTemplates, tmp_path_factory: pytest.TempPathFactory
) -> WorldTemplate:
    return world_template(db_backend, database_templates, tmp_path_factory)


@pytest.fixture
def world(
    template: WorldTemplate, tmp_path: Path, database_url_factory: DatabaseUrlFactory
) -> Iterator[tuple[Database, Config]]:
    _path, db, config = copy_world(template, tmp_path, database_url_factory)
    yield db, config
    db.dispose()


def test_approve_bumps_the_version_and_is_idempotent(world: tuple[Database, Config]) -> None:
    db, _ = world
    ada = draft(db, draft_ids(db)[ADA])
    done = review.approve(db, ada.id, now=LATER, version=ada.version)
    assert (done.state, done.version, done.changed) == ("approved", ada.version + 1, True)
    after = draft(db, ada.id)
    assert (after.state, after.version, after.updated_at) == ("approved", ada.version + 1, LATER)
    again = review.approve(db, ada.id, now=LATER)
    assert (again.changed, again.version) == (False, ada.version + 1)


def test_skip_snooze_unsnooze_send_now(world: tuple[Database, Config]) -> None:
    db, _ = world
    ids = draft_ids(db)
    assert review.skip(db, ids[BOB], now=LATER, reason="saw him last week").state == "skipped"
    assert draft(db, ids[BOB]).note == "skipped: saw him last week"
    until = NOW + timedelta(days=7)
    assert review.snooze(db, ids[EVE], until, now=LATER).state == "snoozed"
    assert draft(db, ids[EVE]).snoozed_until == until
    assert review.unsnooze(db, ids[EVE], now=LATER).state == "queued"
    assert draft(db, ids[EVE]).snoozed_until is None
    assert review.unsnooze(db, ids[EVE], now=LATER).changed is False
    sent_now = review.send_now(db, ids[CAROL], now=LATER)
    carol = draft(db, ids[CAROL])
    assert (sent_now.state, carol.state, carol.scheduled_at) == ("approved", "approved", LATER)
    with pytest.raises(UsageError, match="not in the future"):
        review.snooze(db, ids[ADA], NOW, now=LATER)
    with pytest.raises(NotFoundError):
        review.approve(db, 999, now=LATER)


def test_a_snoozed_approved_draft_needs_review_again_when_it_wakes(world: tuple[Database, Config]) -> None:
    db, _ = world
    ada = draft_ids(db)[ADA]
    review.approve(db, ada, now=LATER)
    review.snooze(db, ada, NOW + timedelta(days=2), now=LATER)
    assert review.wake_due(db, NOW + timedelta(days=1)) == []
    assert draft(db, ada).state == "snoozed"
    before = draft(db, ada).version
    assert review.wake_due(db, NOW + timedelta(days=2)) == [ada]
    woken = draft(db, ada)
    assert (woken.state, woken.snoozed_until, woken.version) == ("queued", None, before + 1)


def test_approving_what_the_planner_superseded_is_a_conflict(world: tuple[Database, Config]) -> None:
    db, config = world
    ada = draft(db, draft_ids(db)[ADA])  # the user looks at Ada's draft...
    mail = Mailbox(Path(config.accounts[0].maildir.path))  # type: ignore[union-attr]
    mail.count = 100  # after the template's messages
    mail.inbound(ADA, "Re: Lunch", NOW + timedelta(minutes=30), "a9@example.com", "a2@example.org")
    assert not scan_once(db, config, now=LATER).errors  # ...while the daemon sees her new mail
    assert [s.id for s in plan_once(db, config, now=LATER).superseded_drafts] == [ada.id]
    with pytest.raises(ConflictError) as info:
        review.approve(db, ada.id, now=LATER, version=ada.version)
    message = str(info.value)
    assert (
        f"draft {ada.id} was superseded at {LATER:%Y-%m-%d %H:%M} UTC (reply owed: they wrote last)"
        in message
    )
    assert "; nothing was done" in message
    assert info.value.exit_code == 7
    assert draft(db, ada.id).state == "superseded"
    for action in (review.skip, review.unsnooze, review.send_now):
        with pytest.raises(ConflictError):
            action(db, ada.id, now=LATER)


def test_a_sent_draft_and_a_changed_version_are_conflicts(world: tuple[Database, Config]) -> None:
    db, _ = world
    ids = draft_ids(db)
    with db.write() as session:
        session.execute(update(Draft).where(Draft.id == ids[BOB]).values(state="sent", updated_at=LATER))
    with pytest.raises(ConflictError, match=r"was sent at .* \(it already went out\); nothing was done"):
        review.approve(db, ids[BOB], now=LATER)
    eve = draft(db, ids[EVE])
    review.save_edit(db, eve.id, FILLED, version=eve.version, now=LATER, rules=LintRules())
    with pytest.raises(ConflictError, match=r"changed elsewhere at .* \(it is queued now\)"):
        review.approve(db, eve.id, now=LATER, version=eve.version)  # approving what was no longer seen
    assert draft(db, eve.id).state == "queued"


def test_the_update_itself_is_compare_and_set(world: tuple[Database, Config]) -> None:
    db, _ = world
    ada = draft_ids(db)[ADA]
    with db.write() as session:
        row = session.get(Draft, ada)
        assert row is not None
        # Another writer (possible on PostgreSQL, where there is no BEGIN IMMEDIATE) gets in between.
        session.execute(text("UPDATE drafts SET version = version + 1 WHERE id = :id"), {"id": ada})
        with pytest.raises(ConflictError, match=r"changed elsewhere .*\(it is queued now\)"):
            review._cas(session, row, review.REVIEWABLE, state="approved")
    assert (draft(db, ada).state, draft(db, ada).version) == ("queued", 2)


def test_a_valid_edit_is_saved_and_linted_again(world: tuple[Database, Config]) -> None:
    db, _ = world
    ada = draft(db, draft_ids(db)[ADA])
    assert {item["code"] for item in ada.lint} == {"empty-slot"}
    outcome = review.save_edit(db, ada.id, FILLED, version=ada.version, now=LATER, rules=LintRules())
    assert outcome.saved and outcome.lint == () and outcome.version == ada.version + 1
    after = draft(db, ada.id)
    assert (after.subject, after.lint, after.state) == ("A talk you will like", (), "queued")
    assert after.body == "Hi Ada,\n\nHere is the talk I mentioned: an intro to Grace.\n"
    pitch = FILLED.replace("an intro to Grace", "a demo of our product and our pricing")
    review.save_edit(db, ada.id, pitch, version=after.version, now=LATER, rules=LintRules())
    assert {item["code"] for item in draft(db, ada.id).lint} == {"pitch"}


def test_an_invalid_edit_is_kept_never_lost(world: tuple[Database, Config]) -> None:
    db, _ = world
    ada = draft(db, draft_ids(db)[ADA])
    bad = "Subject: Hello Ada\nBcc: everyone@example.com\n\nHi\n"
    outcome = review.save_edit(db, ada.id, bad, version=ada.version, now=LATER, rules=LintRules())
    assert not outcome.saved and "other headers cannot be set here" in outcome.problems[0]
    kept = draft(db, ada.id)
    assert (kept.invalid_edit, kept.subject, kept.body) == (bad, ada.subject, ada.body)
    assert review.editable_text(kept) == bad  # re-opened next time
    with pytest.raises(UsageError, match="edit that was not saved"):
        review.approve(db, ada.id, now=LATER)
    with pytest.raises(UsageError):
        review.send_now(db, ada.id, now=LATER)
    assert review.discard_edit(db, ada.id, now=LATER).changed
    assert draft(db, ada.id).invalid_edit is None
    assert review.approve(db, ada.id, now=LATER).state == "approved"


@pytest.mark.parametrize(
    ("text", "subject", "body", "problem"),
    [
        ("Subject: Hi Ada\n\nHello.\n", "Hi Ada", "Hello.\n", None),
        ("subject:   Spaced   out  \r\n\r\n\r\nBody\r\nline 2", "Spaced out", "Body\nline 2\n", None),
        ("Hello.\n", "", "\n", 'the first line must be "Subject: ..."'),
        ("Subject:\n\nHello.\n", "", "Hello.\n", "the subject is empty"),
        ("Subject: Hi\nReply-To: x@evil.example\n\nHello.\n", "Hi", "Hello.\n", "only the Subject line"),
        ("Subject: =?UTF-8?Q?Hi=0ABcc:_x@evil?=\n\nHello.\n", None, "Hello.\n", "encoded word"),
        ("Subject: Hi\x0bthere\n\nHello.\n", None, "Hello.\n", "control characters"),
        ("Subject: " + "x" * 300 + "\n\nHello.\n", None, "Hello.\n", "characters long"),
        ("Subject: Hi\n\n   \n\n", "Hi", "   \n", "the message body is empty"),
        ("Subject: Hi\n", "Hi", "\n", "the message body is empty"),
    ],
)
def test_parse_edit(text: str, subject: str | None, body: str, problem: str | None) -> None:
    got_subject, got_body, problems = review.parse_edit(text)
    if subject is not None:
        assert got_subject == subject
    assert got_body == body
    if problem is None:
        assert problems == ()
    else:
        assert any(problem in p for p in problems), problems


MONDAY = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("words", "zone", "expected"),
    [
        ("next monday", "UTC", datetime(2024, 4, 8, 0, 0, tzinfo=UTC)),
        ("in 2 weeks", "UTC", datetime(2024, 4, 15, 9, 0, tzinfo=UTC)),
        ("tomorrow 9am", "UTC", datetime(2024, 4, 2, 9, 0, tzinfo=UTC)),
        ("2026-12-01", "UTC", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),
        ("2026-12-01", "Europe/Berlin", datetime(2026, 11, 30, 23, 0, tzinfo=UTC)),
        ("2024-04-02 08:00", "UTC", datetime(2024, 4, 2, 8, 0, tzinfo=UTC)),
        ("2024-04-02T08:00:00+02:00", "UTC", datetime(2024, 4, 2, 6, 0, tzinfo=UTC)),
    ],
)
def test_parse_when(words: str, zone: str, expected: datetime) -> None:
    assert review.parse_when(words, now=MONDAY, zone=ZoneInfo(zone)) == expected


@pytest.mark.parametrize("words", ["", "whenever you like", "the 45th of never"])
def test_parse_when_refuses_what_it_cannot_read(words: str) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        review.parse_when(words, now=MONDAY, zone=UTC)


def test_wake_snoozed_is_a_repository_function_for_the_daemon(world: tuple[Database, Config]) -> None:
    db, _ = world
    ids = draft_ids(db)
    for who, days in ((BOB, 1), (EVE, 3)):
        review.snooze(db, ids[who], NOW + timedelta(days=days), now=NOW)
    with db.write() as session:
        assert drafts_repo.wake_snoozed(session, NOW + timedelta(days=2)) == [ids[BOB]]
    with db.read() as session:
        states = {i: s for i, s in session.execute(select(Draft.id, Draft.state))}
    assert (states[ids[BOB]], states[ids[EVE]]) == ("queued", "snoozed")


def test_plan_wakes_snoozed_drafts_whose_time_has_come(world: tuple[Database, Config]) -> None:
    """The daemon never runs `drafts list`: planning must wake snoozed drafts whose time has come."""
    db, config = world
    eve = draft_ids(db)[EVE]
    review.snooze(db, eve, NOW + timedelta(days=1), now=LATER)
    plan_once(db, config, now=NOW + timedelta(hours=2))
    assert draft(db, eve).state == "snoozed"
    plan_once(db, config, now=NOW + timedelta(days=2))
    assert draft(db, eve).state == "queued"

"""``followupd drafts ...`` through click's CliRunner and as a real subprocess: listing (fast path and
SQLAlchemy path), showing, every state change, edits with a scripted editor, conflicts with what another
session did meanwhile (exit 7), and a concurrent writer hammering the database while commands run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from followupd.cli import cli, table
from followupd.cli.drafts_cmd import STATES
from followupd.config import Config
from followupd.errors import FollowupdError
from followupd.store import drafts_repo
from followupd.store.db import Database
from followupd.store.migrate import head_revision
from followupd.store.models import Account, Draft, DraftState
from tests.servers.plugin import DatabaseTemplates, DatabaseUrlFactory
from tests.test_plan_engine import ADA, BOB, CAROL, EVE, NOW
from tests.test_review_engine import WorldTemplate, copy_world, draft, draft_ids, world_template

NOW_TEXT = NOW.isoformat()
SUPERSEDED_NOTE = "superseded: reply owed: they wrote last"

EDITOR_SCRIPT = r'''
"""A scripted $EDITOR for the tests: the mode is the first argument, the file the last."""
import os, re, sys
from pathlib import Path

mode, path = sys.argv[1], Path(sys.argv[-1])
text = path.read_text()
if os.environ.get("FU_SEEN"):
    with open(os.environ["FU_SEEN"], "a") as seen:
        seen.write(text + "\n=====\n")
if mode == "fill":
    text = re.sub(r"\[what I can offer:[^\]]*\]", "an intro to Grace, who ran the same migration", text)
elif mode == "inject":
    text = text.replace("\n\n", "\nBcc: everyone@example.com\n\n", 1)
elif mode == "fix":
    text = text.replace("Bcc: everyone@example.com\n", "")
    text = re.sub(r"\[what I can offer:[^\]]*\]", "an intro to Grace", text)
elif mode == "supersede":
    # While the user edits, the daemon sees new mail and supersedes the draft.
    import sqlalchemy

    engine = sqlalchemy.create_engine(os.environ["FU_DB"])
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "UPDATE drafts SET state = 'superseded', version = version + 1,"
                " note = 'superseded: reply owed: they wrote last' WHERE id = :id"
            ),
            {"id": int(os.environ["FU_DRAFT"])},
        )
    engine.dispose()
    text = text.replace("Hi", "Hello", 1)
path.write_text(text)
'''


@dataclass
class Ran:
    """A command's exit code (what ``followupd`` would exit with), stdout and error text."""

    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


def make_runner(config_path: Path) -> Callable[..., Ran]:
    """Run ``followupd --config ... --now NOW ARGS`` in-process; FollowupdErrors become their exit codes,
    as ``followupd.cli.main`` does."""

    def run(*args: str, env: dict[str, str] | None = None, now: str = NOW_TEXT) -> Ran:
        result = CliRunner().invoke(
            cli,
            ["--config", str(config_path), "--now", now, *args],
            env={"FOLLOWUPD_CONFIG": "", "VISUAL": "", **(env or {})},
        )
        exc = result.exception
        if isinstance(exc, FollowupdError):
            return Ran(exc.exit_code, result.stdout, str(exc))
        if exc is not None and not isinstance(exc, SystemExit):
            raise exc
        return Ran(result.exit_code, result.stdout, result.stderr)

    return run


def editor(tmp_path: Path, mode: str) -> str:
    """An $EDITOR command line running the scripted editor in ``mode``."""
    script = tmp_path / "editor.py"
    if not script.exists():
        script.write_text(EDITOR_SCRIPT)
    return f"{sys.executable} {script} {mode}"


def subprocess_run(config_path: Path, *args: str, now: str = NOW_TEXT) -> Ran:
    """``python -m followupd --config ... --now NOW ARGS`` as a real process, output piped."""
    env = {k: v for k, v in os.environ.items() if k != "FOLLOWUPD_CONFIG"}
    argv = [sys.executable, "-m", "followupd", "--config", str(config_path), "--now", now, *args]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=60)
    return Ran(done.returncode, done.stdout, done.stderr)


def supersede(db: Database, draft_id: int) -> None:
    """What the planner does when the contact writes: compare-and-set to SUPERSEDED, version bumped."""
    with db.write() as session:
        session.execute(
            update(Draft)
            .where(Draft.id == draft_id)
            .values(state="superseded", note=SUPERSEDED_NOTE, version=Draft.version + 1, updated_at=NOW)
        )


@pytest.fixture
def template(
    db_backend: str, database_templates: DatabaseTemplates, tmp_path_factory: pytest.TempPathFactory
) -> WorldTemplate:
    return world_template(db_backend, database_templates, tmp_path_factory)


@dataclass
class World:
    config_path: Path
    db: Database
    config: Config
    run: Callable[..., Ran]
    ids: dict[str, int]


@pytest.fixture
def world(
    template: WorldTemplate, tmp_path: Path, database_url_factory: DatabaseUrlFactory
) -> Iterator[World]:
    config_path, db, config = copy_world(template, tmp_path, database_url_factory)
    yield World(config_path, db, config, make_runner(config_path), draft_ids(db))
    db.dispose()


JSON_FIELDS = [
    "id", "contact", "to", "subject", "body", "reason", "state", "scheduled_at", "planned_at", "why", "lint",
    "message_id", "in_reply_to", "last_error", "note", "name", "from_addr", "references", "snoozed_until",
    "updated_at", "sent_at", "version", "invalid_edit",
]  # fmt: skip


def test_states_are_the_models_states() -> None:
    assert tuple(s.value for s in DraftState) == STATES


def test_list_json_is_stable(world: World) -> None:
    rows = world.run("drafts", "list", "--json").json()
    assert isinstance(rows, list) and len(rows) == 4
    assert all(list(row) == JSON_FIELDS for row in rows)
    ada = next(row for row in rows if row["contact"] == ADA)
    assert ada["state"] == "queued" and ada["version"] == 1 and ada["invalid_edit"] is None
    assert ada["lint"][0]["code"] == "empty-slot" and ada["scheduled_at"].endswith("+00:00")
    assert ada["from_addr"] == "Me Person <me@example.org>"


def test_list_piped_and_on_a_terminal(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = world.run("drafts", "list", "--state", "queued").out.splitlines()
    assert len(lines) == 4 and all(len(line.split("\t")) == 7 for line in lines)
    assert world.run("drafts", "list", "--reason", "keep_in_touch").out.count("\n") == 2
    assert world.run("drafts", "list", "--contact", CAROL.upper()).out.split("\t")[4] == CAROL
    monkeypatch.setattr(table, "is_terminal", lambda: True)
    shown = world.run("drafts", "list", env={"COLUMNS": "160"}).out
    header = shown.splitlines()[0].split()
    assert header[:4] == ["ID", "STATE", "WHO", "WHY"] and "GOES" in header and "LINT" in header
    assert "keep_in_touch: tier default: every 90 days" in shown and "on approval" in shown
    assert "4 draft(s): 4 queued; review them with `followupd review`" in shown
    assert all(
        len(line) <= 80 for line in world.run("drafts", "list", env={"COLUMNS": "80"}).out.splitlines()
    )


@pytest.mark.db_backend("sqlite")  # the sqlite3 fast read path of `drafts list`
def test_the_fast_path_reads_what_sqlalchemy_reads(world: World) -> None:
    reader = drafts_repo.fast_reader(world.config.database.url)
    assert reader is not None
    filters: list[dict[str, object]] = [
        {},
        {"states": ["queued"]},
        {"contact": ADA},
        {"reason": "keep_in_touch"},
    ]
    with closing(reader), world.db.read() as session:
        for kwargs in filters:
            fast = drafts_repo.fast_list(reader, now=NOW, **kwargs)
            assert fast == drafts_repo.list_drafts(session, **kwargs)


@pytest.mark.db_backend("sqlite")  # the sqlite3 fast read path of `drafts list`
def test_the_fast_path_declines_what_it_cannot_read_safely(world: World, tmp_path: Path) -> None:
    assert drafts_repo.head_revision() == head_revision()
    assert drafts_repo.fast_reader("postgresql+psycopg://u@localhost/db") is None
    assert drafts_repo.fast_reader("sqlite:///:memory:") is None
    assert drafts_repo.fast_reader(f"sqlite:///{tmp_path}/missing.db") is None
    path = world.config.database.url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = 'newer-than-this-code'")
    assert drafts_repo.fast_reader(world.config.database.url) is None
    failed = world.run("drafts", "list")  # the normal path refuses a newer schema, as every command does
    assert failed.code == 3 and "newer followupd" in failed.err


def test_list_wakes_snoozed_drafts_whose_time_has_come(world: World) -> None:
    bob = world.ids[BOB]
    assert world.run("drafts", "snooze", str(bob), "2024-04-03").code == 0
    reader = drafts_repo.fast_reader(world.config.database.url)
    if not world.db.is_sqlite:
        assert reader is None  # PostgreSQL always takes the SQLAlchemy path
    else:
        assert reader is not None
        with closing(reader):  # waking is a write: the read-only fast path hands over to the normal one
            assert drafts_repo.fast_list(reader, now=datetime(2024, 4, 3, tzinfo=UTC)) is None
            assert drafts_repo.fast_list(reader, now=NOW) is not None
    states = {row["id"]: row["state"] for row in world.run("drafts", "list", "--json").json()}
    assert states[bob] == "snoozed"
    later = world.run("drafts", "list", "--json", now="2024-04-03T00:00:00+00:00").json()
    assert {row["id"]: row["state"] for row in later}[bob] == "queued"
    assert draft(world.db, bob).version == 3  # snoozed, woken


def test_show_the_message_as_it_would_be_sent(world: World) -> None:
    ada = world.ids[ADA]
    shown = world.run("drafts", "show", str(ada)).out
    for expected in (
        f"Draft {ada} · queued · new_contact · to {ADA}",
        "Why now:  new_contact: last exchange 2024-03-21 10:00 UTC",
        "! empty-slot: the offer slot is still empty",
        "From: Me Person <me@example.org>",
        f"To: {ADA}",
        "Subject: Re: Lunch at the conference",
        "In-Reply-To: <a2@example.org>",
        "Message-ID: <",
        "Hi there,",
    ):
        assert expected in shown, expected
    data = world.run("drafts", "show", str(ada), "--json").json()
    assert isinstance(data, dict) and list(data)[: len(JSON_FIELDS)] == JSON_FIELDS
    assert data["headers"]["To"] == ADA and data["headers"]["Message-ID"] == data["message_id"]
    assert data["build_error"] is None
    assert world.run("drafts", "show", "999").code == 6


def test_every_state_change_from_the_cli(world: World) -> None:
    run, ids = world.run, world.ids
    approved = run("drafts", "approve", str(ids[ADA]), str(ids[CAROL]), "--json").json()
    assert [(d["draft_id"], d["state"], d["version"], d["changed"]) for d in approved] == [
        (ids[ADA], "approved", 2, True),
        (ids[CAROL], "approved", 2, True),
    ]
    assert run("drafts", "approve", str(ids[ADA])).out == f"draft {ids[ADA]}: already approved\n"
    assert run("drafts", "skip", str(ids[BOB]), "--reason", "met him").out == f"draft {ids[BOB]}: skipped\n"
    assert draft(world.db, ids[BOB]).note == "skipped: met him"
    assert run("drafts", "snooze", str(ids[EVE]), "next", "monday").code == 0
    assert draft(world.db, ids[EVE]).snoozed_until == datetime(2024, 4, 8, tzinfo=UTC)
    assert run("drafts", "unsnooze", str(ids[EVE])).out == f"draft {ids[EVE]}: queued\n"
    assert run("drafts", "send-now", str(ids[EVE]), now="2024-04-01T12:00:00+00:00").code == 0
    eve = draft(world.db, ids[EVE])
    assert (eve.state, eve.scheduled_at) == ("approved", datetime(2024, 4, 1, 12, tzinfo=UTC))
    bad = run("drafts", "snooze", str(ids[CAROL]), "whenever")
    assert bad.code == 2 and "cannot read 'whenever'" in bad.err
    assert run("drafts", "snooze", str(ids[CAROL]), "2020-01-01").code == 2


def test_acting_on_a_draft_that_changed_meanwhile(world: World) -> None:
    run, ids = world.run, world.ids
    supersede(world.db, ids[ADA])
    conflict = run("drafts", "approve", str(ids[ADA]))
    assert conflict.code == 7
    expected = f"draft {ids[ADA]} was superseded at 2024-04-01 09:00 UTC (reply owed: they wrote last)"
    assert conflict.err.startswith(expected + "; nothing was done")
    assert draft(world.db, ids[ADA]).state == "superseded"
    assert run("drafts", "approve", "999").code == 6
    mixed = run("drafts", "approve", "999", str(ids[ADA]), str(ids[BOB]))
    assert mixed.code == 7 and "no draft 999" in mixed.err and "superseded" in mixed.err
    assert mixed.out == f"draft {ids[BOB]}: approved\n"  # the valid one was still done
    for args in (("skip",), ("snooze", "tomorrow"), ("unsnooze",), ("send-now",)):
        assert run("drafts", args[0], str(ids[ADA]), *args[1:]).code == 7, args


def test_edit_with_the_editor_saves_and_lints_again(world: World, tmp_path: Path) -> None:
    ada = world.ids[ADA]
    done = world.run("drafts", "edit", str(ada), env={"EDITOR": editor(tmp_path, "fill")})
    assert done.code == 0 and f"draft {ada}: saved" in done.out and "no warnings" in done.out
    after = draft(world.db, ada)
    assert "an intro to Grace" in after.body and after.lint == () and after.version == 2
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"followupd-draft-{ada}-*"))


def test_an_invalid_edit_is_kept_and_reopened(world: World, tmp_path: Path) -> None:
    ada, seen = world.ids[ADA], tmp_path / "seen.txt"
    env = {"FU_SEEN": str(seen)}
    bad = world.run("drafts", "edit", str(ada), env={**env, "EDITOR": editor(tmp_path, "inject")})
    assert bad.code == 2 and "the edit was not saved" in bad.err and "other headers cannot be set" in bad.err
    kept = draft(world.db, ada)
    assert kept.invalid_edit is not None and "Bcc: everyone@example.com" in kept.invalid_edit
    assert "Bcc" not in kept.subject + kept.body
    assert world.run("drafts", "approve", str(ada)).code == 2  # fix or discard it first
    listed = world.run("drafts", "list", "--json").json()
    assert any(row["invalid_edit"] for row in listed)
    fixed = world.run("drafts", "edit", str(ada), env={**env, "EDITOR": editor(tmp_path, "fix")})
    assert fixed.code == 0 and "Your last edit was not saved" in fixed.out
    assert (
        seen.read_text().split("=====")[1].lstrip().startswith("Subject: Re: Lunch at the conference\nBcc:")
    )
    after = draft(world.db, ada)
    assert after.invalid_edit is None and "an intro to Grace" in after.body
    world.run("drafts", "edit", str(ada), env={"EDITOR": editor(tmp_path, "inject")})
    assert world.run("drafts", "edit", str(ada), "--discard").out == f"draft {ada}: unsaved edit dropped\n"
    assert draft(world.db, ada).invalid_edit is None


def test_an_edit_of_a_draft_superseded_meanwhile_is_not_lost(world: World, tmp_path: Path) -> None:
    ada = world.ids[ADA]
    env = {
        "EDITOR": editor(tmp_path, "supersede"),
        "FU_DB": world.config.database.url,
        "FU_DRAFT": str(ada),
    }
    result = world.run("drafts", "edit", str(ada), env=env)
    assert result.code == 7 and "was superseded" in result.err and "your edited text is kept in" in result.err
    kept = Path(result.err.split("kept in ")[1].split("\n")[0])
    assert kept.read_text().startswith("Subject: ") and "Hello" in kept.read_text()
    kept.unlink()
    assert world.run("drafts", "edit", str(ada)).code == 7  # no editor opened for a superseded draft


HEAVY = ("sqlalchemy", "alembic", "jinja2", "dateparser", "icalendar", "imapclient", "aiosmtplib")


def test_as_a_real_process(world: World) -> None:
    listed = subprocess_run(world.config_path, "drafts", "list")
    assert listed.code == 0 and listed.out.count("\n") == 4, listed.err
    env = {k: v for k, v in os.environ.items() if k != "FOLLOWUPD_CONFIG"}
    argv = [sys.executable, "-X", "importtime", "-m", "followupd", "--config", str(world.config_path)]
    timed = subprocess.run(
        [*argv, "drafts", "list", "--json"], capture_output=True, text=True, env=env, check=True
    )
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timed.stderr.splitlines()}
    if world.db.is_sqlite:  # the sqlite3 fast path; PostgreSQL goes through SQLAlchemy
        assert not imported & set(HEAVY), "drafts list must start without these: " + ", ".join(
            imported & set(HEAVY)
        )
    else:
        assert "sqlalchemy" in imported
    supersede(world.db, world.ids[CAROL])
    conflict = subprocess_run(world.config_path, "drafts", "approve", str(world.ids[CAROL]))
    assert conflict.code == 7
    assert conflict.err.startswith(
        f"followupd: draft {world.ids[CAROL]} was superseded at 2024-04-01 09:00 UTC"
    )
    assert subprocess_run(world.config_path, "drafts", "show", "999").code == 6
    approved = subprocess_run(world.config_path, "drafts", "approve", str(world.ids[BOB]), "--json")
    assert approved.code == 0 and json.loads(approved.out)[0]["state"] == "approved"


def test_a_concurrent_writer_never_makes_a_command_fail(world: World, tmp_path: Path) -> None:
    """A thread (standing in for the daemon) keeps taking write transactions while commands run."""
    stop, writes, errors = threading.Event(), [0], []

    def hammer() -> None:
        db = Database(world.config.database.url)
        try:
            while not stop.is_set():
                with db.write() as session:
                    session.execute(update(Account).values(last_scan_at=datetime.now(UTC)))
                    time.sleep(0.005)  # hold the write lock a little, like a scan batch
                writes[0] += 1
                time.sleep(0.005)  # and let go of it between batches, as the daemon does
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            db.dispose()

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        run, ids = world.run, world.ids
        results = [
            run("drafts", "approve", str(ids[ADA])),
            run("drafts", "snooze", str(ids[BOB]), "in", "3", "days"),
            run("drafts", "unsnooze", str(ids[BOB])),
            run("drafts", "skip", str(ids[EVE])),
            run("drafts", "send-now", str(ids[CAROL])),
            run("drafts", "edit", str(ids[BOB]), env={"EDITOR": editor(tmp_path, "fill")}),
            run("drafts", "list", "--json"),
            run("contacts", "set", ADA, "--tag", "busy"),
            subprocess_run(world.config_path, "drafts", "approve", str(ids[BOB])),
        ]
    finally:
        stop.set()
        thread.join(timeout=30)
    for result in results:
        assert result.code == 0 and "locked" not in result.err, result
    assert not errors and writes[0] > 5, (errors, writes)
    states = {v.contact: v.state for v in [draft(world.db, i) for i in ids.values()]}
    assert states == {ADA: "approved", BOB: "approved", CAROL: "approved", EVE: "skipped"}


def test_docs_list_every_exit_code_and_command() -> None:
    import click

    from followupd import errors

    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    classes = [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.FollowupdError)
    ]
    for cls in classes:
        rows = [line for line in docs.splitlines() if line.startswith("|") and f"`{cls.__name__}`" in line]
        row = rows[0] if rows else ""
        assert row.startswith(f"| {cls.exit_code} |"), cls.__name__
    for group in ("drafts", "contacts"):
        command = cli.get_command(click.Context(cli), group)
        assert isinstance(command, click.Group)
        for name in command.list_commands(click.Context(command)):
            assert f"followupd {group} {name}" in docs, f"{group} {name}"
    assert "`followupd review`" in docs

"""``followupd review`` in a real pseudo-terminal (pexpect): single keys approve, edit (with a scripted
$EDITOR), snooze and skip drafts; the summary at the end; and the polite refusal without a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from followupd.store.db import Database
from tests.servers.plugin import DatabaseTemplates, DatabaseUrlFactory
from tests.test_drafts_cli import NOW_TEXT, editor
from tests.test_plan_engine import ADA, BOB, CAROL, EVE
from tests.test_review_engine import WorldTemplate, copy_world, draft, draft_ids, world_template

TIMEOUT = 30


@pytest.fixture
def template(
    db_backend: str, database_templates: DatabaseTemplates, tmp_path_factory: pytest.TempPathFactory
) -> WorldTemplate:
    return world_template(db_backend, database_templates, tmp_path_factory)


@pytest.fixture
def world(
    template: WorldTemplate, tmp_path: Path, database_url_factory: DatabaseUrlFactory
) -> Iterator[tuple[Path, Database]]:
    config_path, db, _config = copy_world(template, tmp_path, database_url_factory)
    yield config_path, db
    db.dispose()


def spawn(config_path: Path, tmp_path: Path, mode: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if k not in ("FOLLOWUPD_CONFIG", "VISUAL")}
    env.update(EDITOR=editor(tmp_path, mode), COLUMNS="120", LINES="40", TERM="xterm")
    argv = ["-m", "followupd", "--config", str(config_path), "--now", NOW_TEXT, "review"]
    return pexpect.spawn(
        sys.executable, argv, env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 120)
    )


def decide(child: pexpect.spawn, key: str) -> None:
    child.expect_exact("[q]uit ? ")
    child.send(key)


def test_review_approve_edit_snooze_skip(world: tuple[Path, Database], tmp_path: Path) -> None:
    config_path, db = world
    ids = draft_ids(db)
    child = spawn(config_path, tmp_path, "fill")
    # Drafts come soonest first: Ada, Carol, Bob, Eve (all scheduled at NOW; by id).
    child.expect_exact("1 of 4")
    child.expect_exact(f"to {ADA}")
    child.expect_exact("! empty-slot")
    decide(child, "a")
    child.expect_exact(f"draft {ids[ADA]} approved")
    child.expect_exact("2 of 4")
    decide(child, "e")  # the scripted editor fills the offer slot
    child.expect_exact(f"draft {ids[CAROL]}: saved")
    child.expect_exact("no warnings")
    decide(child, "a")  # the edited draft is shown again, then approved
    child.expect_exact(f"draft {ids[CAROL]} approved")
    child.expect_exact("3 of 4")
    decide(child, "?")
    child.expect_exact("Press a, e, s, n, x or q.")
    child.send("n")
    child.expect_exact("Snooze until")
    child.sendline("whenever")
    child.expect_exact("cannot read 'whenever'")
    child.expect_exact("Snooze until")
    child.sendline("next monday")
    child.expect_exact(f"draft {ids[BOB]} snoozed until 2024-04-08 00:00 UTC")
    child.expect_exact("4 of 4")
    decide(child, "s")
    child.expect_exact(f"draft {ids[EVE]} skipped")
    child.expect_exact("approved 2, skipped 1, snoozed 1, left 0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    states = {who: draft(db, ids[who]).state for who in (ADA, CAROL, BOB, EVE)}
    assert states == {ADA: "approved", CAROL: "approved", BOB: "snoozed", EVE: "skipped"}
    carol = draft(db, ids[CAROL])
    assert "an intro to Grace" in carol.body and carol.lint == ()


def test_review_next_quit_and_an_invalid_edit(world: tuple[Path, Database], tmp_path: Path) -> None:
    config_path, db = world
    ids = draft_ids(db)
    child = spawn(config_path, tmp_path, "inject")
    child.expect_exact("1 of 4")
    decide(child, "e")  # an edit adding a Bcc line: kept, not saved
    child.expect_exact("the edit was not saved")
    child.expect_exact(f"`followupd drafts edit {ids[ADA]}` opens it again")
    decide(child, "a")  # cannot approve with an unsaved edit pending: said, and the draft stays on screen
    child.expect_exact("has an edit that was not saved")
    child.expect_exact("1 of 4")
    decide(child, "x")
    child.expect_exact("2 of 4")
    decide(child, "x")
    child.expect_exact("3 of 4")
    decide(child, "q")
    child.expect_exact("approved 0, skipped 0, snoozed 0, left 4")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    ada = draft(db, ids[ADA])
    assert ada.state == "queued" and ada.invalid_edit is not None and "Bcc:" in ada.invalid_edit


def test_review_refuses_without_a_terminal(world: tuple[Path, Database]) -> None:
    config_path, _db = world
    env = {k: v for k, v in os.environ.items() if k != "FOLLOWUPD_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "followupd", "--config", str(config_path), "review"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "needs a terminal" in done.stderr and "followupd drafts list" in done.stderr
    assert "followupd drafts approve ID..." in done.stderr

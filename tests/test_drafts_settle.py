"""Settling drafts the sender could not: ``drafts mark-sent`` (UNKNOWN -> SENT) and ``drafts retry``
(UNKNOWN/FAILED -> APPROVED, due now, same Message-ID), in the engine and through the CLI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from followupd.cli import cli
from followupd.engine import review
from followupd.engine.send import send_due
from followupd.errors import ConflictError, NotFoundError
from followupd.store.db import Database
from tests.servers.smtp import SmtpServer
from tests.test_send import NOW, Smtp, World, config_text, make_config, received_ids

LOST = "connection lost after the message data was sent; it will be looked for in the Sent folder"


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def test_mark_sent_settles_an_unknown_draft(world: World) -> None:
    draft_id = world.draft(state="unknown", last_error=LOST)
    changed = review.mark_sent(world.db, draft_id, now=NOW)
    assert (changed.state, changed.changed) == ("sent", True)
    row = world.get(draft_id)
    assert row.state == "sent" and row.sent_at == NOW and "marked sent by the user" in row.note
    contact = world.person(row.contact_id)
    assert contact.last_outbound_at == NOW and contact.last_touch_at == NOW  # the clock restarts
    again = review.mark_sent(world.db, draft_id, now=NOW + timedelta(hours=1))
    assert (again.state, again.changed) == ("sent", False)  # idempotent, sent_at kept
    assert world.get(draft_id).sent_at == NOW


@pytest.mark.parametrize("state", ["queued", "approved", "failed", "skipped", "superseded"])
def test_mark_sent_refuses_drafts_that_are_not_unknown(world: World, state: str) -> None:
    draft_id = world.draft(state=state)
    with pytest.raises(ConflictError, match=f"draft {draft_id} was {state}"):
        review.mark_sent(world.db, draft_id, now=NOW)
    assert world.get(draft_id).state == state


@pytest.mark.parametrize("state", ["unknown", "failed"])
def test_retry_approves_again_due_now_with_a_fresh_budget(world: World, state: str) -> None:
    draft_id = world.draft(
        state=state,
        attempts=5,
        last_error="550 mailbox unavailable",
        next_attempt_at=NOW + timedelta(hours=2),
    )
    before = world.get(draft_id)
    changed = review.retry(world.db, draft_id, now=NOW)
    assert changed.state == "approved" and changed.version == before.version + 1
    row = world.get(draft_id)
    assert (row.state, row.attempts, row.next_attempt_at, row.last_error) == ("approved", 0, None, None)
    assert row.scheduled_at == NOW and row.message_id == before.message_id


@pytest.mark.parametrize("state", ["queued", "sent", "sending", "skipped"])
def test_retry_refuses_other_states(world: World, state: str) -> None:
    draft_id = world.draft(state=state)
    with pytest.raises(ConflictError):
        review.retry(world.db, draft_id, now=NOW)
    assert world.get(draft_id).state == state


def test_retry_of_a_changed_draft_is_a_conflict(world: World) -> None:
    draft_id = world.draft(state="unknown")
    looked_at = world.get(draft_id).version
    world.update(draft_id, state="sent", version=looked_at + 1)  # the sender found it in Sent meanwhile
    with pytest.raises(ConflictError, match="nothing was done"):
        review.retry(world.db, draft_id, now=NOW, version=looked_at)


def test_missing_draft(world: World) -> None:
    with pytest.raises(NotFoundError):
        review.mark_sent(world.db, 9999, now=NOW)


def test_a_retried_draft_goes_out_once_with_its_message_id(
    world: World, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PW", "unused")  # the test server has no AUTH; the password is never sent
    draft_id = world.draft(state="failed", attempts=5, last_error="451 try again later")
    message_id = world.get(draft_id).message_id
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    assert received_ids(smtp_server) == []
    review.retry(world.db, draft_id, now=NOW)
    send_due(world.db, config, now=NOW)
    send_due(world.db, config, now=NOW + timedelta(minutes=5))
    assert received_ids(smtp_server) == [message_id]
    assert world.get(draft_id).state == "sent"


def test_cli_mark_sent_and_retry(world: World, tmp_path: Path) -> None:
    unknown, failed = world.draft(state="unknown", last_error=LOST), world.draft(state="failed")
    path = tmp_path / "config.toml"
    path.write_text(config_text(str(world.db.url)))
    path.chmod(0o600)
    base = ["--config", str(path), "--now", NOW.isoformat(), "drafts"]
    runner = CliRunner()
    marked = runner.invoke(cli, [*base, "mark-sent", str(unknown)], env={"FOLLOWUPD_CONFIG": ""})
    assert marked.exit_code == 0 and f"draft {unknown}: sent" in marked.stdout
    refused = runner.invoke(cli, [*base, "mark-sent", str(failed)], env={"FOLLOWUPD_CONFIG": ""})
    assert refused.exit_code != 0 and world.get(failed).state == "failed"
    retried = runner.invoke(cli, [*base, "retry", str(failed)], env={"FOLLOWUPD_CONFIG": ""})
    assert retried.exit_code == 0 and f"draft {failed}: approved" in retried.stdout
    assert (world.get(unknown).state, world.get(failed).state) == ("sent", "approved")

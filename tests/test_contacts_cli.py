"""``followupd contacts ...`` through click's CliRunner: your settings (tier, cadence, tags, notes), mute and
unmute, ignore, merging two contacts into one person, and the "who is due" view with its bars."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from followupd.cli import table
from followupd.engine.plan import plan_once
from followupd.store import contacts_repo
from followupd.store.models import Contact
from tests.servers.plugin import DatabaseTemplates, DatabaseUrlFactory
from tests.test_drafts_cli import World, make_runner
from tests.test_plan_engine import ADA, BOB, CAROL, DAN, EVE, NOW
from tests.test_review_engine import WorldTemplate, copy_world, draft, draft_ids, world_template


@pytest.fixture
def template(
    db_backend: str, database_templates: DatabaseTemplates, tmp_path_factory: pytest.TempPathFactory
) -> WorldTemplate:
    return world_template(db_backend, database_templates, tmp_path_factory)


@pytest.fixture
def world(
    template: WorldTemplate, tmp_path: Path, database_url_factory: DatabaseUrlFactory
) -> Iterator[World]:
    config_path, db, config = copy_world(template, tmp_path, database_url_factory)
    yield World(config_path, db, config, make_runner(config_path), draft_ids(db))
    db.dispose()


def contact(world: World, address: str) -> contacts_repo.ContactView:
    with world.db.read() as session:
        return contacts_repo.view(session, contacts_repo.find_contact(session, address))


def test_set_tier_cadence_tags_and_notes(world: World) -> None:
    run = world.run
    args = ["--tier", "close", "--cadence", "45d", "--tag", "pycon", "--tag", "ml", "--note", "met at PyCon"]
    shown = run("contacts", "set", ADA, *args, "--json").json()
    assert isinstance(shown, dict)
    assert (shown["tier"], shown["cadence_days"], shown["tags"], shown["notes"]) == (
        "close",
        45.0,
        ["pycon", "ml"],
        "met at PyCon",
    )
    run("contacts", "set", ADA.upper(), "--untag", "ml", "--tag", "pycon", "--note", "prefers mornings")
    ada = contact(world, ADA)
    assert ada.tags == ("pycon",) and ada.notes == "met at PyCon\nprefers mornings"
    run("contacts", "set", ADA, "--tier", "none", "--cadence", "none")
    assert (contact(world, ADA).tier, contact(world, ADA).cadence_days) == (None, None)
    for args, message in [
        (("--tier", "vip"), "unknown tier 'vip'"),
        (("--cadence", "often"), "not a duration"),
        (("--cadence", "3h"), "shorter than a day"),
        (("--tag", "a,b"), "cannot be empty or contain a comma"),
        ((), "nothing to set"),
    ]:
        failed = run("contacts", "set", ADA, *args)
        assert failed.code == 2 and message in failed.err, (args, failed)
    assert run("contacts", "set", "nobody@example.com", "--tag", "x").code == 6


def test_mute_unmute_ignore(world: World) -> None:
    run = world.run
    assert (
        run("contacts", "mute", BOB, "in", "2", "weeks").out == f"{BOB}: muted until 2024-04-15 09:00 UTC\n"
    )
    bob = contact(world, BOB)
    assert (bob.status, bob.muted_until) == ("muted", datetime(2024, 4, 15, 9, tzinfo=UTC))
    # The planner supersedes the muted contact's live draft, and the sender would refuse it meanwhile.
    result = plan_once(world.db, world.config, now=NOW + timedelta(hours=1))
    assert [s.contact for s in result.superseded_drafts] == [BOB]
    assert run("contacts", "unmute", BOB).out == f"{BOB}: active\n"
    assert contact(world, BOB).muted_until is None
    assert run("contacts", "mute", EVE, "forever").out == f"{EVE}: muted until unmuted\n"
    assert run("contacts", "mute", EVE, "2020-01-01").code == 2
    assert run("contacts", "ignore", CAROL).out == f"{CAROL}: ignored\n"
    assert run("contacts", "unignore", CAROL).out == f"{CAROL}: active\n"


def test_merge_two_addresses_of_one_person(world: World) -> None:
    run, ids = world.run, world.ids
    run("contacts", "set", ADA, "--tier", "close", "--tag", "pycon", "--note", "Ada's note")
    run("contacts", "set", CAROL, "--tier", "distant", "--tag", "meetup", "--note", "Carol's note")
    before = contact(world, CAROL)
    merged = run("contacts", "merge", ADA, CAROL, "--json").json()
    assert isinstance(merged, dict)
    assert merged["moved"] == [CAROL] and merged["drafts_moved"] == 1
    assert merged["drafts_superseded"] == [ids[CAROL]]
    ada = contact(world, CAROL)  # either address finds the merged contact
    assert ada.id == contact(world, ADA).id and set(ada.addresses) == {ADA, CAROL}
    assert (ada.tier, ada.tags, ada.notes) == ("close", ("pycon", "meetup"), "Ada's note\nCarol's note")
    assert ada.first_seen_at == min(before.first_seen_at, contact(world, ADA).first_seen_at)  # type: ignore[type-var]
    assert ada.last_outbound_at is not None and before.last_outbound_at is not None
    assert ada.last_outbound_at >= before.last_outbound_at
    carol_draft = draft(world.db, ids[CAROL])
    assert carol_draft.state == "superseded" and carol_draft.note == f"superseded: merged into {ADA}"
    assert draft(world.db, ids[ADA]).state == "queued"  # the kept contact's draft is untouched
    with world.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 4
    assert run("contacts", "merge", ADA, CAROL).code == 2  # already one contact
    assert run("contacts", "merge", ADA, "nobody@example.com").code == 6


def test_due_sections_and_bars(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    run = world.run
    rows = run("contacts", "due", "--json").json()
    assert isinstance(rows, list)
    sections = {row["email"]: row["section"] for row in rows}
    assert sections == {ADA: "overdue", CAROL: "overdue", BOB: "overdue", EVE: "overdue", DAN: "reply-owed"}
    bob = next(row for row in rows if row["email"] == BOB)
    assert bob["reason"] == "keep_in_touch" and bob["cadence_days"] == 90.0 and bob["elapsed"] > 2
    assert bob["draft_state"] == "queued" and bob["draft_id"] == world.ids[BOB]
    assert list(bob) == [
        "section", "contact_id", "email", "name", "reason", "due_at", "last_exchange_at", "cadence_days",
        "elapsed", "draft_id", "draft_state",
    ]  # fmt: skip
    # A 190-day cadence makes Bob (last exchange 2023-10-02, 182 days ago) come up in 8 days.
    run("contacts", "set", BOB, "--cadence", "190d")
    upcoming = {r["email"]: r for r in run("contacts", "due", "--json").json()}  # type: ignore[union-attr]
    assert upcoming[BOB]["section"] == "upcoming"
    assert run("contacts", "due", "--days", "1", "--json").json() != []
    run("contacts", "ignore", EVE)
    piped = run("contacts", "due").out.splitlines()
    assert EVE not in "\n".join(piped)
    line = next(line for line in piped if line.startswith(f"upcoming\t{BOB}"))
    assert "[##########] 96%" in line  # 182 of 190 days
    monkeypatch.setattr(table, "is_terminal", lambda: True)
    screen = run("contacts", "due", env={"COLUMNS": "140"}).out
    assert "Overdue (2)" in screen and "Coming up in the next 14 days (1)" in screen
    assert "You owe a reply (1)" in screen and "they wrote last" in screen


def test_list_and_show_include_the_settings(world: World) -> None:
    world.run("contacts", "set", ADA, "--tier", "close", "--tag", "pycon")
    listed = world.run("contacts", "list").out
    assert any(line.startswith(ADA) and "close" in line and "pycon" in line for line in listed.splitlines())
    shown = world.run("contacts", "show", ADA).out
    assert "tier: close" in shown and "tags: pycon" in shown

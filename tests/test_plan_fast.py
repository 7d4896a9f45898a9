"""The planner's large-account path picks what a plain computation over every contact picks.

``plan_once`` loads in full only the contacts that can matter (live drafts, event triggers, the most overdue
few ranked in SQL, the oldest unanswered questions). On generated worlds these tests check it against the
reference: the pure planner fed every contact's full state, ``most_overdue`` over every light row, and the
unanswered questions computed message by message in Python.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from followupd import config as config_mod
from followupd.core.cadence import CadenceRules, Tier, TierRule, TouchRow, most_overdue
from followupd.core.planner import QueueDraft, SupersedeDraft, plan
from followupd.engine.candidates import load_awaiting, most_overdue_in_db
from followupd.engine.contact_state import load_contacts, load_drafts
from followupd.engine.plan import _load, plan_once
from followupd.store.db import Database
from followupd.store.models import Account, AddressRow, Contact, Draft, Message

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
ME = "me@example.org"
UTC_ZONE = ZoneInfo("UTC")

RULES = {
    "default": CadenceRules(),
    "tiered": CadenceRules(
        tiers={
            "close": Tier("close", timedelta(days=7)),
            "regular": Tier("regular", timedelta(days=60)),
            "distant": Tier("distant", timedelta(days=400)),
        },
        rules=(
            TierRule("close", domain="example3.com"),
            TierRule("distant", tag="old"),
            TierRule("close", address="person5@example5.com"),
        ),
        max_new_per_day=3,
        jitter=timedelta(days=10),
    ),
    "roomy": CadenceRules(default_interval=timedelta(days=30), max_new_per_day=40, max_new_per_week=60),
}


def build(db: Database, contacts: int, seed: int) -> None:
    """A random account: tiers, tags, overrides (some tied), muted/ignored contacts, replies owed, several
    addresses per contact, questions to one or several people, and drafts in every state."""
    rng = random.Random(seed)
    contact_rows: list[dict[str, Any]] = []
    address_rows: list[dict[str, Any]] = []
    message_rows: list[dict[str, Any]] = []
    draft_rows: list[dict[str, Any]] = []
    stamps = [NOW - timedelta(days=rng.choice([40, 100, 200, 400])) for _ in range(5)]  # shared: ties
    for cid in range(1, contacts + 1):
        email = f"person{cid}@example{cid % 7}.com"
        first = NOW - timedelta(days=rng.uniform(1, 900))
        times = sorted(first + (NOW - first) * rng.random() for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.2:
            times[-1] = max(rng.choice(stamps), times[0])  # equal last touches
            times.sort()
        directions = [rng.choice(("in", "out")) for _ in times]
        last_in = max((t for t, d in zip(times, directions, strict=True) if d == "in"), default=None)
        last_out = max((t for t, d in zip(times, directions, strict=True) if d == "out"), default=None)
        status = rng.choices(("active", "ignored", "muted"), (0.85, 0.05, 0.1))[0]
        contact_rows.append(
            {
                "id": cid, "account_id": 1, "name": f"Person {cid}", "status": status, "first_seen_at": first,
                "muted_until": NOW + timedelta(days=rng.choice([-3, 3])) if status == "muted" else None,
                "last_inbound_at": last_in, "last_outbound_at": last_out, "last_touch_at": times[-1],
                "owes_reply": directions[-1] == "in" and rng.random() < 0.3,
                "tags": rng.choice(["", "", "old", "old,work", "work"]), "notes": "",
                "tier": rng.choice([None] * 6 + ["close", "distant", "nonexistent"]),
                "cadence_days": rng.choice([None] * 8 + [0, 10, 45.5]),
            }
        )  # fmt: skip
        address_rows.append(
            {
                "account_id": 1, "email": email, "contact_id": cid, "first_seen_at": first,
                "inbound_count": directions.count("in"), "outbound_count": directions.count("out"),
            }
        )  # fmt: skip
        if rng.random() < 0.2:
            address_rows.append(
                {
                    "account_id": 1, "email": f"alt{cid}@example3.com", "contact_id": cid,
                    "first_seen_at": first, "inbound_count": rng.randint(0, 9), "outbound_count": 0,
                }
            )  # fmt: skip
        for n, (at, direction) in enumerate(zip(times, directions, strict=True)):
            out = direction == "out"
            several = out and rng.random() < 0.15
            other = f"person{cid % contacts + 1}@example{(cid + 1) % 7}.com"
            recipients = f"{email} {other}" if several else email
            message_rows.append(
                {
                    "account_id": 1, "message_id": f"m{cid}.{n}@example.org", "thread_key": f"t{cid}",
                    "date_at": at, "direction": direction, "sender": ME if out else email,
                    "recipients": recipients if out else ME, "subject": "Q?",
                    "asks": out and rng.random() < 0.5,
                    "automated": False, "reason": "", "has_calendar": False,
                    "in_reply_to": f"m{cid}.{n - 1}@example.org" if n else None,
                }
            )  # fmt: skip
        if rng.random() < 0.15:
            state = rng.choice(["sent", "queued", "approved", "skipped", "superseded", "sending"])
            # Planned long ago, or yesterday only for contact 1 (one cap slot used, the rest free).
            planned = NOW - timedelta(days=1.5 if cid == 1 else rng.choice([50, 400]))
            draft_rows.append(
                {
                    "account_id": 1, "contact_id": cid, "key": f"{cid}:keep_in_touch:old/{rng.randint(1, 3)}",
                    "reason": "keep_in_touch", "template": "keep_in_touch.j2", "state": state,
                    "from_addr": ME, "to_addrs": email, "subject": "Hi", "body": "Hi\n",
                    "message_id": f"<d{cid}@example.org>", "why": "", "lint": "[]", "planned_at": planned,
                    "scheduled_at": planned, "updated_at": planned, "attempts": 0, "note": "", "version": 1,
                }
            )  # fmt: skip
    with db.write() as session:
        session.execute(insert(Account), [{"id": 1, "name": "main", "email": ME}])
        for table, rows in ((Contact, contact_rows), (AddressRow, address_rows), (Message, message_rows),
                            (Draft, draft_rows)):  # fmt: skip
            session.execute(insert(table), rows)


@pytest.fixture(params=[1, 2, 3])
def world(request: pytest.FixtureRequest, database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.upgrade()
    build(db, 400, seed=request.param)
    yield db
    db.dispose()


def _light_rows(db: Database, rules: CadenceRules) -> list[TouchRow]:
    with db.read() as session:
        drafts, _today, _week = load_drafts(session, 1, now=NOW, zone=UTC_ZONE)
        states = load_contacts(session, 1, rules, now=NOW, drafts=drafts, prefilter=False)
        raw = session.execute(
            select(Contact.id, Contact.status, Contact.owes_reply, Contact.last_touch_at)
        ).all()
    rankable = {cid for cid, status, owes, touched in raw if status != "ignored" and not owes and touched}
    return [
        TouchRow(s.contact_id, s.email, s.tags, s.tier, s.cadence_override, s.last_touch_at)
        for s in states.values()
        if s.contact_id in rankable
    ]


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("limit", [1, 7, 40, 1000])
def test_overdue_ranking_in_sql_is_most_overdue(world: Database, name: str, limit: int) -> None:
    rules = RULES[name]
    expected = most_overdue(_light_rows(world, rules), rules, now=NOW, limit=limit)
    need_email = any(r.address or r.domain for r in rules.rules)
    with world.read() as session:
        got = most_overdue_in_db(session, 1, rules, now=NOW, limit=limit, need_email=need_email)
    assert got == expected
    assert got or limit == 0  # the world has overdue contacts: the comparison is not vacuous


def test_unanswered_questions_match_a_message_by_message_reference(world: Database) -> None:
    rules = CadenceRules()
    with world.read() as session:
        got = load_awaiting(session, 1, rules, now=NOW)
        addresses = session.execute(select(AddressRow.email, AddressRow.contact_id))
        owner = {email: cid for email, cid in addresses}
        last_in = {cid: at for cid, at in session.execute(select(Contact.id, Contact.last_inbound_at))}
        asks = session.execute(
            select(Message.id, Message.message_id, Message.date_at, Message.recipients)
            .where(Message.direction == "out", Message.asks.is_(True))
            .order_by(Message.id)
        ).all()
    newest: dict[int, tuple[datetime, int, str]] = {}
    for row_id, message_id, date_at, recipients in asks:
        if not NOW - timedelta(days=30) <= date_at <= NOW:
            continue
        for email in recipients.split():
            cid = owner.get(email)
            key = (date_at, row_id, message_id)
            if cid is not None and (cid not in newest or newest[cid] < key):
                newest[cid] = key
    expected = {
        cid: f"<{mid}>"
        for cid, (at, _id, mid) in newest.items()
        if last_in[cid] is None or at > last_in[cid]  # type: ignore[operator]
    }
    assert {cid: a.message_id for cid, a in got.items()} == expected
    assert expected  # not vacuous


def _keys(actions: list[Any]) -> tuple[list[str], list[int]]:
    queued = [a.key for a in actions if isinstance(a, QueueDraft)]
    superseded = [a.draft_id for a in actions if isinstance(a, SupersedeDraft)]
    return queued, superseded


@pytest.mark.parametrize("name", sorted(RULES))
def test_fast_load_plans_what_the_full_state_plans(world: Database, name: str) -> None:
    rules = RULES[name]
    with world.read() as session:
        fast = _load(session, 1, rules, now=NOW, zone=UTC_ZONE)
        drafts, today, week = load_drafts(session, 1, now=NOW, zone=UTC_ZONE)
        every = load_contacts(session, 1, rules, now=NOW, drafts=drafts, prefilter=False)
    # The same state for every contact the fast path loaded ...
    assert {cid: every[cid] for cid in fast.contacts} == fast.contacts
    # ... and the same plan as the pure planner over every contact.
    args: dict[str, Any] = {"now": NOW, "seed": 7, "queued_today": today, "queued_this_week": week}
    expected = _keys(plan(every.values(), drafts, rules, **args))
    got = _keys(plan(fast.contacts.values(), fast.drafts, rules, **args))
    assert got == expected
    assert expected[0]  # something is queued: the comparison is not vacuous


def test_plan_once_queues_what_the_full_state_plans(world: Database, tmp_path: Path) -> None:
    url = world.engine.url.render_as_string(hide_password=False)
    config = config_mod.parse(
        f'[database]\nurl = "{url}"\n\n[[accounts]]\nname = "main"\nemail = "{ME}"\n'
        f'[accounts.maildir]\npath = "{tmp_path}"\n'
    )
    rules = config.cadence.core_rules()
    with world.read() as session:
        drafts, today, week = load_drafts(session, 1, now=NOW, zone=ZoneInfo(config.send.timezone))
        every = load_contacts(session, 1, rules, now=NOW, drafts=drafts, prefilter=False)
    actions = plan(every.values(), drafts, rules, now=NOW, queued_today=today, queued_this_week=week)
    queued, superseded = _keys(actions)
    result = plan_once(world, config, now=NOW, dry_run=True)
    assert [d.key for d in result.queued] == queued
    assert [d.id for d in result.superseded_drafts] == superseded
    assert queued

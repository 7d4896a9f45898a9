"""The hot queries use indexes, not full scans of the big tables: EXPLAIN on PostgreSQL and SQLite.

The SQL is captured from the real functions (an ``before_cursor_execute`` listener records what they send)
on a populated, ANALYZEd database, then explained with the same parameters. Checked: the scan batch's
existence check and owed-reply query, the planner's loaders, and ``drafts list`` filtered by state, contact
or ids. Not checked: ``contacts list`` and ``status``, which read every contact by design.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session

from followupd.core.cadence import CadenceRules
from followupd.core.classify import AdmissionPolicy
from followupd.engine import contact_state
from followupd.engine.batch import BatchWriter
from followupd.mail.source import FolderInfo, RawMessage
from followupd.store import contacts_refresh, drafts_repo, scan_repo
from followupd.store.db import Database
from followupd.store.models import AddressRow, Contact, Draft, Message
from tests.mailgen import filler, named, person, reply

ME = "me@example.org"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BIG = ("messages", "addresses", "drafts", "threads")
PEOPLE = 120
# Most of an account's drafts are history; a few are live.
STATES = ("queued", "approved", "snoozed", *("sent", "skipped", "superseded") * 6)
EXTRA_MESSAGES = 40_000  # bulk mail from as many senders: the messages and addresses tables of a real mailbox


def _raws(rendered: list[bytes], first_uid: int) -> list[RawMessage]:
    return [
        RawMessage(uid=first_uid + n, headers=raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", internal_at=NOW)
        for n, raw in enumerate(rendered)
    ]


def _populate(db: Database) -> int:
    """~5,000 messages from PEOPLE people (threads answered by the user), and 20 drafts per contact."""
    with db.write() as session:
        account_id = scan_repo.ensure_account(session, "acct", ME)
        inbox = scan_repo.ensure_folder(session, account_id, "INBOX", "inbox").id
        sent = scan_repo.ensure_folder(session, account_id, "Sent", "sent").id
    writer = BatchWriter(db, account_id, frozenset({ME}), AdmissionPolicy())
    start = NOW - timedelta(days=400)
    received, mine = [], []
    for p in range(PEOPLE):
        email = f"person{p}@example{p % 7}.com"
        notes = filler(named(email, f"Person {p}"), ME, 30, start=start + timedelta(hours=p), prefix=f"p{p}")
        received += [m.render() for m in notes]
        first = person(named(email, f"Person {p}"), ME, "Question", start + timedelta(days=200 + p), f"q{p}")
        received.append(first.render())
        mine.append(reply(first, ME, start + timedelta(days=201 + p), f"r{p}").render())
        for n in range(10):
            news = f"news{n}@bulk.example.net"
            received.append(
                person(
                    named(news, "News"), ME, f"Offer {p}", start + timedelta(days=p, hours=n), f"n{p}-{n}"
                ).render()
            )
    for n in range(0, len(received), 2000):
        writer.write(
            FolderInfo("INBOX", "inbox"),
            inbox,
            _raws(received[n : n + 2000], n + 1),
            now=NOW,
            cursor={"last_uid": 1},
        )
    writer.write(FolderInfo("Sent", "sent"), sent, _raws(mine, 1), now=NOW, cursor={"last_uid": 1})
    with db.write() as session:
        session.execute(
            insert(Message),
            [
                {
                    "account_id": account_id,
                    "folder_id": inbox,
                    "uid": 100_000 + n,
                    "message_id": f"<bulk-{n}@bulk.example.net>",
                    "thread_key": f"<bulk-{n}@bulk.example.net>",
                    "date_at": start + timedelta(minutes=n),
                    "direction": "in",
                    "sender": f"sender{n}@bulk.example.net",
                    "automated": True,
                    "reason": "list-unsubscribe",
                }
                for n in range(EXTRA_MESSAGES)
            ],
        )
        session.execute(
            insert(AddressRow),
            [
                {"account_id": account_id, "email": f"sender{n}@bulk.example.net", "bulk_count": 1}
                for n in range(EXTRA_MESSAGES // 2)
            ],
        )
        contacts = list(session.scalars(select(Contact.id)))
        rows = [
            {
                "account_id": account_id,
                "contact_id": cid,
                "key": f"k-{cid}-{n}",
                "reason": "keep_in_touch",
                "template": "t",
                "state": STATES[n % len(STATES)],
                "from_addr": ME,
                "to_addrs": "x@example.com",
                "subject": "s",
                "body": "b",
                "message_id": f"<d-{cid}-{n}@example.org>",
                "planned_at": NOW - timedelta(days=n),
                "scheduled_at": NOW + timedelta(hours=n),
                "updated_at": NOW,
            }
            for cid in contacts
            for n in range(20)
        ]
        session.execute(insert(Draft), rows)
        session.execute(text("ANALYZE"))
    return account_id


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def populated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Database, int]]:
    """One populated database per backend for the whole module (the tests only read it)."""
    cluster = None
    if request.param == "postgresql":
        request.applymarker(pytest.mark.postgres)
        cluster = request.getfixturevalue("postgres")
        url = cluster.create_database("explain_checks")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('explain') / 'fu.db'}"
    db = Database(url)
    db.upgrade()
    account_id = _populate(db)
    yield db, account_id
    db.dispose()
    if cluster is not None:
        cluster.drop_database("explain_checks")


def _captured(db: Database, call: Callable[[Session], object]) -> list[tuple[str, Any]]:
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:  # noqa: PLR0917
        if statement.lstrip().upper().startswith("SELECT") and not many:
            statements.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.read() as session:
            call(session)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert statements, "the function ran no SELECT"
    return statements


def _full_scans(db: Database, statement: str, params: Any) -> tuple[list[str], str]:
    """The big tables the plan reads whole, and the plan (for the failure message)."""
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.is_sqlite:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, params)
            lines = [str(row[-1]) for row in cursor.fetchall()]
            aliases = _aliases(statement)
            scans = [
                aliases[m.group(1)]
                for line in lines
                if (m := re.match(r"SCAN (\w+)", line)) and m.group(1) in aliases
            ]
            return scans, "\n".join(lines)
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        found = cursor.fetchone()
        assert found is not None
        plan = found[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        scans = [n["Relation Name"] for n in _nodes(plan[0]["Plan"]) if n["Node Type"] == "Seq Scan"]
        return [s for s in scans if s in BIG], json.dumps(plan, indent=1)[:4000]
    finally:
        raw.close()


def _aliases(statement: str) -> dict[str, str]:
    found = {t: t for t in BIG}
    for table, alias in re.findall(
        r"\b(messages|addresses|drafts|threads)\s+(?:AS\s+)?(\w+)", statement, re.I
    ):
        if alias.upper() not in {"ON", "WHERE", "JOIN", "SET", "ORDER", "GROUP", "LEFT", "INNER"}:
            found[alias] = table
    return found


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _assert_indexed(
    db: Database, call: Callable[[Session], object], *, allowed: tuple[str, ...] = ()
) -> None:
    for statement, params in _captured(db, call):
        scans, plan = _full_scans(db, statement, params)
        assert not [s for s in scans if s not in allowed], f"full scan of {scans} in\n{statement}\n{plan}"


def test_scan_existence_check_uses_the_unique_index(populated: tuple[Database, int]) -> None:
    db, account_id = populated

    with db.read() as session:
        ids = [*session.scalars(select(Message.message_id).limit(50)), "<new@example.org>"]
    _assert_indexed(db, lambda session: scan_repo.existing_message_ids(session, account_id, ids))


def test_owed_reply_refresh_walks_indexes(populated: tuple[Database, int]) -> None:
    db, account_id = populated

    with db.read() as session:
        ids = list(session.scalars(select(Contact.id).limit(40)))
    _assert_indexed(db, lambda session: contacts_refresh._last_unanswered(session, account_id, ids))


def test_admission_reads_only_the_touched_addresses(populated: tuple[Database, int]) -> None:
    db, account_id = populated

    with db.read() as session:
        emails = list(session.scalars(select(AddressRow.email).limit(30)))

    def admission(session: Session) -> None:
        contacts_refresh.update_contacts(
            session, account_id, emails, own=frozenset({ME}), policy=AdmissionPolicy()
        )

    _assert_indexed(db, admission)


@pytest.mark.parametrize(
    "filters",
    [
        {"states": ["queued", "approved", "snoozed"]},
        {"states": ["approved"]},
        {"contact": "person7@example0.com"},
        {"ids": [1, 2, 3]},
    ],
    ids=["live", "approved", "contact", "ids"],
)
def test_drafts_list_filters_use_indexes(populated: tuple[Database, int], filters: dict[str, Any]) -> None:
    db, _account_id = populated
    _assert_indexed(db, lambda session: drafts_repo.list_drafts(session, **filters))


def test_planner_loaders_use_indexes(populated: tuple[Database, int]) -> None:
    db, account_id = populated

    def load(session: Session) -> None:
        drafts, _today, _week = contact_state.load_drafts(session, account_id, now=NOW, zone=ZoneInfo("UTC"))
        contact_state.load_contacts(session, account_id, CadenceRules(), now=NOW, drafts=drafts, budget=5)

    # The planner reads the account's drafts whole (it supersedes and counts them): drafts may be scanned.
    _assert_indexed(db, load, allowed=("drafts",))

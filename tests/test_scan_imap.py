"""Scanning a real Dovecot: first scan, incremental scans, skipped folders, UIDVALIDITY changes, and who
becomes a contact (direction and admission).

Every test gets a fresh IMAP user (``mailbox``) and a fresh database (each backend), seeds mail built by
``tests.mailgen`` and runs ``scan_once`` against the server on 127.0.0.1.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine.scan import ScanReport, scan_once
from followupd.store import contacts_repo
from followupd.store.db import Database
from followupd.store.models import AddressRow, Contact, ContactStatus, Folder
from tests import mailgen
from tests.mailgen import (
    ADA,
    ALIAS,
    BOB,
    BRAND,
    CAROL,
    DAEMON,
    DAVE,
    EVE,
    FRANK,
    JOSE,
    LIST,
    ZOE,
    Mail,
    World,
    at,
    build_world,
    contacts,
    excluded,
    named,
    person,
    reply,
    stored,
)
from tests.servers.plugin import Mailbox

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(60)]

NOW = at(30)


# ------------------------------------------------------------------------------------------------ harness


@pytest.fixture
def config(mailbox: Mailbox, db: Database, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("PW", mailbox.password)
    return make_config(db, mailbox)


def make_config(db: Database, box: Mailbox) -> Config:
    main = mailgen.account_toml("main", box.user, port=box.dovecot.port, aliases=[ALIAS])
    return config_mod.parse(mailgen.config_toml(str(db.url), main), env={})


def scan(db: Database, config: Config, now: datetime = NOW) -> ScanReport:
    report = scan_once(db, config, now=now, sleep=no_backoff)
    assert report.errors == {}
    return report


def no_backoff(seconds: float) -> None:
    raise AssertionError(f"unexpected retry (backoff {seconds:.1f} s) in a scan without faults")


def server_uids(box: Mailbox, folder: str) -> dict[str, int]:
    with box.dovecot.client(box.user) as client:
        return mailgen.server_uids(client, folder)


def expected_locations(box: Mailbox) -> dict[str, tuple[str, int]]:
    found = {mid: ("INBOX", uid) for mid, uid in server_uids(box, "INBOX").items()}
    found.update({mid: ("Sent", uid) for mid, uid in server_uids(box, "Sent").items()})
    return found


def inbox_validity(box: Mailbox) -> int:
    return box.dovecot.uidvalidity(box.user, "INBOX")


def append(box: Mailbox, folder: str, *mails: Mail) -> None:
    for mail in mails:
        box.dovecot.append(box.user, folder, mail.render(), flags=["\\Seen"])


# -------------------------------------------------------------------------------------------------- world


@pytest.fixture
def world(mailbox: Mailbox) -> World:
    """The world written straight into the user's Maildir (before the first login: fast bulk seeding)."""
    w = build_world(mailbox.user)
    mailbox.dovecot.write_maildir(mailbox.user, "INBOX", mailgen.render_all(w.inbox))
    mailbox.dovecot.write_maildir(mailbox.user, "Sent", mailgen.render_all(w.sent))
    return w


# ------------------------------------------------------------------------------------------------- tests


def test_first_scan_stores_every_message_once_where_the_server_has_it(
    mailbox: Mailbox, db: Database, config: Config, world: World
) -> None:
    report = scan(db, config)

    [stats] = report.accounts
    assert stats.account == "main"
    assert (stats.folders_scanned, stats.folders_skipped) == (2, 0)
    assert stats.messages_seen == stats.messages_new == len(world.all)
    assert stats.contacts_new >= 5  # the list address is admitted from Sent, then dropped (see below)
    rows = stored(db)
    assert {mid: (folder, uid) for mid, (folder, uid, _d) in rows.items()} == expected_locations(mailbox)
    sent_ids = {m.message_id for m in world.sent}
    for message_id, (_folder, _uid, direction) in rows.items():
        expected = "out" if message_id in sent_ids or message_id == mailgen.mid("self-1") else "in"
        assert direction == expected, message_id
    with db.read() as session:
        folders = {f.name: (f.role, f.last_uid, f.uidvalidity) for f in session.scalars(select(Folder))}
    assert folders == {
        "INBOX": ("inbox", max(server_uids(mailbox, "INBOX").values()), inbox_validity(mailbox)),
        "Sent": (
            "sent",
            max(server_uids(mailbox, "Sent").values()),
            mailbox.dovecot.uidvalidity(mailbox.user, "Sent"),
        ),
    }


def test_first_scan_admits_people_and_keeps_robots_lists_and_self_out(
    db: Database, config: Config, world: World
) -> None:
    scan(db, config)

    people = contacts(db)
    assert set(people) == {ADA, CAROL, ZOE, JOSE, EVE}
    reasons = excluded(db)
    assert reasons[BOB] == "unanswered"  # a cold sender the user never answered
    assert reasons[FRANK] == "unanswered"
    assert reasons[BRAND] == "only-bulk"  # a newsletter sender
    assert reasons[LIST] == "list-address"  # learned from List-Post, though the user wrote to it
    assert reasons[DAVE] == "only-bulk"  # posts to the list, never written to
    assert reasons[DAEMON] in {"role-address", "only-bulk"}
    # The user's own addresses are never contacts, nor even candidates.
    with db.read() as session:
        emails = set(session.scalars(select(AddressRow.email)))
    assert ALIAS not in emails
    assert config.accounts[0].email.lower() not in emails
    assert ALIAS not in people


def test_list_poster_written_to_in_cc_is_a_contact_but_not_the_list(
    db: Database, config: Config, world: World
) -> None:
    scan(db, config)

    people = contacts(db)
    carol = people[CAROL]
    assert carol.name == "Carol Poster"
    assert carol.addresses == (CAROL,)
    assert carol.last_outbound_at == at(1, 6)
    assert LIST not in people
    assert all(LIST not in v.addresses for v in people.values())


def test_contact_names_and_reply_owed(db: Database, config: Config, world: World) -> None:
    scan(db, config)

    people = contacts(db)
    assert people[ZOE].name == "Zoë Brüning"  # RFC 2047 Q, UTF-8
    assert people[JOSE].name == "José Núñez"  # RFC 2047 B, ISO-8859-1
    assert people[EVE].name == "Eve Newman"  # learned from the user's own To
    ada = people[ADA]
    assert ada.name == "Ada Lovelace"
    assert ada.last_inbound_at == at(3)
    assert ada.last_outbound_at == at(0, 5)
    assert ada.last_touch_at == at(3)
    assert ada.owes_reply is True  # Ada wrote last
    for address in (CAROL, ZOE, JOSE, EVE):
        assert people[address].owes_reply is False, address
    assert people[EVE].last_inbound_at is None


def test_incremental_scan_adds_only_new_mail_and_moves_contact_times(
    mailbox: Mailbox, db: Database, config: Config, world: World
) -> None:
    scan(db, config)
    before = stored(db)
    ada_before = contacts(db)[ADA]

    ada3 = person(ada_addr(), mailbox.user, "Slides from Tuesday", at(10), "ada-3")
    my_ada = reply(ada3, mailbox.user, at(11), "me-ada-3", to=ada_addr())
    grace = person(mailbox.user, named("grace@example.org", "Grace Hopper"), "Compilers", at(12), "me-gr")
    append(mailbox, "INBOX", ada3)
    append(mailbox, "Sent", my_ada, grace)

    report = scan(db, config, now=at(31))
    [stats] = report.accounts
    assert (stats.messages_seen, stats.messages_new, stats.contacts_new) == (3, 3, 1)
    assert (stats.folders_scanned, stats.folders_skipped) == (2, 0)
    after = stored(db)
    assert set(after) - set(before) == {ada3.message_id, my_ada.message_id, grace.message_id}
    assert {k: after[k] for k in before} == before  # nothing old touched
    assert {mid: (f, u) for mid, (f, u, _d) in after.items()} == expected_locations(mailbox)

    ada = contacts(db)[ADA]
    assert ada.id == ada_before.id
    assert (ada_before.last_inbound_at, ada.last_inbound_at) == (at(3), at(10))
    assert (ada_before.last_outbound_at, ada.last_outbound_at) == (at(0, 5), at(11))
    assert ada.owes_reply is False  # the user answered last
    assert contacts(db)["grace@example.org"].name == "Grace Hopper"


def ada_addr() -> str:
    return named(ADA, "Ada Lovelace")


def test_rescan_of_an_unchanged_mailbox_skips_every_folder_and_adds_nothing(
    db: Database, config: Config, world: World
) -> None:
    scan(db, config)
    rows, people, reasons = stored(db), contacts(db), excluded(db)

    report = scan(db, config, now=at(31))
    [stats] = report.accounts
    assert (stats.folders_scanned, stats.folders_skipped) == (0, 2)
    assert (stats.messages_seen, stats.messages_new, stats.contacts_new) == (0, 0, 0)
    assert stored(db) == rows
    assert contacts(db) == people
    assert excluded(db) == reasons


def test_uidvalidity_change_rescans_and_rebinds_without_duplicates(
    mailbox: Mailbox, db: Database, config: Config, world: World
) -> None:
    scan(db, config)
    before_rows = stored(db)
    before_people = contacts(db)
    old_validity = mailbox.dovecot.uidvalidity(mailbox.user, "Sent")
    with db.write() as session:
        contacts_repo.set_status(session, EVE, ContactStatus.IGNORED)

    new_validity = mailbox.dovecot.recreate_folder(mailbox.user, "Sent")
    assert new_validity != old_validity
    # The same messages come back under new UIDs (new one first, old ones reversed), minus one that was lost.
    lost, *kept = world.sent
    fresh = person(mailbox.user, named(ZOE, "Zoë"), "Photos", at(8), "me-zoe-2")
    append(mailbox, "Sent", fresh, *reversed(kept))

    report = scan(db, config, now=at(31))
    [stats] = report.accounts
    assert stats.uidvalidity_resets == ["Sent"]
    assert stats.messages_new == 1
    assert stats.contacts_new == 0
    after = stored(db)
    assert set(after) == set(before_rows) | {fresh.message_id}
    sent_now = server_uids(mailbox, "Sent")
    for message_id, uid in sent_now.items():
        assert after[message_id][:2] == ("Sent", uid), message_id
    assert after[lost.message_id][0] == "Sent"  # not a deletion: the row stays
    assert {m: after[m] for m in before_rows if after[m][0] == "INBOX"} == {
        m: v for m, v in before_rows.items() if v[0] == "INBOX"
    }

    people = contacts(db)
    assert set(people) == set(before_people)
    for address, view in before_people.items():
        assert people[address].id == view.id, address
    assert people[EVE].status == "ignored"  # the user's decision survives the rescan
    assert people[ZOE].last_outbound_at == at(8)
    with db.read() as session:
        sent = session.scalar(select(Folder).where(Folder.name == "Sent"))
        assert sent is not None
        assert sent.uidvalidity == new_validity
        assert sent.last_uid == max(sent_now.values())

    # And once more: nothing changed, nothing rescanned.
    again = scan(db, config, now=at(32))
    assert again.accounts[0].folders_skipped == 2
    assert stored(db) == after


def test_a_list_address_written_to_before_it_was_known_stops_being_a_contact(
    mailbox: Mailbox, db: Database, config: Config
) -> None:
    # The user's first message to the list is all there is: the list looks like a person.
    me = mailbox.user
    hello = person(me, LIST, "Hello all", at(0), "me-list-1", cc=[named(CAROL, "Carol Poster")])
    append(mailbox, "Sent", hello)
    scan(db, config)
    assert set(contacts(db)) == {LIST, CAROL}

    # Then the list delivers a post (List-Post names the list): the list is not a person after all.
    post = mailgen.list_post(named(DAVE, "Dave Lurker"), LIST, "Welcome", at(1), "dave-9")
    append(mailbox, "INBOX", post)
    scan(db, config, now=at(31))

    people = contacts(db)
    assert set(people) == {CAROL}
    assert excluded(db)[LIST] == "list-address"
    assert excluded(db)[DAVE] == "only-bulk"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 1  # no address-less contact left

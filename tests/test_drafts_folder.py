"""Review from any mail client: the Drafts-folder round trip against a real Dovecot (\\Drafts and \\Sent
special-use folders) and a real aiosmtpd server.

A queued draft appears in Drafts with its X-Followupd-Id; edited "in the folder" (a client stores a new
message with the same header and deletes the old one) its stored text follows and is re-linted; sent from
"another client" (its message APPENDed to Sent) it is recorded SENT and followupd sends nothing; deleted from
the folder it is SKIPPED; sent by followupd itself, its copy leaves the folder.
"""

from __future__ import annotations

import email
import json
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from followupd.config import Config
from followupd.engine import review
from followupd.engine.drafts_folder import HEADER, sync_drafts_folder
from followupd.engine.scan import scan_once
from followupd.engine.send import send_due
from followupd.store.db import Database
from tests.servers.plugin import Mailbox
from tests.servers.smtp import SmtpServer
from tests.test_send import NOW, Smtp, World, make_config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def world(db: Database, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("IMAP_PW", mailbox.password)
    monkeypatch.setenv("SMTP_PW", "unused")  # the plain test server takes no login; the sender wants a value
    return World(db, email_addr=mailbox.user)


def config_for(world: World, mailbox: Mailbox, smtp: SmtpServer | None = None, *, on: bool = True) -> Config:
    return make_config(
        world.db,
        imap=mailbox,
        smtp=Smtp(smtp.port) if smtp is not None else None,
        email_addr=mailbox.user,
        send=f"drafts_folder = {'true' if on else 'false'}",
    )


def queued(world: World, mailbox: Mailbox, name: str = "Ada Lovelace", **fields: Any) -> int:
    values: dict[str, Any] = {"state": "queued", "from_addr": f"Me Myself <{mailbox.user}>"}
    return world.draft(world.contact(name), **(values | fields))


def folder(mailbox: Mailbox, name: str = "Drafts") -> dict[int, tuple[EmailMessage, tuple[bytes, ...]]]:
    """UID -> (parsed message, flags) of every message in ``name``."""
    with mailbox.dovecot.client(mailbox.user) as client:
        client.select_folder(name, readonly=True)
        uids = client.search(["ALL"])
        data = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
    return {
        uid: (
            email.message_from_bytes(item[b"BODY[]"], policy=policy.default),
            tuple(item[b"FLAGS"]),
        )
        for uid, item in data.items()
    }


def copy_of(mailbox: Mailbox, draft_id: int) -> tuple[int, EmailMessage]:
    [(uid, message)] = [
        (uid, message) for uid, (message, _f) in folder(mailbox).items() if message[HEADER] == str(draft_id)
    ]
    return uid, message


def delete(mailbox: Mailbox, uid: int, name: str = "Drafts") -> None:
    with mailbox.dovecot.client(mailbox.user) as client:
        client.select_folder(name)
        client.delete_messages([uid])
        client.expunge()


def client_edit(mailbox: Mailbox, draft_id: int, *, subject: str, body: str) -> int:
    """What a mail client does on saving an edited draft: a new message (same headers), the old one gone."""
    old_uid, message = copy_of(mailbox, draft_id)
    edited = EmailMessage()
    for key in ("From", "To", "Date", "Message-ID", "In-Reply-To", "References", HEADER):
        if message[key] is not None:
            edited[key] = str(message[key])
    edited["Subject"] = subject
    edited.set_content(body)
    new_uid = mailbox.dovecot.append(mailbox.user, "Drafts", bytes(edited), flags=["\\Draft", "\\Seen"])
    delete(mailbox, old_uid)
    return new_uid


def lint_codes(world: World, draft_id: int) -> list[str]:
    return [w["code"] for w in json.loads(world.get(draft_id).lint)]


# ------------------------------------------------------------------------------------------ the round trip


def test_round_trip_appear_edit_send_from_client_and_delete(
    world: World, mailbox: Mailbox, smtp_server: SmtpServer
) -> None:
    config = config_for(world, mailbox, smtp_server)
    ada = queued(world, mailbox)
    bob = queued(world, mailbox, "Bob Babbage", to_addrs="Bob Babbage <bob@example.com>")

    # 1. The drafts appear, flagged \Draft, carrying their ids; their UIDs are recorded.
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert sorted(report.placed) == sorted([ada, bob]) and not report.errors
    uid, message = copy_of(mailbox, ada)
    assert world.get(ada).folder_uid == uid
    assert message["Message-ID"] == f"<{world.get(ada).message_id.strip('<>')}>"
    assert message["Subject"] == world.get(ada).subject
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None and "I found the paper" in plain.get_content()
    assert all(b"\\Draft" in flags for _m, flags in folder(mailbox).values())

    # A second sync changes nothing (no duplicates, no version bump).
    before = world.get(ada).version
    again = sync_drafts_folder(world.db, config, now=NOW)
    assert (again.placed, again.updated, again.sent, again.skipped) == ([], [], [], [])
    assert len(folder(mailbox)) == 2 and world.get(ada).version == before

    # 2. Edited in the folder: the stored text follows, re-linted, with a new version and the new UID.
    new_body = "Hi Ada,\n\nHere is the paper. Also: book a demo of our pricing!\n\nBest,\nMe\n"
    new_uid = client_edit(mailbox, ada, subject="The paper you asked for", body=new_body)
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert report.updated == [ada]
    row = world.get(ada)
    assert (row.subject, row.body, row.folder_uid) == ("The paper you asked for", new_body, new_uid)
    assert row.version == before + 1 and row.state == "queued"
    assert "pitch" in lint_codes(world, ada)

    # A client that only re-wraps the text (new UID, same words) is no edit.
    client_edit(mailbox, ada, subject="The paper you asked for", body=new_body.replace(" ", "\n", 3))
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert report.updated == [] and world.get(ada).body == new_body
    assert world.get(ada).folder_uid == copy_of(mailbox, ada)[0]

    # 3. Approved in followupd, then sent from another client: SENT, its copy leaves Drafts, and
    # followupd's sender sends nothing.
    review.approve(world.db, ada, now=NOW)
    _uid, message = copy_of(mailbox, ada)
    del message[HEADER]  # clients drop unknown headers on sending; the Message-ID is what is kept
    mailbox.dovecot.append(mailbox.user, "Sent", bytes(message), flags=["\\Seen"])
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert report.sent == [ada]
    row = world.get(ada)
    assert (row.state, row.sent_at, row.note) == ("sent", NOW, "sent from your mail client")
    assert [m[HEADER] for m, _f in folder(mailbox).values()] == [str(bob)]
    send_report = send_due(world.db, config, now=NOW)
    assert send_report.drafts == [] and smtp_server.messages == []

    # 4. Deleted from the folder: SKIPPED, never sent.
    delete(mailbox, copy_of(mailbox, bob)[0])
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert report.skipped == [bob]
    assert (world.get(bob).state, world.get(bob).note) == ("skipped", "deleted from the Drafts folder")
    assert folder(mailbox) == {}
    assert len(folder(mailbox, "Sent")) == 1  # only the one the "other client" sent
    assert smtp_server.messages == []


def test_a_draft_sent_by_followupd_has_its_copy_removed(
    world: World, mailbox: Mailbox, smtp_server: SmtpServer
) -> None:
    config = config_for(world, mailbox, smtp_server)
    ada = queued(world, mailbox)
    sync_drafts_folder(world.db, config, now=NOW)
    assert len(folder(mailbox)) == 1
    review.approve(world.db, ada, now=NOW)
    assert sync_drafts_folder(world.db, config, now=NOW).sent == []  # an approved copy stays until sent

    send_due(world.db, config, now=NOW)
    assert len(smtp_server.messages) == 1 and world.get(ada).state == "sent"
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert report.removed == [ada] and report.sent == []
    assert folder(mailbox) == {}
    row = world.get(ada)
    assert row.folder_uid is None and row.note != "sent from your mail client"
    assert len(smtp_server.messages) == 1


def test_a_skipped_draft_has_its_copy_removed(world: World, mailbox: Mailbox) -> None:
    config = config_for(world, mailbox)
    ada = queued(world, mailbox)
    sync_drafts_folder(world.db, config, now=NOW)
    review.skip(world.db, ada, now=NOW)
    assert sync_drafts_folder(world.db, config, now=NOW).removed == [ada]
    assert folder(mailbox) == {}


def test_an_edit_in_followupd_replaces_the_copy(world: World, mailbox: Mailbox) -> None:
    config = config_for(world, mailbox)
    ada = queued(world, mailbox)
    sync_drafts_folder(world.db, config, now=NOW)
    old_uid = world.get(ada).folder_uid
    row = world.get(ada)
    text = "Subject: Edited here\n\nHi Ada,\n\nEdited in followupd.\n"
    saved = review.save_edit(
        world.db, ada, text, version=row.version, now=NOW, rules=config.lint.core_rules()
    )
    assert saved.saved
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert report.updated == []  # followupd's own edit is not taken back from the stale copy
    uid, message = copy_of(mailbox, ada)
    assert uid != old_uid and world.get(ada).folder_uid == uid
    assert message["Subject"] == "Edited here"
    assert world.get(ada).body == "Hi Ada,\n\nEdited in followupd.\n"


def test_a_copy_that_lost_its_header_is_found_by_message_id(world: World, mailbox: Mailbox) -> None:
    config = config_for(world, mailbox)
    ada = queued(world, mailbox)
    sync_drafts_folder(world.db, config, now=NOW)
    uid, message = copy_of(mailbox, ada)
    del message[HEADER]
    message.set_content("Hi Ada,\n\nShorter now.\n")
    mailbox.dovecot.append(mailbox.user, "Drafts", bytes(message), flags=["\\Draft"])
    delete(mailbox, uid)
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert report.updated == [ada] and world.get(ada).body == "Hi Ada,\n\nShorter now.\n"


def test_draft_ids_are_matched_exactly_in_sent(world: World, mailbox: Mailbox) -> None:
    """Sent holding a message with X-Followupd-Id 12 does not mark draft 1 (a substring) as sent."""
    config = config_for(world, mailbox)
    ada = queued(world, mailbox)
    sync_drafts_folder(world.db, config, now=NOW)
    other = f"{HEADER}: {ada}{ada}\r\nMessage-ID: <other@example.org>\r\nSubject: x\r\n\r\nx\r\n"
    mailbox.dovecot.append(mailbox.user, "Sent", other.encode())
    report = sync_drafts_folder(world.db, config, now=NOW)
    assert report.sent == [] and world.get(ada).state == "queued"


def test_the_scan_places_and_reconciles_when_enabled(world: World, mailbox: Mailbox) -> None:
    ada = queued(world, mailbox)
    scan_once(world.db, config_for(world, mailbox, on=False), now=NOW)
    assert folder(mailbox) == {} and world.get(ada).folder_uid is None
    report = scan_once(world.db, config_for(world, mailbox), now=NOW)
    assert not report.errors
    assert world.get(ada).folder_uid == copy_of(mailbox, ada)[0]


def test_a_sync_failure_is_recorded_in_the_scan_report(
    world: World, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued(world, mailbox)
    config = config_for(world, mailbox)
    from followupd.engine import drafts_folder
    from followupd.errors import MailError

    def broken(*_a: Any, **_k: Any) -> Any:
        raise MailError("IMAP APPEND Drafts: boom")

    monkeypatch.setattr(drafts_folder, "_append", broken)
    report = scan_once(world.db, config, now=NOW)
    assert "Drafts folder" in str(report.errors["main"]) and "boom" in str(report.errors["main"])

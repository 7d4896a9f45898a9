"""Build RFC 5322 test messages: people's mail, replies, newsletters, list posts, bounces, encoded names.

Every builder returns the raw message as ``bytes`` with CRLF line ends, ready for IMAP APPEND or a Maildir
file. Message-IDs are written with angle brackets; the ``mid`` helpers take and return the bare id (what
followupd stores). Nothing here is copied from real mail.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from sqlalchemy import func, select

from followupd.store import contacts_repo
from followupd.store.contacts_repo import ContactView
from followupd.store.db import Database
from followupd.store.models import AddressRow, Folder, Message, Thread

DOMAIN = "mailgen.test"
BASE_TIME = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
"""A Monday; ``at(days, hours)`` counts from here so tests can name times without clutter."""


def at(days: float = 0, hours: float = 0) -> datetime:
    """``BASE_TIME`` plus ``days`` and ``hours`` (aware UTC)."""
    return BASE_TIME + timedelta(days=days, hours=hours)


def mid(tag: str) -> str:
    """The bare Message-ID for ``tag`` (``tag@mailgen.test``)."""
    return f"{tag}@{DOMAIN}"


def encoded_word(text: str, *, charset: str = "utf-8", encoding: str = "Q") -> str:
    """``text`` as one RFC 2047 encoded word (``=?charset?Q?...?=`` or ``=?charset?B?...?=``)."""
    data = text.encode(charset)
    if encoding.upper() == "B":
        payload = base64.b64encode(data).decode("ascii")
    else:
        payload = "".join(
            "_"
            if byte == 0x20
            else chr(byte)
            if (0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A)
            else f"={byte:02X}"
            for byte in data
        )
    return f"=?{charset}?{encoding.upper()}?{payload}?="


def named(email: str, name: str = "") -> str:
    """``Name <email>``; a name with specials is quoted, a pre-encoded word is left alone."""
    if not name:
        return email
    if name.startswith("=?") or all(c.isalnum() or c in " -'" for c in name):
        return f"{name} <{email}>"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{email}>'


@dataclass
class Mail:
    """A message being built. ``render()`` gives its bytes; the fields say what the scanner should see."""

    sender: str
    to: Sequence[str]
    subject: str
    date: datetime
    message_id: str  # bare, without <>
    cc: Sequence[str] = ()
    in_reply_to: str | None = None  # bare
    references: Sequence[str] = ()  # bare ids, oldest first
    extra: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "text/plain; charset=utf-8"
    body: str = "Hello,\r\n\r\nA short note.\r\n"

    def render(self) -> bytes:
        lines = [
            ("From", self.sender),
            ("To", ", ".join(self.to)),
        ]
        if self.cc:
            lines.append(("Cc", ", ".join(self.cc)))
        lines += [
            ("Subject", self.subject),
            ("Date", format_datetime(self.date)),
            ("Message-ID", f"<{self.message_id}>"),
        ]
        if self.in_reply_to:
            lines.append(("In-Reply-To", f"<{self.in_reply_to}>"))
        if self.references:
            lines.append(("References", " ".join(f"<{r}>" for r in self.references)))
        lines += [("MIME-Version", "1.0"), ("Content-Type", self.content_type), *self.extra]
        head = "".join(f"{name}: {value}\r\n" for name, value in lines)
        body = self.body.replace("\r\n", "\n").replace("\n", "\r\n")
        return (head + "\r\n" + body).encode("utf-8")


def person(
    sender: str,
    to: Sequence[str] | str,
    subject: str,
    date: datetime,
    tag: str,
    *,
    cc: Sequence[str] = (),
    body: str = "Hello,\n\nGood to hear from you. How is the project going?\n",
) -> Mail:
    """A plain person-to-person message."""
    return Mail(
        sender=sender,
        to=[to] if isinstance(to, str) else list(to),
        cc=list(cc),
        subject=subject,
        date=date,
        message_id=mid(tag),
        body=body,
    )


def reply(
    original: Mail,
    sender: str,
    date: datetime,
    tag: str,
    *,
    to: Sequence[str] | str | None = None,
    cc: Sequence[str] = (),
    body: str = "Thanks, that works for me.\n",
) -> Mail:
    """A reply to ``original`` with In-Reply-To and References, "Re:" subject; To defaults to its sender."""
    recipients = [original.sender] if to is None else ([to] if isinstance(to, str) else list(to))
    subject = original.subject if original.subject.lower().startswith("re:") else f"Re: {original.subject}"
    return Mail(
        sender=sender,
        to=recipients,
        cc=list(cc),
        subject=subject,
        date=date,
        message_id=mid(tag),
        in_reply_to=original.message_id,
        references=[*original.references, original.message_id],
        body=body,
    )


def newsletter(sender: str, to: str, subject: str, date: datetime, tag: str) -> Mail:
    """Bulk marketing mail: List-Unsubscribe, Precedence: bulk, a null-ish feedback id."""
    return Mail(
        sender=sender,
        to=[to],
        subject=subject,
        date=date,
        message_id=mid(tag),
        extra=[
            ("List-Unsubscribe", f"<mailto:unsubscribe@{DOMAIN}?subject={tag}>, <https://{DOMAIN}/u/{tag}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Precedence", "bulk"),
        ],
        body="This week's offers, picked for you.\n",
    )


def list_post(
    poster: str,
    list_address: str,
    subject: str,
    date: datetime,
    tag: str,
    *,
    list_name: str = "Developers",
    in_reply_to: Mail | None = None,
) -> Mail:
    """A mailing-list post as delivered to subscribers: To the list, List-Id, List-Post, Precedence: list."""
    local, _, domain = list_address.partition("@")
    mail = Mail(
        sender=poster,
        to=[list_address],
        subject=subject if in_reply_to is None else f"Re: {in_reply_to.subject.removeprefix('Re: ')}",
        date=date,
        message_id=mid(tag),
        extra=[
            ("List-Id", f"{list_name} <{local}.{domain}>"),
            ("List-Post", f"<mailto:{list_address}>"),
            ("List-Unsubscribe", f"<mailto:{local}-leave@{domain}>"),
            ("Precedence", "list"),
            ("Sender", f"{local}-bounces@{domain}"),
        ],
        body="Has anyone tried the new release on ARM?\n",
    )
    if in_reply_to is not None:
        mail.in_reply_to = in_reply_to.message_id
        mail.references = [*in_reply_to.references, in_reply_to.message_id]
    return mail


def bounce(to: str, original: Mail, date: datetime, tag: str, *, mta: str = "mx.example.net") -> Mail:
    """A delivery status notification (multipart/report) from MAILER-DAEMON about ``original``."""
    boundary = f"dsn-{tag}"
    body = (
        f"--{boundary}\n"
        "Content-Type: text/plain; charset=us-ascii\n\n"
        f"Delivery to {original.to[0]} failed permanently.\n\n"
        f"--{boundary}\n"
        "Content-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {mta}\n\n"
        f"Final-Recipient: rfc822; {original.to[0]}\nAction: failed\nStatus: 5.1.1\n\n"
        f"--{boundary}\n"
        "Content-Type: text/rfc822-headers\n\n"
        f"Message-ID: <{original.message_id}>\nSubject: {original.subject}\n\n"
        f"--{boundary}--\n"
    )
    return Mail(
        sender=f"Mail Delivery System <MAILER-DAEMON@{mta}>",
        to=[to],
        subject="Undelivered Mail Returned to Sender",
        date=date,
        message_id=mid(tag),
        content_type=f'multipart/report; report-type=delivery-status; boundary="{boundary}"',
        extra=[("Auto-Submitted", "auto-replied"), ("Return-Path", "<>")],
        body=body,
    )


def render_all(mails: Iterable[Mail]) -> list[bytes]:
    """``[m.render() for m in mails]``."""
    return [m.render() for m in mails]


def filler(sender: str, to: str, count: int, *, start: datetime, prefix: str) -> list[Mail]:
    """``count`` distinct person messages from ``sender``, one an hour from ``start`` (bulk seeding)."""
    return [
        person(sender, to, f"{prefix} note {n}", start + timedelta(hours=n), f"{prefix}-{n}")
        for n in range(count)
    ]


# ------------------------------------------------------------------------------------ a sample mailbox

# Who is who in ``build_world`` (the user is whoever ``me`` is).
ALIAS = "me@alias.example.net"  # the user's other address: writes a note to self, is Cc'd on Eve's intro
ADA = "ada@example.org"  # wrote, was answered, wrote again: a contact who is owed a reply
BOB = "bob@cold.example"  # a cold sender never answered: excluded as "unanswered"
BRAND = "hello@brand.example"  # a newsletter sender: only bulk mail, never a contact
LIST = "dev@lists.example.org"  # a mailing list (List-Post); the user's reply goes To it
CAROL = "carol@example.com"  # posts to the list; the user's reply Cc's her: a contact
DAVE = "dave@example.com"  # posts to the list, never written to: not a contact
DAEMON = "mailer-daemon@mx.example.net"  # sends a bounce (multipart/report)
ZOE = "zoe@example.de"  # RFC 2047 Q-encoded UTF-8 name; answered
JOSE = "jose@example.es"  # RFC 2047 B-encoded ISO-8859-1 name; answered
EVE = "eve@example.net"  # the user wrote to her first; she never wrote
FRANK = "frank@example.net"  # many unanswered notes (they make INBOX take more than one batch)
FILLER = 55  # with batch_size 50, INBOX takes two fetch batches


@dataclass
class World:
    """The seeded mailbox: what is in INBOX and Sent."""

    inbox: list[Mail]
    sent: list[Mail]

    @property
    def all(self) -> list[Mail]:
        return [*self.inbox, *self.sent]


def build_world(me: str, *, fillers: int = FILLER) -> World:
    """A small mailbox with one of each kind of correspondent (see the constants above)."""
    ada1 = person(named(ADA, "Ada Lovelace"), me, "Lunch next week?", at(0), "ada-1")
    bob1 = person(named(BOB, "Bob Cold"), me, "Quick question about your stack", at(0, 2), "bob-1")
    news = newsletter(named(BRAND, "Brand Weekly"), me, "Offers", at(1), "brand-1")
    carol1 = list_post(named(CAROL, "Carol Poster"), LIST, "ARM builds", at(1, 3), "carol-1")
    dave1 = list_post(named(DAVE, "Dave Lurker"), LIST, "", at(1, 5), "dave-1", in_reply_to=carol1)
    gone = person(me, "gone@example.org", "Hello?", at(1, 20), "gone-1")
    dsn = bounce(me, gone, at(2), "bounce-1")
    zoe_name = encoded_word("Zoë Brüning")
    zoe1 = person(named(ZOE, zoe_name), me, "Grüße aus Berlin", at(2, 1), "zoe-1")
    jose_name = encoded_word("José Núñez", charset="iso-8859-1", encoding="B")
    jose1 = person(named(JOSE, jose_name), me, "Hola", at(2, 2), "jose-1")
    self_note = person(ALIAS, me, "note to self", at(2, 3), "self-1")
    frank = filler(named(FRANK, "Frank Pen"), me, fillers, start=at(4), prefix="frank")

    my_ada = reply(ada1, me, at(0, 5), "me-ada-1", body="Tuesday works.\n")
    ada2 = reply(my_ada, named(ADA, "Ada Lovelace"), at(3), "ada-2", to=me, body="Great, see you then!\n")
    # A reply to a list thread goes To the list and Cc the poster (what every mail client's Reply-All does).
    my_carol = reply(carol1, me, at(1, 6), "me-carol-1", to=LIST, cc=[named(CAROL, "Carol Poster")])
    my_zoe = reply(zoe1, me, at(2, 4), "me-zoe-1")
    my_jose = reply(jose1, me, at(2, 5), "me-jose-1")
    my_eve = person(me, named(EVE, "Eve Newman"), "Introduction", at(2, 6), "me-eve-1", cc=[ALIAS])
    return World(
        inbox=[ada1, bob1, news, carol1, dave1, dsn, zoe1, jose1, self_note, ada2, *frank],
        sent=[my_ada, my_carol, my_zoe, my_jose, my_eve],
    )


# ------------------------------------------------------------------------------------------ scan harness


def account_toml(
    name: str,
    email: str,
    *,
    port: int,
    password_env: str = "PW",
    username: str = "",
    aliases: Sequence[str] = (),
    batch_size: int = 50,
) -> str:
    """One ``[[accounts]]`` table reading IMAP on 127.0.0.1 without TLS."""
    alias_list = ", ".join(f'"{a}"' for a in aliases)
    user_line = f'username = "{username}"\n' if username else ""
    return (
        "[[accounts]]\n"
        f'name = "{name}"\n'
        f'email = "{email}"\n'
        f"aliases = [{alias_list}]\n"
        "[accounts.imap]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        'security = "none"\n'
        f'password_env = "{password_env}"\n'
        f"{user_line}"
        f"batch_size = {batch_size}\n"
        'timeout = "10s"\n'
    )


def config_toml(db_url: str, *accounts: str) -> str:
    """A whole config: the database and the given ``account_toml`` tables."""
    return f'[database]\nurl = "{db_url}"\n\n' + "\n".join(accounts)


def server_uids(client: Any, folder: str) -> dict[str, int]:
    """Bare Message-ID -> UID of every message in ``folder``, read with an imapclient client."""
    client.select_folder(folder, readonly=True)
    uids = client.search(["ALL"])
    found: dict[str, int] = {}
    if not uids:
        return found
    for uid, data in client.fetch(uids, [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).items():
        raw = data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode("ascii", "replace")
        value = raw.partition(":")[2].strip()
        found[value.strip("<>")] = uid
    return found


def stored(db: Database) -> dict[str, tuple[str | None, int | None, str]]:
    """Bare Message-ID -> (folder name, uid, direction) of every stored message; asserts one row per id."""
    with db.read() as session:
        rows = session.execute(
            select(Message.message_id, Folder.name, Message.uid, Message.direction).join(
                Folder, Folder.id == Message.folder_id, isouter=True
            )
        ).all()
        count = session.scalar(select(func.count()).select_from(Message))
    assert count == len(rows) == len({r[0] for r in rows}), "a Message-ID is stored twice"
    return {message_id: (folder, uid, direction) for message_id, folder, uid, direction in rows}


def contacts(db: Database) -> dict[str, ContactView]:
    """Every address of every contact -> the contact (``list_contacts``)."""
    with db.read() as session:
        views = contacts_repo.list_contacts(session)
    return {address: view for view in views for address in view.addresses}


def excluded(db: Database) -> dict[str, str]:
    """Address -> why it is not a contact (``list_excluded``)."""
    with db.read() as session:
        return {e.email: e.reason for e in contacts_repo.list_excluded(session)}


def snapshot(db: Database) -> dict[str, object]:
    """Everything a scan derives, without row ids: equal snapshots mean equal knowledge.

    Messages with their location, every address's counts and verdict, contacts by their addresses, threads,
    and the folder cursors.
    """
    with db.read() as session:
        addresses = sorted(
            (
                a.email,
                a.name,
                a.inbound_count,
                a.outbound_count,
                a.bulk_count,
                a.is_list,
                a.excluded_reason,
                a.first_seen_at,
                a.last_inbound_at,
                a.last_outbound_at,
                a.contact_id is not None,
            )
            for a in session.scalars(select(AddressRow))
        )
        threads = sorted(
            (
                t.thread_key,
                t.subject,
                t.message_count,
                t.last_at,
                t.last_message_id,
                t.last_direction,
                t.last_sender,
                t.last_automated,
            )
            for t in session.scalars(select(Thread))
        )
        folders = sorted(
            (f.name, f.role, f.uidvalidity, f.last_uid, f.uidnext, f.messages)
            for f in session.scalars(select(Folder))
        )
    people = sorted(
        (
            v.addresses,
            v.name,
            v.status,
            v.first_seen_at,
            v.last_inbound_at,
            v.last_outbound_at,
            v.last_touch_at,
            v.owes_reply,
        )
        for v in {view.id: view for view in contacts(db).values()}.values()
    )
    return {
        "messages": stored(db),
        "addresses": addresses,
        "threads": threads,
        "folders": folders,
        "contacts": people,
    }

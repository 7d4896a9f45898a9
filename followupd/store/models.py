"""The schema. Invariants live here as constraints (UNIQUE, NOT NULL, CHECK, foreign keys), not only
in Python.

Timestamps are timezone-aware UTC and named ``*_at``. Changing anything here needs an Alembic revision in
``store/migrations/versions`` — a test compares the two.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from followupd.store.types import ForeignText, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class DraftState(enum.StrEnum):
    """A draft's place in its life cycle (docs/lifecycle.md)."""

    QUEUED = "queued"
    APPROVED = "approved"
    SNOOZED = "snoozed"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    UNKNOWN = "unknown"


LIVE_STATES = (DraftState.QUEUED, DraftState.APPROVED, DraftState.SNOOZED)


class ContactStatus(enum.StrEnum):
    """Set by the user; scans never change it."""

    ACTIVE = "active"
    MUTED = "muted"
    IGNORED = "ignored"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    last_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(ForeignText)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owner: Mapped[str | None] = mapped_column(String(200), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Folder(Base):
    """A scanned folder (IMAP) or local store (Maildir/mbox) and its sync cursor."""

    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1000))
    role: Mapped[str] = mapped_column(String(20), default="other")
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    uidnext: Mapped[int | None] = mapped_column(BigInteger)
    highestmodseq: Mapped[int | None] = mapped_column(BigInteger)
    messages: Mapped[int | None] = mapped_column(Integer)
    local_state: Mapped[str | None] = mapped_column(Text)
    last_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "<uidvalidity>:<uid>": the last UID the meetings pass has read (IMAP only); behind last_uid = work left.
    meetings_cursor: Mapped[str | None] = mapped_column(Text)


class Message(Base):
    """One message, deduplicated by Message-ID per account. Headers only, never bodies."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("account_id", "message_id"),
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        Index("ix_messages_thread", "account_id", "thread_key", "date_at"),
        Index("ix_messages_sender", "account_id", "sender", "date_at"),
        Index("ix_messages_location", "folder_id", "uid"),
        Index("ix_messages_direction", "account_id", "direction", "date_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="SET NULL"))
    uid: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(998))
    thread_key: Mapped[str] = mapped_column(String(998))
    date_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tz_offset: Mapped[int | None] = mapped_column(Integer)
    direction: Mapped[str] = mapped_column(String(3))
    sender: Mapped[str] = mapped_column(String(320), default="")
    recipients: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    automated: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(100), default="")
    asks: Mapped[bool] = mapped_column(Boolean, default=False)
    has_calendar: Mapped[bool] = mapped_column(Boolean, default=False)


class Contact(Base):
    """A person, with one or more addresses. ``status``, tier, tags, notes and cadence are the user's."""

    __tablename__ = "contacts"
    __table_args__ = (CheckConstraint(_in("status", ContactStatus), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(10), default=ContactStatus.ACTIVE.value)
    muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tier: Mapped[str | None] = mapped_column(String(50))
    tags: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    cadence_days: Mapped[float | None] = mapped_column(Float)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_meeting_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_touch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owes_reply: Mapped[bool] = mapped_column(Boolean, default=False)
    tz_offset: Mapped[int | None] = mapped_column(Integer)


class AddressRow(Base):
    """Every address seen, with what followupd learned of it and whether it was admitted as a contact."""

    __tablename__ = "addresses"
    __table_args__ = (
        UniqueConstraint("account_id", "email"),
        Index("ix_addresses_contact", "contact_id"),
        Index("ix_addresses_email", "email"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(300), default="")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    inbound_count: Mapped[int] = mapped_column(Integer, default=0)
    outbound_count: Mapped[int] = mapped_column(Integer, default=0)
    bulk_count: Mapped[int] = mapped_column(Integer, default=0)
    is_list: Mapped[bool] = mapped_column(Boolean, default=False)
    met: Mapped[bool] = mapped_column(Boolean, default=False)
    excluded_reason: Mapped[str] = mapped_column(String(100), default="")
    tz_offset: Mapped[int | None] = mapped_column(Integer)


class Thread(Base):
    """A conversation: its last message and who wrote it."""

    __tablename__ = "threads"
    __table_args__ = (
        UniqueConstraint("account_id", "thread_key"),
        Index("ix_threads_last_sender", "account_id", "last_sender"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    thread_key: Mapped[str] = mapped_column(String(998))
    subject: Mapped[str] = mapped_column(Text, default="")
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_message_id: Mapped[str] = mapped_column(String(998))
    last_direction: Mapped[str] = mapped_column(String(3))
    last_sender: Mapped[str] = mapped_column(String(320), default="")
    last_automated: Mapped[bool] = mapped_column(Boolean, default=False)


class Meeting(Base):
    """A meeting learned from an invite (by iCalendar UID) or from a plain-text arrangement."""

    __tablename__ = "meetings"
    __table_args__ = (
        UniqueConstraint("account_id", "uid", "recurrence_key"),
        CheckConstraint("status IN ('confirmed', 'tentative', 'cancelled')", name="status"),
        CheckConstraint("source IN ('invite', 'text')", name="source"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(998))
    recurrence_key: Mapped[str] = mapped_column(String(64), default="")
    thread_key: Mapped[str | None] = mapped_column(String(998))
    subject: Mapped[str] = mapped_column(Text, default="")
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(10))
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    stamp_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    organizer: Mapped[str | None] = mapped_column(String(320))
    rrule: Mapped[str | None] = mapped_column(Text)
    # JSON: an invite's iTIP state (winning event + replies), or a text meeting's arrangement summary.
    state: Mapped[str | None] = mapped_column(Text)
    # Whether the meeting counts as meeting its people (store/meetings_repo.py), and the end of its latest
    # occurrence that has ended (None while none has, and always when it does not count).
    counts: Mapped[bool] = mapped_column(Boolean, default=False)
    last_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MeetingAttendee(Base):
    __tablename__ = "meeting_attendees"
    __table_args__ = (UniqueConstraint("meeting_id", "email"), Index("ix_meeting_attendees_email", "email"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(300), default="")
    partstat: Mapped[str] = mapped_column(String(20), default="NEEDS-ACTION")


class Arrangement(Base):
    """What one message said about a meeting in plain words (proposal, confirmation, reschedule, cancel)."""

    __tablename__ = "arrangements"
    __table_args__ = (
        UniqueConstraint("account_id", "message_id"),
        Index("ix_arrangements_thread", "account_id", "thread_key"),
        CheckConstraint("kind IN ('proposal', 'confirmation', 'reschedule', 'cancel')", name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(998))
    thread_key: Mapped[str] = mapped_column(String(998))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_user: Mapped[bool] = mapped_column(Boolean, default=False)
    kind: Mapped[str] = mapped_column(String(20))
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    has_day: Mapped[bool] = mapped_column(Boolean, default=False)
    has_time: Mapped[bool] = mapped_column(Boolean, default=False)


class Draft(Base):
    """A queued follow-up. ``key`` makes the same follow-up impossible to queue twice."""

    __tablename__ = "drafts"
    __table_args__ = (
        UniqueConstraint("key"),
        UniqueConstraint("message_id"),
        CheckConstraint(_in("state", DraftState), name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_drafts_state_scheduled", "state", "scheduled_at"),
        Index("ix_drafts_contact", "contact_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(400))
    reason: Mapped[str] = mapped_column(String(30))
    template: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(12), default=DraftState.QUEUED.value)
    from_addr: Mapped[str] = mapped_column(String(400))
    to_addrs: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(400))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    why: Mapped[str] = mapped_column(Text, default="")
    lint: Mapped[str] = mapped_column(Text, default="[]")
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(ForeignText)
    note: Mapped[str] = mapped_column(Text, default="")
    invalid_edit: Mapped[str | None] = mapped_column(Text)
    folder_uid: Mapped[int | None] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Worker(Base):
    """A running daemon: its heartbeat and what it is doing, for `followupd status`."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(Text, default="")
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Alive until then (database clock); renewed by a worker sharing accounts on PostgreSQL."""

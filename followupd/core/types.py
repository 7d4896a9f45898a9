"""Value types shared by the pure core and the adapters around it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Direction(enum.StrEnum):
    """Whether a message was written by the user (``out``) or to the user (``in``)."""

    IN = "in"
    OUT = "out"


class Role(enum.StrEnum):
    """Where an address stood in a message's headers."""

    FROM = "from"
    TO = "to"
    CC = "cc"
    BCC = "bcc"
    REPLY_TO = "reply_to"


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: lower-cased ``email`` and the display name as decoded (may be empty)."""

    email: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What followupd keeps of one message: its headers, decoded leniently.

    ``date_at`` is timezone-aware UTC, or None when the Date header is missing or unreadable (the caller then
    falls back to the server's INTERNALDATE or the file time). ``tz_offset_minutes`` is the offset the
    sender's Date header carried, kept so that sending can later happen in the recipient's own time zone.
    """

    message_id: str
    subject: str
    date_at: datetime | None
    tz_offset_minutes: int | None
    sender: Address | None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # Lower-cased header name -> raw (unfolded, undecoded) value, only for headers that classification reads.
    # (auto-submitted, precedence, list-id, list-unsubscribe, list-post, return-path, content-type,
    # x-auto-response-suppress, x-autoreply, x-autorespond, x-mailer, x-gm-thrid ...)
    flags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a message is automated/bulk, and why (``reason`` is empty for a person's message)."""

    automated: bool
    reason: str = ""

"""What every mail source hands the scanner: raw header blocks with where they came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message's header block, as fetched. ``uid`` is the IMAP UID or the local source's ordinal key."""

    uid: int
    headers: bytes
    internal_at: datetime | None = None
    gm_msgid: int | None = None
    gm_thrid: int | None = None
    calendar: tuple[str, ...] = ()
    text: str | None = None


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """A folder's STATUS: enough to skip an unchanged folder without selecting it."""

    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int | None = None


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """A folder to scan and its role: inbox, sent, all (Gmail's All Mail) or other."""

    name: str
    role: str

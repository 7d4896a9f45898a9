"""Reduce a batch of parsed messages to what the store keeps: message rows and per-address and per-thread
aggregates. The engine writes one digest per transaction, together with the folder cursor it covers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from followupd.core.addresses import is_role_address, list_addresses
from followupd.core.classify import classify
from followupd.core.threads import base_subject, thread_key
from followupd.core.types import Direction, MessageMeta

MAX_RECIPIENTS_KEPT = 50
_OUT = Direction.OUT.value  # an enum member's .value is a descriptor call: read once, not twice a message
_IN = Direction.IN.value


@dataclass(slots=True)
class MessageRecord:
    """One row of ``messages``."""

    uid: int
    message_id: str
    thread_key: str
    date_at: datetime
    tz_offset: int | None
    direction: str
    sender: str
    recipients: str
    subject: str
    in_reply_to: str | None
    automated: bool
    reason: str
    asks: bool


@dataclass(slots=True)
class AddressDelta:
    """What one batch adds to an address's record."""

    email: str
    name: str = ""
    first_seen_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    inbound_count: int = 0
    outbound_count: int = 0
    bulk_count: int = 0
    is_list: bool = False
    role_reason: str = ""
    tz_offset: int | None = None


@dataclass(slots=True)
class ThreadDelta:
    """What one batch adds to a thread: its message count and, if newer, its last message."""

    key: str
    subject: str
    count: int
    last_at: datetime
    last_message_id: str
    last_direction: str
    last_sender: str
    last_automated: bool


@dataclass
class Digest:
    """A batch, reduced. ``learned_own`` are senders of Sent-folder mail not configured as the user's."""

    messages: list[MessageRecord] = field(default_factory=list)
    addresses: dict[str, AddressDelta] = field(default_factory=dict)
    threads: dict[str, ThreadDelta] = field(default_factory=dict)
    learned_own: set[str] = field(default_factory=set)


def synthetic_message_id(raw: bytes) -> str:
    """A stable id for a message without Message-ID: the same header block always gets the same id."""
    return "synthetic." + hashlib.sha1(raw, usedforsecurity=False).hexdigest() + "@followupd.invalid"


def digest(
    items: Iterable[tuple[int, MessageMeta, bytes, datetime]],
    *,
    own: frozenset[str],
    sent_folder: bool = False,
) -> Digest:
    """Reduce ``(uid, meta, raw header block, fallback date)`` items to a Digest.

    A message counts as the user's (``out``) when its sender is one of ``own`` or it lies in the Sent folder.
    Messages whose Message-ID repeats within the batch are kept once.
    """
    result = Digest()
    seen: set[str] = set()
    for uid, parsed, raw, fallback in items:
        message_id = parsed.message_id or synthetic_message_id(raw)
        if message_id in seen:
            continue
        seen.add(message_id)
        meta = parsed if parsed.message_id else replace(parsed, message_id=message_id)
        record = _record(uid, meta, fallback, own, sent_folder)
        if sent_folder and meta.sender is not None and meta.sender.email not in own:
            result.learned_own.add(meta.sender.email)
        result.messages.append(record)
        _count_addresses(result.addresses, meta, record, own)
        _count_thread(result.threads, record)
    return result


def _record(
    uid: int, meta: MessageMeta, fallback: datetime, own: frozenset[str], sent: bool
) -> MessageRecord:
    verdict = classify(meta)
    sender = meta.sender.email if meta.sender else ""
    outbound = sent or sender in own
    recipients = [a.email for a in (*meta.to, *meta.cc)][:MAX_RECIPIENTS_KEPT]
    return MessageRecord(
        uid=uid,
        message_id=meta.message_id,
        thread_key=thread_key(meta) or "mid:" + meta.message_id,
        date_at=meta.date_at or fallback,
        tz_offset=meta.tz_offset_minutes,
        direction=_OUT if outbound else _IN,
        sender=sender,
        recipients=" ".join(recipients),
        subject=meta.subject[:500],
        in_reply_to=meta.in_reply_to,
        # The user's own mail is never "automated" for the purpose of relationships, even with a list header.
        automated=verdict.automated and not outbound,
        reason=verdict.reason if not outbound else "",
        asks=outbound and "?" in meta.subject,
    )


def _delta(addresses: dict[str, AddressDelta], email: str, name: str, at: datetime) -> AddressDelta:
    delta = addresses.get(email)
    if delta is None:
        delta = addresses[email] = AddressDelta(
            email=email, first_seen_at=at, role_reason=is_role_address(email) or ""
        )
    elif delta.first_seen_at is None or at < delta.first_seen_at:
        delta.first_seen_at = at
    if name:
        delta.name = name
    return delta


def _count_addresses(
    addresses: dict[str, AddressDelta], meta: MessageMeta, record: MessageRecord, own: frozenset[str]
) -> None:
    at = record.date_at
    if record.direction == _OUT:
        for addr in (*meta.to, *meta.cc):
            if addr.email not in own:
                delta = _delta(addresses, addr.email, addr.name, at)
                delta.outbound_count += 1
                delta.last_outbound_at = _later(delta.last_outbound_at, at)
        return
    if meta.sender is None or meta.sender.email in own:
        return
    delta = _delta(addresses, meta.sender.email, meta.sender.name, at)
    if record.automated:
        delta.bulk_count += 1
        for list_address in list_addresses(meta.flags):
            _delta(addresses, list_address, "", at).is_list = True
        return
    delta.inbound_count += 1
    delta.last_inbound_at = _later(delta.last_inbound_at, at)
    delta.tz_offset = record.tz_offset if record.tz_offset is not None else delta.tz_offset


def _count_thread(threads: dict[str, ThreadDelta], record: MessageRecord) -> None:
    current = threads.get(record.thread_key)
    if current is None:
        threads[record.thread_key] = ThreadDelta(
            key=record.thread_key,
            subject=base_subject(record.subject)[:300],
            count=1,
            last_at=record.date_at,
            last_message_id=record.message_id,
            last_direction=record.direction,
            last_sender=record.sender,
            last_automated=record.automated,
        )
        return
    current.count += 1
    if record.date_at >= current.last_at:
        current.last_at = record.date_at
        current.last_message_id = record.message_id
        current.last_direction = record.direction
        current.last_sender = record.sender
        current.last_automated = record.automated


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a

"""After a crash: ``recover_sending`` and ``resolve_unknown`` settle drafts whose sending was interrupted.

A SENDING draft found at start-up may or may not have gone out: :func:`recover_sending` makes it UNKNOWN,
and :func:`resolve_unknown` looks for its Message-ID in the account's Sent folder: found -> SENT, otherwise
it stays UNKNOWN for the user to decide. Nothing is ever resent blindly. (With the outbox transport the file
is the proof: found -> SENT, absent -> APPROVED, since it is written atomically.) Both take ``accounts``
(names; None: every account), so that a worker settles only the accounts it owns.

:mod:`followupd.engine.send` re-exports everything here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from followupd.config import Config, SendConfig
from followupd.engine import deliver as trip
from followupd.errors import FollowupdError
from followupd.mail import outbox
from followupd.store.db import Database
from followupd.store.models import Account, Draft, DraftState

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted while sending; it will be looked for in the Sent folder, never simply resent"


@dataclass(frozen=True, slots=True)
class Resolution:
    """What :func:`resolve_unknown` concluded about one UNKNOWN draft."""

    draft_id: int
    state: str
    reason: str


def recover_sending(db: Database, accounts: Collection[str] | None = None) -> list[int]:
    """At start-up: every SENDING draft (its sender died mid-send) becomes UNKNOWN. Returns their ids.

    Only the drafts of ``accounts`` (names; None: every account). The version is left alone, so that a
    sender which is in fact still running can record its outcome.
    """
    query = (
        select(Draft.id)
        .join(Account, Draft.account_id == Account.id)
        .where(Draft.state == DraftState.SENDING.value)
    )
    with db.write() as session:
        ids = list(session.scalars(trip.only_accounts(query, accounts)))
        if ids:
            session.execute(
                update(Draft)
                .where(Draft.id.in_(ids), Draft.state == DraftState.SENDING.value)
                .values(state=DraftState.UNKNOWN.value, last_error=INTERRUPTED)
            )
    for draft_id in ids:
        log.warning(
            "draft %d was being sent when followupd stopped; whether it went out is unknown", draft_id
        )
    return ids


def resolve_unknown(
    db: Database, config: Config, *, now: datetime, accounts: Collection[str] | None = None
) -> list[Resolution]:
    """Settle UNKNOWN drafts without resending; see :func:`resolve_unknown_async`. Blocking."""
    return asyncio.run(resolve_unknown_async(db, config, now=now, accounts=accounts))


async def resolve_unknown_async(
    db: Database, config: Config, *, now: datetime, accounts: Collection[str] | None = None
) -> list[Resolution]:
    """Look for each UNKNOWN draft's Message-ID in its account's Sent folder over IMAP.

    Found -> SENT (sent at the attempt's time; the contact is touched). Not found, or the folder cannot be
    read -> it stays UNKNOWN, for the user. With the outbox transport: its file -> SENT, none -> APPROVED.
    Only the drafts of ``accounts`` (names; None: every account). ``now`` is unused today (the sent time is
    the attempt's); it keeps the daemon's units alike.
    """
    query = (
        select(Draft.id, Draft.version, Draft.message_id, Draft.updated_at, Draft.contact_id, Account.name)
        .join(Account, Draft.account_id == Account.id)
        .where(Draft.state == DraftState.UNKNOWN.value)
        .order_by(Draft.id)
    )
    with db.read() as session:
        rows = session.execute(trip.only_accounts(query, accounts)).all()
    lookup = _Lookup(config)
    results = []
    try:
        for draft_id, version, message_id, attempted_at, contact_id, name in rows:
            found = await lookup.went_out(draft_id, trip.bare_id(message_id), name)
            if isinstance(found, str):
                results.append(Resolution(draft_id, DraftState.UNKNOWN.value, found))
                continue
            results.append(
                _settle(
                    db,
                    config.send,
                    found=found,
                    draft_id=draft_id,
                    version=version,
                    contact_id=contact_id,
                    at=attempted_at,
                )
            )
    finally:
        await asyncio.to_thread(lookup.folders.close)
    return results


class _Lookup:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.folders = trip.SentFolders()
        self.failed: set[str] = set()

    async def went_out(self, draft_id: int, message_id: str, account: str) -> bool | str:
        """Whether the draft went out, or why that cannot be told now."""
        send = self.config.send
        if send.transport == "outbox":
            return send.outbox_dir is not None and outbox.find(send.outbox_dir, draft_id) is not None
        if account in self.failed:
            return f"cannot read account {account}'s Sent folder now"
        try:
            return await asyncio.to_thread(self.folders.contains, self.config.account(account), message_id)
        except FollowupdError as exc:
            self.failed.add(account)
            log.warning("cannot look for unknown drafts in %s's Sent folder: %s", account, exc)
            return f"cannot read the Sent folder: {exc}"


def _settle(
    db: Database, send: SendConfig, *, found: bool, draft_id: int, version: int, contact_id: int, at: datetime
) -> Resolution:
    if not found and send.transport == "smtp":
        why = (
            "not in the Sent folder: check with the recipient, then `followupd drafts mark-sent"
            f" {draft_id}` if it arrived, or `followupd drafts retry {draft_id}` to send it again"
        )
        return Resolution(draft_id, DraftState.UNKNOWN.value, why)
    if found:
        state, why = (
            DraftState.SENT,
            f"found in the {'Sent folder' if send.transport == 'smtp' else 'outbox'}",
        )
        values: dict[str, Any] = {"sent_at": at, "next_attempt_at": None}
    else:
        state, why, values = DraftState.APPROVED, "never written to the outbox; it will go again", {}
    with db.write() as session:
        if not trip.cas(
            session, draft_id, version, [DraftState.UNKNOWN], state=state.value, last_error=None, **values
        ):
            return Resolution(draft_id, DraftState.UNKNOWN.value, "changed meanwhile; left as it is")
        if found:
            trip.touch(session, contact_id, at)
    log.info("unknown draft %d: %s", draft_id, why)
    return Resolution(draft_id, state.value, why)


__all__ = ["INTERRUPTED", "Resolution", "recover_sending", "resolve_unknown", "resolve_unknown_async"]

"""Review from any mail client: queued drafts mirrored into the account's Drafts folder, and reconciled.

With ``[send] drafts_folder = true`` every QUEUED draft of an IMAP account is APPENDed (flag ``\\Draft``) to
the account's Drafts folder (SPECIAL-USE ``\\Drafts``, else a usual name), carrying an ``X-Followupd-Id``
header with the draft's id; its UID is kept in ``Draft.folder_uid``. :func:`sync_drafts_folder` runs at the
end of every scan and reconciles each placed draft that is still live (queued, approved, snoozed):

1. its Message-ID (or its ``X-Followupd-Id``) is in the Sent folder: the user sent it from their client.
   It becomes SENT ("sent from your mail client") and its copies leave Drafts. The sender only ever takes
   APPROVED drafts, so a draft marked SENT here is never sent by followupd.
2. no message in Drafts carries its ``X-Followupd-Id`` (nor, for a client that drops unknown headers, its
   Message-ID): the user deleted it, and it becomes SKIPPED ("deleted from the Drafts folder"). A copy the
   client saved without either header is therefore taken as a deletion: the safe side, since followupd
   then never sends it, and whatever the user sends from the client is theirs.
3. the copy has another UID than the one followupd placed: IMAP messages are immutable, so a client that
   edits a draft stores a new message. Its subject and text/plain body, when they differ from the stored
   text (compared with whitespace normalised, as clients re-wrap), become the draft's text, re-linted, with
   the version bumped (compare-and-set as in :mod:`followupd.engine.review`). Its new UID is recorded.
   A copy without a readable text/plain part (an HTML-only edit) keeps the stored text; only its UID is
   recorded.
4. the copy is the one followupd placed but the stored text changed (edited with ``followupd drafts
   edit``): the copy is replaced by the current text.

Drafts that left the queue inside followupd (sent by followupd, skipped, superseded, failed...) have their
copies deleted from Drafts (``\\Deleted`` plus UID EXPUNGE), so the user cannot send one followupd already
sent or dropped, and ``folder_uid`` is cleared.

Ordering and "nothing is sent twice": reconciliation marks a client-sent draft SENT before the sender runs
(``followupd scan`` then ``followupd send``; the daemon runs the scan before each send pass). A draft the
user deletes is never sent by followupd either. The one window left is a draft that followupd sent and
whose copy is still in Drafts until the next sync: sending that copy from the client sends it again; the
copy is removed on the first sync after the send.

No database transaction is held across IMAP I/O: the database is read, the server talked to, and every
change written in its own short transaction afterwards.
"""

from __future__ import annotations

import email
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, select, update

from followupd import secrets
from followupd.config import AccountConfig, Config
from followupd.core.compose import sanitize_header
from followupd.core.lint import LintRules, lint
from followupd.engine.deliver import bare_id, outgoing
from followupd.errors import FollowupdError, MailError
from followupd.mail.imap import SENT_NAMES, ImapSession, translate
from followupd.store.db import Database
from followupd.store.models import LIVE_STATES, Account, Draft, DraftState

log = logging.getLogger(__name__)

HEADER = "X-Followupd-Id"
DRAFTS_NAMES = ("Drafts", "INBOX.Drafts", "[Gmail]/Drafts", "Draft", "INBOX.Draft")
SENT_NOTE = "sent from your mail client"
DELETED_NOTE = "deleted from the Drafts folder"
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_LIVE = tuple(s.value for s in LIVE_STATES)


@dataclass
class SyncReport:
    """What one sync did, over every account (draft ids), and the accounts that failed with why."""

    placed: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    errors: dict[str, FollowupdError] = field(default_factory=dict)


@dataclass(frozen=True)
class _Placed:
    """A draft's row as read before talking to the server."""

    id: int
    version: int
    state: str
    folder_uid: int | None
    message_id: str
    subject: str
    body: str
    reason: str


@dataclass
class _Copy:
    uid: int
    followupd_id: int | None
    message_id: str
    message: EmailMessage


def sync_drafts_folder(db: Database, config: Config, *, now: datetime, only: str | None = None) -> SyncReport:
    """Place and reconcile drafts in every IMAP account's Drafts folder (or only the account named).

    One failing account never stops the others: its error is in ``report.errors``; nothing raises for a
    server problem.
    """
    report = SyncReport()
    if not config.send.drafts_folder:
        return report
    rules = config.lint.core_rules()
    for account in config.accounts:
        if account.imap is None or (only is not None and account.name != only):
            continue
        try:
            _sync_account(db, config, account, report, rules, now=now)
        except FollowupdError as exc:
            log.error("%s: Drafts folder sync failed: %s", account.name, exc)
            report.errors[account.name] = exc
    return report


@dataclass
class _Plan:
    """What one sync does to an account's drafts, decided from the database and the folder."""

    sent: list[_Placed] = field(default_factory=list)
    skipped: list[_Placed] = field(default_factory=list)
    edited: list[tuple[_Placed, dict[str, Any]]] = field(default_factory=list)
    moved: list[tuple[int, int]] = field(default_factory=list)  # (draft id, the copy's new UID)
    replace: list[tuple[_Placed, int]] = field(default_factory=list)  # (draft, its stale copy's UID)
    gone: dict[int, tuple[int, list[int]]] = field(default_factory=dict)  # id -> (folder_uid, copies)
    doomed: list[int] = field(default_factory=list)  # UIDs to delete from Drafts
    place: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # id -> (raw, bare Message-ID)


def _sync_account(
    db: Database,
    config: Config,
    account: AccountConfig,
    report: SyncReport,
    rules: LintRules,
    *,
    now: datetime,
) -> None:
    assert account.imap is not None
    zone = ZoneInfo(config.send.timezone)
    drafts, to_place = _load(db, account, zone, now)
    if not drafts:
        return
    password = secrets.resolve(account.imap, what=f"accounts[{account.name}].imap")
    with ImapSession(account.imap, password) as imap:
        folder, sent = _find_folders(imap)
        if folder is None:
            raise MailError(
                f"account {account.name} has no Drafts folder",
                hint="Create one (or flag one \\Drafts), or set [send] drafts_folder = false.",
            )
        index = _Index(_read_folder(imap, folder))
        live = [d for d in drafts if d.folder_uid is not None and d.state in _LIVE]
        went_out = {d.id for d in live if sent is not None and _in_sent(imap, sent, d)}
        plan = _decide(drafts, index, went_out, to_place, rules)
        _record_user_actions(db, plan, report, now)  # a client-sent draft is SENT before anything else
        _update_folder(db, imap, folder, plan, report=report, account=account, zone=zone, now=now)


def _load(
    db: Database, account: AccountConfig, zone: ZoneInfo, now: datetime
) -> tuple[list[_Placed], dict[int, tuple[bytes, str]]]:
    """The account's placed drafts and queued ones, and the messages to place (built here: no I/O)."""
    with db.read() as session:
        account_id = session.scalar(select(Account.id).where(Account.name == account.name))
        if account_id is None:
            return [], {}  # never scanned: no drafts either
        rows = session.scalars(
            select(Draft).where(
                Draft.account_id == account_id,
                (Draft.folder_uid.is_not(None)) | (Draft.state == DraftState.QUEUED.value),
            )
        ).all()
        drafts = [
            _Placed(d.id, d.version, d.state, d.folder_uid, d.message_id, d.subject, d.body, d.reason)
            for d in rows
        ]
        to_place: dict[int, tuple[bytes, str]] = {}
        for d in rows:
            if d.folder_uid is None and d.state == DraftState.QUEUED.value:
                raw = _message(d, account, zone, now)
                if raw is not None:
                    to_place[d.id] = (raw, bare_id(d.message_id))
    return drafts, to_place


class _Index:
    """The Drafts folder's copies by X-Followupd-Id, and by Message-ID for those without the header."""

    def __init__(self, copies: list[_Copy]) -> None:
        self.by_id: dict[int, list[_Copy]] = {}
        self.by_msgid: dict[str, list[_Copy]] = {}
        for copy in copies:
            if copy.followupd_id is not None:
                self.by_id.setdefault(copy.followupd_id, []).append(copy)
            elif copy.message_id:
                self.by_msgid.setdefault(copy.message_id, []).append(copy)

    def of(self, draft: _Placed) -> list[_Copy]:
        found = self.by_id.get(draft.id) or self.by_msgid.get(bare_id(draft.message_id)) or []
        return sorted(found, key=lambda c: c.uid)


def _decide(
    drafts: list[_Placed],
    index: _Index,
    went_out: set[int],
    to_place: dict[int, tuple[bytes, str]],
    rules: LintRules,
) -> _Plan:
    plan = _Plan()
    for d in drafts:
        mine = index.of(d)
        if d.folder_uid is None:
            if d.id in to_place and mine:  # a sync crashed between APPEND and recording the UID: adopt it
                plan.moved.append((d.id, mine[-1].uid))
            elif d.id in to_place:
                plan.place[d.id] = to_place[d.id]
        elif d.state not in _LIVE:
            # Only copies found by their headers are deleted: a bare folder_uid may name another message
            # once the folder's UIDVALIDITY changed.
            plan.gone[d.id] = (d.folder_uid, [c.uid for c in mine])
            plan.doomed += [c.uid for c in mine]
        elif d.id in went_out:
            plan.sent.append(d)
            plan.doomed += [c.uid for c in mine]
        elif not mine:
            plan.skipped.append(d)
        else:
            _decide_copy(plan, d, mine, rules)
    return plan


def _decide_copy(plan: _Plan, d: _Placed, mine: list[_Copy], rules: LintRules) -> None:
    """A live draft with a copy in Drafts: the client's edit taken, or followupd's edit put there."""
    current = mine[-1]  # a client that saved several versions: the newest one counts
    plan.doomed += [c.uid for c in mine[:-1]]
    text = _text_of(current.message)
    if current.uid != d.folder_uid:  # a new message: the client edited it (IMAP messages never change)
        if text is not None and _differs(text, (d.subject, d.body)):
            subject, body = text
            warnings = lint(subject, body, reason=d.reason, rules=rules)
            values = {
                "folder_uid": current.uid,
                "subject": subject,
                "body": body,
                "lint": json.dumps([{"code": str(w.code), "message": w.message} for w in warnings]),
                "invalid_edit": None,
            }
            plan.edited.append((d, values))
        else:
            plan.moved.append((d.id, current.uid))
    elif text is None or _differs(text, (d.subject, d.body)):
        plan.replace.append((d, current.uid))


def _record_user_actions(db: Database, plan: _Plan, report: SyncReport, now: datetime) -> None:
    for d in plan.sent:
        if _cas(db, d, state=DraftState.SENT.value, sent_at=now, note=SENT_NOTE, updated_at=now):
            report.sent.append(d.id)
    for d in plan.skipped:
        if _cas(db, d, state=DraftState.SKIPPED.value, note=DELETED_NOTE, updated_at=now):
            report.skipped.append(d.id)
    for d, values in plan.edited:
        if _cas(db, d, check_version=True, updated_at=now, **values):
            report.updated.append(d.id)
    for draft_id, uid in plan.moved:
        _set_uid(db, draft_id, uid)


def _update_folder(
    db: Database,
    imap: ImapSession,
    folder: str,
    plan: _Plan,
    *,
    report: SyncReport,
    account: AccountConfig,
    zone: ZoneInfo,
    now: datetime,
) -> None:
    """Replace stale copies, delete the doomed ones, place the new drafts; each UID recorded at once."""
    doomed = list(plan.doomed)
    for d, old in plan.replace:
        fresh = _fresh_copy(db, d.id, account, zone, now)
        if fresh is not None:
            uid = _append(imap, folder, fresh, bare_id(d.message_id))
            doomed.append(old)
            _set_uid(db, d.id, uid)
    client = _selected(imap, folder)
    if doomed:
        _delete(imap, client, sorted(set(doomed)))
    for draft_id, (folder_uid, copies) in plan.gone.items():
        _set_uid(db, draft_id, None, only_if=folder_uid)
        if copies:
            report.removed.append(draft_id)
    for draft_id, (raw, message_id) in plan.place.items():
        _set_uid(db, draft_id, _append(imap, folder, raw, message_id))
        report.placed.append(draft_id)


# ------------------------------------------------------------------------------------------- the server


def _find_folders(imap: ImapSession) -> tuple[str | None, str | None]:
    """(Drafts, Sent): by SPECIAL-USE, then by the usual names."""
    assert imap.client is not None
    with translate("IMAP LIST"):
        listing = imap.client.list_folders()
    by_flag: dict[bytes, str] = {}
    names: list[str] = []
    for flags, _delim, name in listing:
        names.append(name)
        for flag in flags:
            by_flag.setdefault(flag if isinstance(flag, bytes) else str(flag).encode(), name)
    drafts = by_flag.get(b"\\Drafts") or next((n for n in DRAFTS_NAMES if n in names), None)
    sent = by_flag.get(b"\\Sent") or next((n for n in SENT_NAMES if n in names), None)
    if imap.info.is_gmail and sent is None:
        sent = by_flag.get(b"\\All")
    return drafts, sent


def _read_folder(imap: ImapSession, folder: str) -> list[_Copy]:
    """Every message of the Drafts folder (it is small), parsed."""
    client = _selected(imap, folder)
    with translate(f"IMAP FETCH {folder}"):
        uids = client.search(["ALL"])
        data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
    copies = []
    for uid, item in data.items():
        raw = item.get(b"BODY[]")
        if not isinstance(raw, bytes):
            continue
        message = email.message_from_bytes(raw, policy=policy.default)
        tag = str(message.get(HEADER, "")).strip()
        copies.append(
            _Copy(
                uid=int(uid),
                followupd_id=int(tag) if tag.isdigit() else None,
                message_id=bare_id(str(message.get("Message-ID", ""))),
                message=message,
            )
        )
    return copies


def _selected(imap: ImapSession, folder: str) -> Any:
    """The client with ``folder`` selected read-write."""
    client = imap.client
    if client is None:
        raise MailError("IMAP connection is not open")
    with translate(f"IMAP SELECT {folder}"):
        client.select_folder(folder)
    return client


def _in_sent(imap: ImapSession, sent: str, draft: _Placed) -> bool:
    """Whether Sent holds the draft: by Message-ID, or by X-Followupd-Id (a client that renews the id)."""
    if imap.search_message_id(sent, bare_id(draft.message_id)):
        return True
    assert imap.client is not None
    with translate(f"IMAP SEARCH {sent}"):
        hits = imap.client.search(["HEADER", HEADER, str(draft.id)])  # a substring match: "1" finds "12"
        if not hits:
            return False
        fetched = imap.client.fetch(hits, [f"BODY.PEEK[HEADER.FIELDS ({HEADER.upper()})]"])
    for item in fetched.values():
        block = next((v for k, v in item.items() if k.startswith(b"BODY[HEADER")), b"")
        parsed = email.message_from_bytes(block if isinstance(block, bytes) else b"")
        if str(parsed.get(HEADER, "")).strip() == str(draft.id):
            return True
    return False


def _append(imap: ImapSession, folder: str, raw: bytes, message_id: str) -> int | None:
    """APPEND a draft; its UID from APPENDUID (UIDPLUS), else looked up by Message-ID."""
    assert imap.client is not None
    with translate(f"IMAP APPEND {folder}"):
        response = imap.client.append(folder, raw, flags=("\\Draft",))
    match = _APPENDUID.search(response if isinstance(response, bytes) else str(response).encode())
    if match is not None:
        return int(match.group(2))
    found = imap.search_message_id(folder, message_id)
    _selected(imap, folder)  # search_message_id selected it read-only
    return max(found) if found else None


def _delete(imap: ImapSession, client: Any, uids: list[int]) -> None:
    """``\\Deleted`` and expunge only these UIDs (UID EXPUNGE with UIDPLUS; else a plain EXPUNGE)."""
    with translate("IMAP STORE/EXPUNGE"):
        client.delete_messages(uids)
        if "UIDPLUS" in imap.info.capabilities:
            client.uid_expunge(uids)
        else:
            client.expunge()


# ---------------------------------------------------------------------------------------- the text


def _text_of(message: EmailMessage) -> tuple[str, str] | None:
    """(subject, body) of a copy; None when it has no readable text/plain part."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, KeyError):
        return None
    if not isinstance(content, str):
        return None
    body = content.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    subject = sanitize_header(str(message.get("Subject", "")))
    if not body.strip() or not subject:
        return None
    return subject, body + "\n"


def _norm(text: str) -> str:
    return " ".join(text.split())


def _differs(copy: tuple[str, str], stored: tuple[str, str]) -> bool:
    return _norm(copy[0]) != _norm(stored[0]) or _norm(copy[1]) != _norm(stored[1])


# ------------------------------------------------------------------------------------------ the store


def _cas(db: Database, draft: _Placed, *, check_version: bool = False, **values: Any) -> bool:
    """One compare-and-set on a live draft (the pattern of :mod:`followupd.engine.review`); False when the
    draft changed meanwhile (it is looked at again on the next sync)."""
    conditions = [Draft.id == draft.id, Draft.state.in_(_LIVE)]
    if check_version:
        conditions.append(Draft.version == draft.version)
    with db.write() as session:
        result = session.execute(
            update(Draft)
            .where(*conditions)
            .values(**values, version=Draft.version + 1)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1


def _set_uid(db: Database, draft_id: int, uid: int | None, *, only_if: int | None = None) -> None:
    """Record where the copy is (bookkeeping: the version does not move)."""
    query = update(Draft).where(Draft.id == draft_id)
    if only_if is not None:
        query = query.where(Draft.folder_uid == only_if)
    with db.write() as session:
        session.execute(query.values(folder_uid=uid).execution_options(synchronize_session=False))


def _fresh_copy(
    db: Database, draft_id: int, account: AccountConfig, zone: ZoneInfo, now: datetime
) -> bytes | None:
    with db.read() as session:
        draft = session.get(Draft, draft_id)
        if draft is None or draft.state not in _LIVE:
            return None
        return _message(draft, account, zone, now)


def _message(draft: Draft, account: AccountConfig, zone: ZoneInfo, now: datetime) -> bytes | None:
    """The draft as placed in Drafts: what the sender would send, plus the X-Followupd-Id header."""
    try:
        raw = outgoing(draft, account.name, now=now, zone=zone).raw
    except ValueError as exc:
        log.warning("%s: draft %d not placed in Drafts: %s", account.name, draft.id, exc)
        return None
    return f"{HEADER}: {draft.id}\r\n".encode() + raw


__all__ = ["HEADER", "SyncReport", "sync_drafts_folder"]

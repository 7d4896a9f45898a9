"""Robots vs people: two different questions, answered separately.

1. ``classify(meta)``: is this *message* automated or bulk? Decided from its headers alone, with a stable
   reason string so the CLI can say why.
2. ``admit(evidence, policy)``: is this *address* a person the user has a relationship with? Decided from
   everything seen about the address. A person who posts to a mailing list writes automated/bulk messages
   (they carry List-Id) and is still admitted when the user wrote to them; the list's own address never is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from followupd.core.addresses import is_role_address
from followupd.core.types import Direction, MessageMeta, Verdict

# RFC 3834 values. Anything else that is not "no" still means automated, under one stable label.
_AUTO_SUBMITTED_KINDS = frozenset({"auto-replied", "auto-generated", "auto-notified"})
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply", "auto-reply"})
_NEGATIVE_VALUES = frozenset({"", "no", "false", "0", "off"})
_BOUNCE_ROLES = ("mailer-daemon", "postmaster")
# Subject prefixes that mail servers put on out-of-office replies (Exchange localises its "Automatic reply:").
# Only at the very start: a person's "Re: Automatic reply: ..." starts with "Re:" and stays a person's.
_AUTO_REPLY_SUBJECTS = (
    "automatic reply:",
    "auto reply:",
    "autoreply:",
    "auto-reply:",
    "auto response:",
    "out of office:",
    "out of office reply:",
    "out of office autoreply:",
    "abwesenheitsnotiz:",
    "automatische antwort:",
    "réponse automatique :",
    "réponse automatique:",
    "respuesta automática:",
    "risposta automatica:",
    "automatisch antwoord:",
    "autosvar:",
    "automaattinen vastaus:",
    "odpowiedź automatyczna:",
    "自动回复",
    "自動回覆",
    "自動応答",
)

PERSON = Verdict(automated=False)
_VERDICTS: dict[str, Verdict] = {}  # one shared immutable Verdict per reason: the hot path allocates none


def _automated(reason: str) -> Verdict:
    verdict = _VERDICTS.get(reason)
    if verdict is None:
        verdict = _VERDICTS[reason] = Verdict(automated=True, reason=reason)
    return verdict


def classify(meta: MessageMeta) -> Verdict:
    """Return whether ``meta`` is an automated or bulk message, and the first rule that said so.

    Rules, most specific first (the reason names the rule): ``bounce:multipart-report``,
    ``bounce:mailer-daemon``/``bounce:postmaster`` (the sender's local part), ``bounce:null-sender``
    (``From: <>``), ``auto-submitted:<auto-replied|auto-generated|auto-notified|other>``,
    ``auto-reply-header`` (X-Autoreply/X-Autorespond), ``list-id``, ``precedence:<bulk|list|junk|
    auto_reply>``, ``list-unsubscribe``, ``return-path-null``, ``sender-role:<role>`` (see
    ``addresses.is_role_address``), ``auto-reply-subject`` ("Automatic reply:" and its translations).
    Not evidence on their own, because people's ordinary mail carries them: ``X-Auto-Response-Suppress``
    (Outlook) and ``Feedback-ID`` (QQ Mail/Foxmail webmail stamps it on personal mail). A person's message
    gets ``Verdict(False, "")``.
    """
    sender_role = None if meta.sender is None else is_role_address(meta.sender.email)
    reason = _reason_from_flags(meta.flags, sender_role) if meta.flags else ""
    if not reason and sender_role is not None:
        reason = _sender_reason(sender_role)
    if not reason and meta.subject[:40].lower().startswith(_AUTO_REPLY_SUBJECTS):
        reason = "auto-reply-subject"
    return _automated(reason) if reason else PERSON


def _reason_from_flags(flags: Mapping[str, str], sender_role: str | None) -> str:
    content_type = flags.get("content-type")
    if content_type is not None and content_type[:16].lower() == "multipart/report":
        return "bounce:multipart-report"
    if sender_role in _BOUNCE_ROLES:
        return _sender_reason(sender_role)
    if "from" in flags:  # a From without a usable address: bounces write "MAILER-DAEMON <>" or "<>"
        return _null_sender_reason(flags["from"])
    auto_submitted = _first_word(flags.get("auto-submitted"))
    if auto_submitted not in _NEGATIVE_VALUES:
        kind = auto_submitted if auto_submitted in _AUTO_SUBMITTED_KINDS else "other"
        return "auto-submitted:" + kind
    if _first_word(flags.get("x-autoreply")) not in _NEGATIVE_VALUES or (
        _first_word(flags.get("x-autorespond")) not in _NEGATIVE_VALUES
    ):
        return "auto-reply-header"
    return _bulk_reason(flags)


def _null_sender_reason(raw_from: str) -> str:
    lowered = raw_from.lower()
    if "<>" in "".join(lowered.split()):
        return "bounce:null-sender"
    for role in _BOUNCE_ROLES:
        if role in lowered:
            return "bounce:" + role
    return ""


def _bulk_reason(flags: Mapping[str, str]) -> str:
    # List-Id first: a list post from a person carries Precedence: list too, and "list-id" says more.
    if flags.get("list-id"):
        return "list-id"
    precedence = _first_word(flags.get("precedence"))
    if precedence in _BULK_PRECEDENCE:
        return "precedence:" + precedence.replace("-", "_")
    if flags.get("list-unsubscribe"):
        return "list-unsubscribe"
    if "".join(flags.get("return-path", "").split()).startswith("<>"):  # "<>" and "< >", maybe commented
        return "return-path-null"
    return ""


def _first_word(value: str | None) -> str:
    """Lower-cased first word of a value, parameters dropped (``auto-replied; owner=x`` -> auto-replied)."""
    if not value:
        return ""
    return value.partition(";")[0].strip().lower().partition(" ")[0]


def _sender_reason(role: str) -> str:
    return "bounce:" + role if role in _BOUNCE_ROLES else "sender-role:" + role


def direction(meta: MessageMeta, own_addresses: frozenset[str]) -> Direction:
    """Return OUT when the message is From one of the user's own (lower-cased) addresses, IN otherwise."""
    if meta.sender is not None and meta.sender.email in own_addresses:
        return Direction.OUT
    return Direction.IN


@dataclass(frozen=True, slots=True)
class AddressEvidence:
    """Everything the store knows about one address, reduced to what admission needs.

    Counts are numbers of messages. ``user_wrote_to``: the user's own mail had it in To/Cc.
    ``wrote_directly``: a person (non-automated) message From it had the user in To/Cc, not via a list.
    ``answered``: the user replied in a thread it wrote in. ``only_bulk``: every message seen from it was
    automated/bulk. ``is_list_address``: learned from List-Post/List-Id. ``is_role``: role local part.
    ``is_own``: one of the user's addresses. ``met``: attendee of a meeting with the user.

    Note for whoever fills ``only_bulk``: Google Calendar sends invitations From the organizer's own address
    with ``Auto-Submitted: auto-generated``, so they classify as automated. If invitations should count as
    contact evidence, do not count messages carrying a calendar as bulk for their sender.
    """

    user_wrote_to: int = 0
    wrote_directly: int = 0
    answered: int = 0
    only_bulk: bool = False
    is_list_address: bool = False
    is_role: bool = False
    is_own: bool = False
    met: bool = False


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Which kinds of evidence make an address a contact (the never-admit rules are not configurable)."""

    admit_if_user_wrote_to: bool = True
    admit_if_answered: bool = True
    # Off by default: strangers, cold pitches and recruiters write directly too; an answer is the signal.
    admit_if_wrote_directly: bool = False
    admit_meeting_attendees: bool = True


def admit(evidence: AddressEvidence, policy: AdmissionPolicy) -> tuple[bool, str]:
    """Decide whether an address is a person the user has a relationship with, and why.

    Never admitted, whatever the policy: ``own-address``, ``list-address``, ``role-address``, and
    ``only-bulk`` (seen only in automated mail and never written to by the user; this also holds for a
    meeting attendee, because calendar invitations are a spam vector). Admitted: ``user-wrote-to``,
    ``answered``, ``met``, ``wrote-directly`` (each when the policy allows it, checked in that order).
    Otherwise not admitted: ``unanswered`` (they wrote directly, the user has not answered) or
    ``no-exchange``.
    """
    refusal = _never_admit(evidence)
    if refusal:
        return False, refusal
    if policy.admit_if_user_wrote_to and evidence.user_wrote_to > 0:
        return True, "user-wrote-to"
    if policy.admit_if_answered and evidence.answered > 0:
        return True, "answered"
    if policy.admit_meeting_attendees and evidence.met:
        return True, "met"
    if evidence.wrote_directly > 0:
        return (True, "wrote-directly") if policy.admit_if_wrote_directly else (False, "unanswered")
    return False, "no-exchange"


def _never_admit(evidence: AddressEvidence) -> str:
    if evidence.is_own:
        return "own-address"
    if evidence.is_list_address:
        return "list-address"
    if evidence.is_role:
        return "role-address"
    if evidence.only_bulk and evidence.user_wrote_to == 0:
        return "only-bulk"
    return ""

"""Address syntax and address facts: split address lists, normalise, recognise robots and lists.

Everything here works on already-decoded text (``str``); RFC 2047 decoding of display names is the job of
``headers``, because an encoded word may only be decoded after the list has been split (a decoded name may
contain commas).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from urllib.parse import unquote

# Characters that never belong in a header value once decoded, as a regex character-class body: controls (C0,
# DEL, C1), line and paragraph separators, bidi embeddings/overrides/isolates and the BOM. Several can break
# a header line when copied into outgoing mail; the rest can make a name or address display as something else.
UNSAFE_CHARS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff"

# A header with more recipients than this is a mass mailing or an attack; the rest are ignored so that one
# message can never cost unbounded time.
MAX_ADDRESSES = 1000
MAX_EMAIL_LENGTH = 320  # 64 (local) + 1 + 255 (domain)

# One alternative per lexical element of RFC 5322 address lists. Every branch is unambiguous (no nested
# quantifiers), so matching is linear even on hostile input; the final "." eats stray brackets one at a time.
_TOKEN_RE = re.compile(
    r'"(?:[^"\\]|\\.)*"?'  # quoted string; an unterminated one runs to the end
    r"|\((?:[^()\\]|\\.)*\)?"  # comment (nesting is not followed: rare, and it only costs a name)
    r"|<[^<>]*>?"  # angle-addr
    r"|[,;:]"  # list separator, group end, group start
    r'|[^",;:<>()]+'  # phrase text, bare addresses and whitespace
    r"|.",
    re.S,
)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
_COMMENT_RE = re.compile(r"\((?:[^()\\]|\\.)*\)", re.S)
# One "@", no whitespace or specials around it: what remains of an address after the syntax is peeled off.
_EMAIL_RE = re.compile(rf'[^\s"<>(),;:\\@{UNSAFE_CHARS}]+@[^\s"<>(),;:\\@{UNSAFE_CHARS}]+')
# The simple path: lists of `Name <a@b>`, `"Name, Quoted" <a@b>` and `a@b` items, in values without
# comments, groups or backslashes. Its address part (one "@", no specials, no trailing dot) is, within the
# length limit, what normalise_email would return apart from case. Each item ends at a comma or the end.
_SIMPLE_EMAIL = rf'[^\s<>@(),"{UNSAFE_CHARS}]+@[^\s<>@(),"{UNSAFE_CHARS}]+(?<!\.)'
_SIMPLE_ITEM_RE = re.compile(
    rf'(?:\s*"([^"\\]*)"\s*<\s*({_SIMPLE_EMAIL})\s*>'  # "Name, Quoted" <a@b>
    rf"|([^\"<>,]*)<\s*({_SIMPLE_EMAIL})\s*>"  # Name <a@b>
    rf"|\s*({_SIMPLE_EMAIL}))\s*(?:,|\Z)"  # a@b
)
_MAILTO_RE = re.compile(r"mailto:([^\s<>?,]+)", re.I)
_ANGLE_RE = re.compile(r"<([^<>]*)>")


def split_address_list(value: str, limit: int = MAX_ADDRESSES) -> list[tuple[str, str]]:
    """Split a decoded-enough address header into ``(raw display name, lower-cased email)`` pairs.

    Lenient: understands display names, quoted strings with commas, comments, angle-addrs, group syntax
    (``undisclosed-recipients:;``, ``Team: a@x, b@y;``) and bare addresses; skips anything that does not
    leave a plausible ``local@domain``; never raises. At most ``limit`` pairs are returned. The display name
    is returned raw (quotes removed, encoded words still encoded) for the caller to decode.
    """
    if "(" in value or ":" in value or ";" in value or "\\" in value:
        return _tokenize(value, limit)
    # The overwhelmingly common shapes have no comments, groups or escapes: one anchored regex per item,
    # each starting where the last ended, gives the tokenizer's answer at a fraction of its cost. Any item
    # it cannot read sends the whole value to the tokenizer.
    found: list[tuple[str, str]] = []
    position, end = 0, len(value)
    while position < end and len(found) < limit:
        match = _SIMPLE_ITEM_RE.match(value, position)
        if match is None:
            return _tokenize(value, limit)
        quoted, email, name, email2, bare = match.groups()
        address = email or email2 or bare
        if end > MAX_EMAIL_LENGTH and len(address) > MAX_EMAIL_LENGTH:
            return _tokenize(value, limit)
        found.append(((quoted or name or "").strip(), address.lower()))
        position = match.end()
    return found


def _tokenize(value: str, limit: int) -> list[tuple[str, str]]:
    collector = _ListCollector(limit)
    for match in _TOKEN_RE.finditer(value):
        if collector.feed(match.group()):
            break
    collector.flush()
    return collector.found


class _ListCollector:
    """Accumulates tokens of one mailbox at a time and emits it at a separator."""

    __slots__ = ("angle", "comment", "found", "limit", "phrase")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.found: list[tuple[str, str]] = []
        self.phrase: list[str] = []
        self.angle: str | None = None
        self.comment = ""

    def feed(self, token: str) -> bool:
        """Take one token; True once the limit is reached."""
        first = token[0]
        if first in ",;":
            self.flush()
        elif first == ":":
            if self.angle is None:  # a group's display name is not a mailbox: drop it
                self.phrase.clear()
                self.comment = ""
        elif first == "<":
            if self.angle is None:
                self.angle = token[1:].rstrip(">")
        elif first == '"':
            self.phrase.append(_unquote(token))
        elif first == "(":
            self.comment = self.comment or _unquote(token)
        elif first not in ">)":
            self.phrase.append(token)
        return len(self.found) >= self.limit

    def flush(self) -> None:
        """Emit the pending mailbox, if it is one, and start the next."""
        if self.phrase or self.angle is not None:
            pair = _mailbox("".join(self.phrase), self.angle, self.comment)
            if pair is not None:
                self.found.append(pair)
        self.phrase.clear()
        self.angle = None
        self.comment = ""


def _unquote(token: str) -> str:
    inner = token[1:-1] if len(token) > 1 and token[-1] in '")' else token[1:]
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def _mailbox(phrase: str, angle: str | None, comment: str) -> tuple[str, str] | None:
    if angle is not None:
        if "(" in angle:  # RFC 5322 allows comments inside: <pete(his account)@silly.test(his host)>
            angle = _COMMENT_RE.sub("", angle)
        # "<@relay:a@b>" source routes and "<mailto:a@b>" both keep what follows the last colon.
        email: str | None = "".join(angle.split()).rpartition(":")[2]
        name = phrase.strip() or comment
    else:
        # A bare address, possibly with stray words around it ("Alice alice@x"): those become the name.
        words = phrase.split()
        email = _take_bare_address(words)
        name = " ".join(words) or comment
    normalised = None if email is None else normalise_email(email)
    return None if normalised is None else (name.strip(), normalised)


def _take_bare_address(words: list[str]) -> str | None:
    """Remove and return the word that is the address, or None; ``words`` keeps the rest."""
    for index, word in enumerate(words):
        if "@" in word:
            return words.pop(index)
    # Pipermail/Hyperkitty archives write "jgb at example.com": imported list archives use that form.
    for index in range(1, len(words) - 1):
        if words[index] == "at" and "." in words[index + 1]:
            local, _, domain = words[index - 1 : index + 2]
            del words[index - 1 : index + 2]
            return f"{local}@{domain}"
    return None


def normalise_email(value: str) -> str | None:
    """Return ``value`` as a lower-cased ``local@domain`` (brackets, ``mailto:`` and a trailing dot removed).

    Returns None when what remains is not a plausible address (no single ``@``, whitespace or specials
    inside, longer than an address may be).
    """
    email = value.strip().strip("<>").strip().lower()
    if email.startswith("mailto:"):
        email = email[7:]
    email = email.rstrip(".")
    if len(email) > MAX_EMAIL_LENGTH or _EMAIL_RE.fullmatch(email) is None:
        return None
    return email


def domain_of(email: str) -> str:
    """Return the lower-cased domain of ``email`` (empty when there is no ``@``)."""
    return email.rpartition("@")[2].lower().rstrip(".") if "@" in email else ""


# Words of a local part that name a robot, a list server or a queue rather than a person, by reason. A word
# is delimited by - _ . = or the ends and may carry trailing digits ("bounce-42", "noreply2"); a space in a
# word below allows an optional separator there ("no-reply", "do.not.reply"), so "no.reply" is caught and
# "bruno.reply" is not (a substring search on the squashed local part would catch both).
# Deliberately NOT role words: info, contact, hello, office, team, admin, sales, press. Small businesses and
# freelancers use them as their one address and people hold real conversations with them. Bulk mail from
# such addresses is still caught by the message headers, and an address only becomes a contact when the user
# writes to it or answers it. (As a suffix, "dev-admin" is the list-manager convention, like "dev-request".)
_ROLE_WORDS: Mapping[str, tuple[str, ...]] = {
    "noreply": ("no reply", "do not reply", "dont reply", "no response"),
    "mailer-daemon": ("mailer daemon", "mail daemon"),
    "postmaster": ("post master",),
    "bounce": ("bounce[a-z0-9]*",),  # VERP return addresses: bounce-123, bounces, bounce9x7
    "notifications": ("notifications", "notification", "notify", "notifier", "updates"),
    "alerts": ("alerts", "alert"),
    "newsletter": ("newsletters", "newsletter", "news", "digest"),
    "invitations": ("invitations", "invitation", "invites"),
    # Queues: a ticketing system answers from them, and "keep in touch" with a help desk makes no sense.
    "support": ("support", "help desk", "help", "billing", "receipts", "receipt", "invoice"),
    "marketing": ("promotions", "promo", "offers", "deals"),
    "automated": (
        "auto reply",
        "auto responder",
        "auto confirm",
        "automated",
        "auto mailer",
        "mailer",
        "daemon",  # alone it is a Unix system account (cron and friends), not necessarily a bounce
        "robot",
        "bot",
    ),
    "list-robot": ("listserv", "majordomo", "mailman", "sympa", "ecartis", "lyris"),
}


def _role_regex() -> re.Pattern[str]:
    groups = [
        f"(?P<{reason.replace('-', '_')}>" + "|".join(word.replace(" ", "[-_.]?") for word in words) + ")"
        for reason, words in _ROLE_WORDS.items()
    ]
    return re.compile(
        r"^(?P<reply_relay>reply)(?=$|[-_.=])"  # reply-by-email relays (GitHub, Jira): a robot, not a person
        r"|^(?P<list_owner>owner)[-_.]|[-_.](?P<list_request>owner|request|admin)$"  # owner-x, x-request
        r"|(?:^|[-_.=])(?:" + "|".join(groups) + r")\d*(?=$|[-_.=])"
    )


# One search instead of a loop over words: this runs for every sender the scanner has not seen yet.
_ROLE_RE = _role_regex()
_GROUP_REASONS = {
    **{reason.replace("-", "_"): reason for reason in _ROLE_WORDS},
    "reply_relay": "reply-relay",
    "list_owner": "list-robot",
    "list_request": "list-robot",
}
_ROLE_DOMAIN_LABELS: Mapping[str, str] = {
    "noreply": "noreply",
    "no-reply": "noreply",
    "bounce": "bounce",
    "bounces": "bounce",
}


@functools.lru_cache(maxsize=8192)
def is_role_address(email: str) -> str | None:
    """Return why ``email`` is a robot, list-server or queue address, or None when it may be a person.

    Reasons are stable labels: noreply, mailer-daemon, postmaster, bounce, notifications, alerts, newsletter,
    invitations, support, marketing, automated, list-robot, reply-relay. Examples: ``no-reply@x``,
    ``drive-shares-noreply@google.com``, ``bounces+123@x``, ``calendar-notification@google.com``,
    ``reply+AB12@reply.github.com``. ``info@`` and ``contact@`` are not role addresses (see the table above).
    """
    local, _, domain = email.lower().rpartition("@")
    match = _ROLE_RE.search(local.partition("+")[0])  # a +tag is the recipient's filter, not a role
    if match is not None:
        return _GROUP_REASONS[match.lastgroup or ""]
    return _role_from_domain(domain)


def _role_from_domain(domain: str) -> str | None:
    labels = domain.split(".")
    if labels[0] == "reply":
        return "reply-relay"
    for label in labels[:-1]:
        reason = _ROLE_DOMAIN_LABELS.get(label)
        if reason is not None:
            return reason
    return None


def list_post_address(value: str) -> str | None:
    """Return the list's posting address from a ``List-Post`` value (``<mailto:list@x?subject=..>``).

    None for ``NO`` (posting not allowed), for http-only values and for anything without a plausible address.
    """
    match = _MAILTO_RE.search(value)
    return None if match is None else normalise_email(unquote(match.group(1)))


def list_id(value: str) -> str | None:
    """Return the lower-cased list identifier of a ``List-Id`` value (``Name <list.example.org>``).

    A value without angle brackets is taken whole. None when no dotted identifier is present.
    """
    match = _ANGLE_RE.search(value)
    ident = "".join((match.group(1) if match else value).split()).lower().strip(".")
    if "." not in ident or "@" in ident or len(ident) > 255:
        return None
    return ident


def list_addresses(flags: Mapping[str, str]) -> frozenset[str]:
    """Return the addresses a list message reveals as the list's own, from List-Post and List-Id.

    ``List-Id: <dev.lists.example.org>`` also yields ``dev@lists.example.org``: Mailman, Google Groups and
    most list servers post from that address, and a person's address never has that shape by accident.
    """
    found: set[str] = set()
    post = list_post_address(flags.get("list-post", ""))
    if post is not None:
        found.add(post)
    ident = list_id(flags.get("list-id", ""))
    if ident is not None:
        label, _, namespace = ident.partition(".")
        derived = normalise_email(f"{label}@{namespace}")
        if derived is not None:
            found.add(derived)
    return frozenset(found)

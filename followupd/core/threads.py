"""Thread keys from Message-ID / In-Reply-To / References (+ Gmail's X-GM-THRID), and display subjects.

The choice, kept simple and deterministic: a thread is named after its root message.

- Gmail already threads for us: when ``X-GM-THRID`` is present the key is ``gm:<thrid>``.
- Otherwise the root is the first id in References (RFC 5322 puts the thread's first message there), else
  the In-Reply-To parent, else the message's own Message-ID; the key is ``mid:<root>``. Because the key comes
  from the message's own headers, a reply that arrives before its parent (another folder, a slow server)
  still lands in the same thread whenever it carries References.
- A reply with only In-Reply-To (some old or minimal mailers) names its parent, not the root. ``known``, a
  lookup of keys already assigned to stored messages, lets it join its parent's thread instead.

Subject-based threading (JWZ's last resort) is deliberately not done: "Re: Hello" from two people is two
conversations, and a wrong merge would suppress a follow-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from followupd.core.types import MessageMeta

# Reply/forward markers in the languages mail clients write them in, optionally counted ("Re[2]:", "AW(3):"),
# and bracketed list tags ("[dev-list]"), any number of them in any order ("[list] Re: [list] Fwd: x").
_PREFIX_RE = re.compile(
    r"(?:\s*(?:\[[^\]]{0,80}\]"
    r"|(?:re|fwd?|aw|sv|vs|wg|antw|odp|tr|rif|res|enc|r|ref|vb|fs|ynt|πρθ|ответ|回复|回覆|答复|转发|轉寄)"
    r"\s*(?:\[\d{1,4}\]|\(\d{1,4}\))?\s*[:：]))*\s*",
    re.I,
)


def thread_key(meta: MessageMeta, known: Callable[[str], str | None] | None = None) -> str:
    """Return the thread key of ``meta``: ``gm:<X-GM-THRID>`` or ``mid:<root Message-ID>``.

    ``known(message_id)`` may return the key already given to a stored message with that id; it is asked
    (at most three times, so it should be an in-memory lookup) about the References root, the In-Reply-To
    parent and the nearest References parent, in that order, and its first answer wins. Returns "" only
    when the message has no ids at all: synthesise a Message-ID first (``dataclasses.replace``).
    """
    gm_thread = meta.flags.get("x-gm-thrid", "").strip()
    if gm_thread.isdigit():
        return "gm:" + gm_thread
    root = meta.references[0] if meta.references else meta.in_reply_to
    if known is not None:
        parent = meta.references[-1] if meta.references else None
        for ident in (root, meta.in_reply_to, parent):
            key = known(ident) if ident else None
            if key:
                return key
    root = root or meta.message_id
    return "mid:" + root if root else ""


def base_subject(subject: str) -> str:
    """Return ``subject`` without leading Re:/Fwd:/AW:/SV:/... markers and ``[list]`` tags, for display."""
    match = _PREFIX_RE.match(subject)
    return subject[match.end() :].strip() if match else subject.strip()

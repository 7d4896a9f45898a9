"""Whole messages of a local store, for the few that may hold a meeting (the scan reads headers only).

The meetings pass asks for a message by the uid the scan stored: a Maildir file is found by one listing of
its folder (kept, and refreshed once when a uid is missing: mbsync renames files when flags change); an mbox
message is read from its offset (uid - 1) up to the next message. Reads stop at :data:`MAX_BODY_BYTES`: an
invitation or a note arranging coffee is a few kilobytes, a big attachment is not worth reading.
"""

from __future__ import annotations

import re
from pathlib import Path

from followupd.mail.local import LocalSource, MaildirSource, MboxSource

MAX_BODY_BYTES = 1_000_000

_CONTENT_TYPE = re.compile(rb"^content-type:[ \t]*([a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)", re.I | re.M)


def content_type(headers: bytes) -> str:
    """The lower-cased ``type/subtype`` of a raw header block; ``text/plain`` when absent (RFC 2045)."""
    match = _CONTENT_TYPE.search(headers)
    return match.group(1).decode("ascii").lower() if match else "text/plain"


class BodyReader:
    """Reads whole messages of one local source by (folder, uid); ``None`` for what has gone meanwhile."""

    def __init__(self, source: LocalSource, *, limit: int = MAX_BODY_BYTES) -> None:
        self._source = source
        self._limit = limit
        self._paths: dict[str, dict[int, Path]] = {}

    def read(self, folder: str, uid: int) -> bytes | None:
        """The message's bytes (bounded), or None when the store no longer has it."""
        source = self._source
        if isinstance(source, MboxSource):
            return source.read_message(folder, uid, self._limit)
        if isinstance(source, MaildirSource):
            return self._maildir(source, folder, uid)
        return None

    def _maildir(self, source: MaildirSource, folder: str, uid: int) -> bytes | None:
        paths = self._paths.get(folder)
        fresh = paths is None
        for _ in range(2):
            if paths is None:
                paths = self._paths[folder] = source.paths(folder)
            path = paths.get(uid)
            if path is not None:
                try:
                    with path.open("rb") as file:
                        return file.read(self._limit)
                except FileNotFoundError:
                    pass  # renamed (flags changed) or moved since the listing
                except OSError:
                    return None  # unreadable now: costs this message's meetings, not the scan
            if fresh:
                return None
            paths, fresh = None, True  # list the folder again, once
        return None

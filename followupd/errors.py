"""One error family for everything followupd reports to a user.

Each class carries an exit code and a message that says what to do. Adapters translate library exceptions into
these at their boundary; the CLI has one handler that prints them (tracebacks only with ``-v``).
"""

from __future__ import annotations

from collections.abc import Sequence


class FollowupdError(Exception):
    """Root of every error followupd reports to a user. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ConfigError(FollowupdError):
    """The configuration cannot be used. ``problems`` lists every problem found, each with its key path."""

    exit_code = 2

    def __init__(self, message: str, *, problems: Sequence[str] = (), hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.problems = tuple(problems)

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class SecretError(ConfigError):
    """A password or token could not be obtained from its command, file or environment variable."""


class DatabaseError(FollowupdError):
    """The database cannot be opened, upgraded or written."""

    exit_code = 3


class SchemaTooNewError(DatabaseError):
    """The database was written by a newer followupd; it is refused, never downgraded or dropped."""


class MailError(FollowupdError, ConnectionError):
    """A mail server could not be reached or misbehaved. Retrying later may help."""

    exit_code = 4


class MailTimeoutError(MailError, TimeoutError):
    """A mail server did not answer in time."""


class AuthenticationError(MailError):
    """A mail server refused the credentials. Retrying will not help until the user fixes them."""

    exit_code = 5


class InsecureTransportError(MailError):
    """A connection would have sent credentials without encryption; followupd refuses."""

    exit_code = 5


class NotFoundError(FollowupdError):
    """The draft, contact or meeting named does not exist."""

    exit_code = 6


class ConflictError(FollowupdError):
    """The object changed meanwhile (sent, superseded, edited elsewhere); nothing was done."""

    exit_code = 7


class AlreadyRunningError(FollowupdError):
    """Another followupd daemon already holds this database."""

    exit_code = 8


class UsageError(FollowupdError):
    """The command was given something it cannot use (a bad date, an unknown state...)."""

    exit_code = 2


class LeaseLostError(FollowupdError):
    """This worker's lease on an account expired and another worker may own it; nothing was written."""

    exit_code = 8

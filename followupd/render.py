"""Rendering drafts from Jinja2 templates: the package's own, overridden or extended by the user's.

This is where template files are read (``followupd.core`` never touches files). Templates are plain text
named ``<reason>.j2``: a first line ``Subject: ...``, a blank line, then the body. A template in the user's
directory (``templates_dir`` in the config) replaces the shipped one of the same name; new names add
templates (for example ``meeting_request.j2`` or a custom reason).

Decisions:

- The environment is a :class:`jinja2.sandbox.SandboxedEnvironment` with autoescape off (the output is
  plain text, not HTML). Templates cannot reach ``__class__``, ``__globals__`` or other private attributes,
  cannot load files outside the two template roots (``../`` and absolute names are refused by the loaders),
  cannot use ``**`` and cannot multiply strings or lists into huge ones; output stops at 20,000 characters.
  (A template can still loop for a long time without output; the templates are the user's own, so that is
  a bug to report, not an attack to stop.)
- Undefined variables are errors (:class:`jinja2.StrictUndefined`): a typo must not send "Hi ," to someone.
  Every template problem — syntax, undefined name, sandbox violation, missing template, runtime error in
  an expression — becomes one :class:`RenderError` naming the template and line, never a crash.
- Every string in the context has been sanitised by :func:`followupd.core.compose.draft_context`, and the
  rendered subject is sanitised again, so a hostile inbound subject cannot add a header or spill into the
  body's first line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from followupd.core.compose import DraftContext, reply_subject, sanitize_header, topic
from followupd.errors import FollowupdError

MAX_OUTPUT_CHARS = 20_000
MAX_SEQUENCE_PRODUCT = 10_000
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SUBJECT_LINE = re.compile(r"^Subject:[ \t]*(.*)$")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fmt: skip
# Runtime failures a template expression can raise ({{ 1/0 }}, {{ name + 1 }}, deep macro recursion).
_RUNTIME_ERRORS = (ArithmeticError, TypeError, ValueError, LookupError, AttributeError, RecursionError)


class RenderError(FollowupdError):
    """A template could not be rendered: ``template`` names it, ``detail`` says where and what is wrong.

    Exit code 2, like a configuration error: a user template is configuration.
    """

    exit_code = 2

    def __init__(self, template: str, detail: str) -> None:
        hint = "Fix the template, or remove it from the templates directory to use the shipped one."
        super().__init__(f"template {template}: {detail}", hint=hint)
        self.template = template
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered draft: sanitised subject, body ending in one newline, and where the template came from."""

    subject: str
    body: str
    template: str
    origin: str  # "user" or "package"


class _Sandbox(SandboxedEnvironment):
    """The sandbox, plus limits on operators that can exhaust memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("the ** operator is not allowed in templates")
        sizes = [len(x) for x in (left, right) if isinstance(x, str | list | tuple)]
        counts = [x for x in (left, right) if isinstance(x, int)]
        if sizes and counts and sizes[0] * max(counts) > MAX_SEQUENCE_PRODUCT:
            raise SecurityError("repeating a string or list this many times is not allowed in templates")
        return super().call_binop(context, operator, left, right)


def day(at: datetime | None) -> str:
    """``Tuesday 3 June`` (English, independent of the process locale); "" for None."""
    if at is None:
        return ""
    return f"{_DAYS[at.weekday()]} {at.day} {_MONTHS[at.month - 1]}"


def sentence(text: str) -> str:
    """``text`` stripped, with a full stop added unless it already ends like a sentence."""
    text = text.strip()
    return text if not text or text[-1] in ".?!…\"'”)" else text + "."


class TemplateSet:
    """The templates a daemon renders from: ``user_dir`` (if given) first, then the shipped ones."""

    def __init__(self, user_dir: Path | str | None = None) -> None:
        self._user_dir = Path(user_dir).resolve() if user_dir is not None else None
        if self._user_dir is not None and not self._user_dir.is_dir():
            raise RenderError(str(user_dir), "template directory does not exist or is not a directory")
        loaders: list[Any] = [PackageLoader("followupd", "templates")]
        if self._user_dir is not None:
            loaders.insert(0, FileSystemLoader(str(self._user_dir), followlinks=False))
        self._env = _Sandbox(
            loader=ChoiceLoader(loaders),
            autoescape=False,
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        self._env.filters.update(reply_subject=reply_subject, topic=topic, day=day, sentence=sentence)

    def names(self) -> list[str]:
        """The reasons a template exists for (shipped and user), sorted."""
        return sorted({name[:-3] for name in self._env.list_templates(extensions=["j2"]) if "/" not in name})

    def render(self, reason: str, context: DraftContext) -> Rendered:
        """Render ``<reason>.j2`` with ``context``; raises :class:`RenderError` with a clear message."""
        name = f"{reason}.j2"
        if not _NAME.match(reason):
            raise RenderError(name, "a template name is lower-case letters, digits and underscores")
        try:
            template = self._env.get_template(name)
            text = _bounded(
                template.generate({f.name: getattr(context, f.name) for f in fields(context)}), name
            )
        except TemplateNotFound as exc:
            raise RenderError(name, f"not found (looked for {exc.name} in {self._roots()})") from exc
        except TemplateSyntaxError as exc:
            raise RenderError(exc.filename or name, f"line {exc.lineno}: {exc.message}") from exc
        except UndefinedError as exc:
            known = ", ".join(field.name for field in fields(context))
            raise RenderError(name, f"{exc.message} (variables: {known})") from exc
        except (SecurityError, TemplateError, *_RUNTIME_ERRORS) as exc:
            raise RenderError(name, f"{type(exc).__name__}: {exc}") from exc
        subject, body = _split(text, name)
        return Rendered(subject, body, name, self._origin(template.filename))

    def _roots(self) -> str:
        return f"{self._user_dir} and the shipped templates" if self._user_dir else "the shipped templates"

    def _origin(self, filename: str | None) -> str:
        if (
            self._user_dir is not None
            and filename
            and Path(filename).resolve().is_relative_to(self._user_dir)
        ):
            return "user"
        return "package"


def _bounded(chunks: Iterator[str], name: str) -> str:
    """Join the rendered chunks, stopping as soon as the output is too long to be a short note."""
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise RenderError(name, f"rendered text is longer than {MAX_OUTPUT_CHARS} characters")
        parts.append(chunk)
    return "".join(parts)


def _split(text: str, name: str) -> tuple[str, str]:
    """Split rendered text into (subject, body): tidy blank lines, trailing spaces and the final newline."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    match = _SUBJECT_LINE.match(lines[0]) if lines else None
    if match is None:
        raise RenderError(name, 'the first line must be "Subject: ..." followed by a blank line and the body')
    body = "\n".join(line.rstrip() for line in lines[1:]).strip("\n")
    body = re.sub(r"\n{3,}", "\n\n", body)
    if not body:
        raise RenderError(name, "the body is empty")
    return sanitize_header(match.group(1)), body + "\n"

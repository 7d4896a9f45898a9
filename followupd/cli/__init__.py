"""The ``followupd`` command: a thin shell that parses, calls the engine, and formats.

Subcommands live in their own modules and are imported only when used, so ``followupd drafts list`` does not
pay for imapclient, icalendar or dateparser at start-up.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from followupd import __version__
from followupd.cli.app import App, parse_now
from followupd.errors import FollowupdError

# name -> "module:attribute"; the module is imported when the command is used or listed in --help.
COMMANDS = {
    "config": "followupd.cli.config_cmd:config",
    "db": "followupd.cli.db_cmd:db",
    "scan": "followupd.cli.scan_cmd:scan",
    "contacts": "followupd.cli.contacts_cmd:contacts",
    "meetings": "followupd.cli.meetings_cmd:meetings",
    "plan": "followupd.cli.plan_cmd:plan",
    "drafts": "followupd.cli.drafts_cmd:drafts",
    "review": "followupd.cli.review_cmd:review",
    "send": "followupd.cli.send_cmd:send",
    "run": "followupd.cli.run_cmd:run",
    "status": "followupd.cli.status_cmd:status",
    "demo": "followupd.cli.demo_cmd:demo",
    "init": "followupd.cli.init_cmd:init",
    "doctor": "followupd.cli.doctor_cmd:doctor",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            import importlib

            module, attr = self.lazy[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FOLLOWUPD_CONFIG",
    help="Config file (default: $FOLLOWUPD_CONFIG, $XDG_CONFIG_HOME/followupd/config.toml,"
    " /etc/followupd/config.toml).",
)
@click.option("-v", "--verbose", count=True, help="More output: -v info, -vv debug; tracebacks on errors.")
@click.option(
    "--now", "now", metavar="ISO-TIME", hidden=True, help="Pretend it is this time (tests and demos)."
)
@click.version_option(__version__, prog_name="followupd")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int, now: str | None) -> None:
    """Keep in touch with the people in your mailbox, one give-first follow-up at a time.

    followupd reads your mail, learns who the real people are (not the robots), and queues follow-up drafts
    that lead with something for the recipient. You review them; it sends them on schedule.

    \b
    Examples:
      followupd demo                      # see it work on a sample mailbox
      followupd --config ~/fu.toml config check
      followupd scan && followupd plan && followupd review
    """
    from followupd import logs

    logs.configure(verbose)
    fixed_now: datetime | None = parse_now(now) if now else None
    ctx.obj = App(config_path=config_path, verbose=verbose, fixed_now=fixed_now)
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every FollowupdError into its message and exit code."""
    verbose = any(a in ("-v", "-vv", "-vvv", "--verbose") for a in (argv or sys.argv[1:]))
    try:
        cli.main(args=argv, prog_name="followupd", standalone_mode=False)
    except FollowupdError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"followupd: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # the one place an unexpected error becomes a message instead of a traceback
        if verbose:
            raise
        click.echo(f"followupd: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("Nothing was lost. Run again with -v for details and please report it.", err=True)
        sys.exit(70)

"""``followupd config``: check the configuration."""

from __future__ import annotations

import os

import click

from followupd.cli.app import App, pass_app


@click.group()
def config() -> None:
    """Inspect the configuration.

    \b
    Examples:
      followupd config check
      followupd --config config/followupd.example.toml config check
    """


@config.command("check")
@pass_app
def check(app: App) -> None:
    """Validate the config: exit 0 if it can be used, else list every problem (with its key path).

    \b
    Example:
      FOLLOWUPD_CONFIG=~/fu.toml followupd config check
    """
    from followupd import config as config_mod

    path = config_mod.find_config(app.config_path, os.environ)
    cfg = app.config()
    names = ", ".join(a.name for a in cfg.accounts) or "none"
    click.echo(f"{path}: OK ({len(cfg.accounts)} account(s): {names}; {len(cfg.warnings)} warning(s))")

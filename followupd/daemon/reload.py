"""SIGHUP: re-read the config and apply it to a running :class:`~followupd.daemon.service.Daemon`.

An invalid config is reported and the running one kept; a changed ``[database] url`` needs a restart. Watchers
whose account (or the scan/daemon settings) changed are restarted, paused ones retry at once. With several
workers (PostgreSQL) only owned accounts get a watcher; new accounts are claimed by the next lease round.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from followupd.config import Config
from followupd.errors import ConfigError

if TYPE_CHECKING:
    from followupd.daemon.service import Daemon

log = logging.getLogger("followupd.daemon.service")


async def reload(daemon: Daemon) -> None:
    """Re-read the config file and apply it; an invalid one is reported and the running one kept."""
    from followupd import config as config_mod

    path = daemon.config.path
    daemon.notifier.reloading()
    try:
        if path is None:
            raise ConfigError("the running config was not read from a file; nothing to reload")
        new = await asyncio.to_thread(config_mod.load, path)
    except ConfigError as exc:
        log.error("SIGHUP: config reload failed; keeping the running config.\n%s", exc)
        daemon.notifier.ready(f"config reload failed, running config kept; {daemon._status_text()}")
        return
    for warning in new.warnings:
        log.warning("config: %s", warning)
    if new.database.url != daemon.config.database.url:
        log.warning(
            "SIGHUP: [database] url changed; that needs a restart (still using %s)", daemon.db.safe_url
        )
        new = replace(new, database=daemon.config.database)
    await apply(daemon, new)
    daemon.summary.reloads += 1
    log.info("SIGHUP: config reloaded from %s (%d account(s))", path, len(new.accounts))
    daemon.notifier.ready(daemon._status_text())


async def apply(daemon: Daemon, new: Config) -> None:
    """Restart the watchers whose account (or the scan/daemon settings) changed; plan soon."""
    old = daemon.config
    daemon.config = new
    wanted = {a.name: a for a in new.accounts}
    shared_changed = old.scan != new.scan or old.daemon != new.daemon
    if daemon.shares is not None:
        daemon.shares.lease = new.daemon.lease
    retire = [
        w
        for name, w in daemon._watchers.items()
        if name not in wanted or shared_changed or w.account != wanted[name]
    ]
    for watcher in retire:
        del daemon._watchers[watcher.name]
    await asyncio.to_thread(daemon._stop_watchers, retire)
    for name, account in wanted.items():
        if daemon.shares is not None and name not in daemon.shares.owned:
            continue  # another worker's (or free: the next lease round claims it)
        if name in daemon._watchers:
            daemon._watchers[name].config = new
            daemon._watchers[name].retry_now()
        elif not daemon._stopping.is_set():
            daemon._start_watcher(new, account)
    if daemon._keeper is not None:  # claim new accounts (or give back removed ones) now, not a round later
        await daemon._keeper.round()
    daemon._plan_wanted = True
    daemon._poke.set()

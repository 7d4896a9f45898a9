"""``followupd run``: the service (``service.Daemon``) and the one-shot cycle (``steps.run_cycle``).

Threads per account scan (``watcher``); one asyncio loop plans, sends, reloads, reports health to systemd and
the database, and stops cleanly on SIGTERM. See docs/daemon.md.
"""

from followupd.daemon.service import Daemon, DaemonOptions
from followupd.daemon.shutdown import Summary
from followupd.daemon.steps import CycleReport, make_clock, run_cycle

__all__ = ["CycleReport", "Daemon", "DaemonOptions", "Summary", "make_clock", "run_cycle"]

"""Benchmark: several ``followupd run`` workers sharing one PostgreSQL database (issue 10).

Usage: python benchmarks/scale.py [--accounts 200] [--messages 500] [--workers 4] [--lease 10]
                                  [--skip-single] [--profile DIR] [--keep]

A throw-away Dovecot on 127.0.0.1 gets ``--accounts`` users with ``--messages`` messages each (the realistic
generator of benchmarks/scan.py: people, threads, newsletters, lists; 70 % INBOX, 30 % Sent), written as
Maildir files and indexed by Dovecot before timing; a throw-away PostgreSQL cluster (fsync off, as in the
test bed) holds the databases. One config lists every account. Then, each on a fresh database:

(a) one worker on SQLite: ``followupd run`` until every account has finished its first scan (its
    ``last_scan_at`` is set); messages stored per second, from process start;
(b) one worker on PostgreSQL, the same: the per-worker comparison (target: within 1.5x of (a));
(c) ``--workers`` workers on PostgreSQL, started together: first scan across all accounts, in total and per
    worker, and how the accounts ended up shared out;
(d) SIGKILL the worker owning most accounts: the time until every account it owned is owned again, with an
    unexpired lease, by a live worker (target: <= 2x the lease). All workers run on this machine, where a
    worker whose pid is gone is seen at once;
(e) so also SIGSTOP the next one: frozen, alive, as a worker on another machine that died or was cut off
    looks to the others; only its lease running out frees its accounts (target: <= 2x the lease).

``--profile DIR`` samples every worker with py-spy (all threads; ``pip install py-spy``) and writes collapsed
stacks to DIR; ``benchmarks/stacks.py`` summarises them. The message counts of (a), (b) and (c) must be equal
(the same mail stored once, whoever scanned it); the script says so, or fails. Figures are wall-clock on
whatever the machine is doing; run it on a quiet one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scan import USER, Generator  # noqa: E402  (the same mail as the scan benchmark)
from tests.servers._util import terminate_all  # noqa: E402

PASSWORD = "scale-secret"
POLL_S = 0.25


@dataclass
class Phase:
    """One timed run: how long until every account was scanned once, and what was stored."""

    name: str
    workers: int
    seconds: float
    messages: int
    owners: dict[str, int]
    cpu: float  # the workers' own CPU seconds (user + system) until the scan was done

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def account_name(n: int) -> str:
    return f"acct{n:04d}"


def user_name(n: int) -> str:
    return f"user{n:04d}@example.org"


def write_config(path: Path, url: str, port: int, accounts: int, lease: float) -> None:
    """One config for every worker: all accounts (the workers share them out), meetings off."""
    lines = [
        f'[database]\nurl = "{url}"\n',
        "[scan]\nmeetings = false\n",
        f'[daemon]\nlease = "{lease:g}s"\npoll_interval = "10m"\n',
    ]
    for n in range(accounts):
        lines.append(
            f'[[accounts]]\nname = "{account_name(n)}"\nemail = "{user_name(n)}"\naliases = ["{USER}"]\n'
            f'[accounts.imap]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
            f'username = "{user_name(n)}"\npassword_env = "PW"\nbatch_size = 500\ntimeout = "60s"\n'
        )
    path.write_text("\n".join(lines))
    path.chmod(0o600)


def seed(dovecot: Any, accounts: int, per_account: int) -> int:
    """The same generated mailbox for every user; returns the number of messages per mailbox."""
    folders: dict[str, list[bytes]] = {"INBOX": [], "Sent": []}
    for folder, raw, _at in Generator(per_account).messages():
        folders[folder].append(raw)
    for n in range(accounts):
        dovecot.add_user(user_name(n), PASSWORD)
        for folder, raws in folders.items():
            dovecot.write_maildir(user_name(n), folder, raws)
    return sum(len(r) for r in folders.values())


def warm(dovecot: Any, accounts: int) -> None:
    """Let Dovecot build each mailbox's index before timing (the first SELECT of a Maildir is slow)."""
    for n in range(accounts):
        with dovecot.client(user_name(n)) as client:
            for folder in ("INBOX", "Sent"):
                client.select_folder(folder, readonly=True)


class Workers:
    """``followupd run`` processes on one config, with their logs."""

    def __init__(self, config: Path, logs: Path, profile: Path | None = None) -> None:
        self.config, self.logs, self.profile = config, logs, profile
        self.procs: list[subprocess.Popen[bytes]] = []
        self.spies: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env.update(PW=PASSWORD, PYTHONPATH=str(ROOT))
        for n in range(count):
            with (self.logs / f"worker{len(self.procs)}-{n}.log").open("ab") as out:
                argv = [sys.executable, "-m", "followupd", "--config", str(self.config), "run"]
                proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
                self.procs.append(proc)
            if self.profile is not None:  # py-spy samples every thread (cProfile sees only the main one)
                target = self.profile / f"{self.config.stem}-{proc.pid}.txt"
                spy = [
                    "py-spy",
                    "record",
                    "--gil",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--rate",
                    "100",
                    "-o",
                    str(target),
                ]
                self.spies.append(
                    subprocess.Popen(
                        [*spy, "--pid", str(proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                )

    def check(self) -> None:
        for proc in self.procs:
            code = proc.poll()
            if code is not None and code != -signal.SIGKILL:
                raise SystemExit(f"worker {proc.pid} exited with {code}; see {self.logs}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the running workers so far (from /proc; not the database server's)."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        terminate_all(self.procs, timeout=60)
        for spy in self.spies:
            spy.wait(timeout=60)
        self.procs.clear()
        self.spies.clear()


def scanned(engine: Any) -> tuple[int, int, dict[str, int]]:
    """(accounts scanned once, messages stored, accounts per owner pid)."""
    from sqlalchemy import func, select

    from followupd.store.models import Account, Message

    with engine.connect() as conn:
        done = conn.scalar(select(func.count()).select_from(Account).where(Account.last_scan_at.is_not(None)))
        messages = conn.scalar(select(func.count()).select_from(Message))
        owners = Counter(str(o).split(":")[1] for o in conn.scalars(select(Account.owner)) if o)
    return int(done or 0), int(messages or 0), dict(owners)


def timed_scan(
    name: str, url: str, config: Path, *, logs: Path, workers: int, accounts: int, profile: Path | None = None
) -> tuple[Phase, Workers]:
    """Start ``workers`` workers and wait until every account was scanned once; the workers keep running."""
    from sqlalchemy import create_engine

    from followupd.store.db import Database

    database = Database(url)
    database.upgrade()  # the schema is not part of the timing
    database.dispose()
    engine = create_engine(url)
    pool = Workers(config, logs, profile)
    started = time.perf_counter()
    pool.start(workers)
    try:
        while True:
            pool.check()
            done, messages, owners = scanned(engine)
            if done >= accounts:
                break
            time.sleep(POLL_S)
        seconds = time.perf_counter() - started
        cpu = pool.cpu_seconds()
        time.sleep(1.0)  # a last batch may commit just after last_scan_at of another account
        _done, messages, owners = scanned(engine)
    except BaseException:
        pool.stop()
        raise
    finally:
        engine.dispose()
    return Phase(name, workers, seconds, messages, owners, cpu), pool


def takeover(url: str, pool: Workers, lease: float, signum: signal.Signals) -> tuple[float, int]:
    """Send ``signum`` to the live worker owning most accounts; seconds until all of them are owned by
    live workers. SIGKILL: the process is gone, and workers on the same machine see that at once. SIGSTOP: it
    is frozen (as a hung machine or a network partition looks to the others), so only lease expiry frees its
    accounts; it is SIGKILLed afterwards."""
    from sqlalchemy import create_engine, func, select

    from followupd.store.models import Account

    engine = create_engine(url)
    try:
        alive = {str(p.pid) for p in pool.procs if p.poll() is None}
        with engine.connect() as conn:
            owners = Counter(str(o) for o in conn.scalars(select(Account.owner)) if o)
        victim_id, count = next((o, n) for o, n in owners.most_common() if o.split(":")[1] in alive)
        victim = next(p for p in pool.procs if p.pid == int(victim_id.split(":")[1]))
        victim.send_signal(signum)
        hit = time.perf_counter()
        if signum == signal.SIGKILL:
            victim.wait()  # reaped, as systemd would: a zombie still holds its pid
        while True:
            with engine.connect() as conn:
                now = conn.scalar(select(func.now()))
                stale = (Account.owner == victim_id) | Account.owner.is_(None) | (Account.lease_until <= now)
                left = conn.scalar(select(func.count()).select_from(Account).where(stale))
            if not left:
                seconds = time.perf_counter() - hit
                break
            if time.perf_counter() - hit > 10 * lease:
                raise SystemExit(f"{left} account(s) still not taken over after {10 * lease:.0f} s")
            time.sleep(POLL_S / 2)
        if signum != signal.SIGKILL:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        return seconds, count
    finally:
        engine.dispose()


def run(args: argparse.Namespace) -> None:
    from tests.servers.dovecot import Dovecot
    from tests.servers.postgres import Postgres

    work = Path(tempfile.mkdtemp(prefix="followupd-scalebench-"))
    work.chmod(0o755)
    dovecot = Dovecot(
        directory=work, extra_config="default_process_limit = 2000\ndefault_client_limit = 8000\n"
    )
    postgres = Postgres(directory=work)
    phases: list[Phase] = []
    try:
        started = time.perf_counter()
        per_account = seed(dovecot, args.accounts, args.messages)
        dovecot.start()
        warm(dovecot, args.accounts)
        postgres.start()
        print(
            f"{args.accounts} accounts x {per_account} messages on Dovecot 127.0.0.1:{dovecot.port}, "
            f"seeded and indexed in {time.perf_counter() - started:.0f} s; lease {args.lease:g} s"
        )
        runs: list[tuple[str, str, int]] = []
        if not args.skip_single:
            runs += [
                ("(a) 1 worker, SQLite", f"sqlite:///{work / 'single.sqlite'}", 1),
                ("(b) 1 worker, PostgreSQL", postgres.create_database("single"), 1),
            ]
        runs.append(
            (f"(c) {args.workers} workers, PostgreSQL", postgres.create_database("shared"), args.workers)
        )
        for name, url, count in runs:
            config = work / f"{url.rsplit('/', 1)[1].replace('.', '_')}.toml"
            write_config(config, url, dovecot.port, args.accounts, args.lease)
            profile = Path(args.profile) if args.profile else None
            phase, pool = timed_scan(
                name, url, config, logs=work, workers=count, accounts=args.accounts, profile=profile
            )
            phases.append(phase)
            print(_line(phase))
            if count > 2:
                try:
                    for label, signum in (("(d) SIGKILL", signal.SIGKILL), ("(e) SIGSTOP", signal.SIGSTOP)):
                        seconds, owned = takeover(url, pool, args.lease, signum)
                        target = 2 * args.lease
                        verdict = "met" if seconds <= target else "MISSED"
                        took = f"all taken over in {seconds:.1f} s"
                        print(
                            f"{label} of the worker owning {owned} accounts: {took}"
                            f" (lease {args.lease:g} s; target <= {target:g} s: {verdict})"
                        )
                finally:
                    pool.stop()
            else:
                pool.stop()
        _compare(phases)
    finally:
        postgres.close()
        dovecot.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _line(phase: Phase) -> str:
    shares = sorted(phase.owners.values(), reverse=True)
    owned = f"; accounts per worker at the end: {shares}" if shares else ""
    per_worker = phase.rate / phase.workers
    return (
        f"{phase.name}: {phase.messages} messages in {phase.seconds:.1f} s = {phase.rate:,.0f} msg/s"
        f" ({per_worker:,.0f} per worker); workers' CPU {phase.cpu:.1f} s = {phase.messages / phase.cpu:,.0f}"
        f" msg per CPU second{owned}"
    )


def _compare(phases: list[Phase]) -> None:
    counts = {p.messages for p in phases}
    if len(counts) != 1:
        raise SystemExit(f"message counts differ between runs: {[(p.name, p.messages) for p in phases]}")
    print(f"every run stored the same {counts.pop()} messages")
    by_name = {p.name[:3]: p for p in phases}
    if "(a)" in by_name and "(b)" in by_name:
        ratio = by_name["(a)"].rate / by_name["(b)"].rate
        verdict = "met" if ratio <= 1.5 else "MISSED"
        print(f"per-worker scan throughput, SQLite / PostgreSQL = {ratio:.2f} (target <= 1.5: {verdict})")
        a, b = by_name["(a)"], by_name["(b)"]
        print(
            f"per worker CPU second, SQLite / PostgreSQL = {(a.messages / a.cpu) / (b.messages / b.cpu):.2f}"
            " (PostgreSQL's own server CPU runs on the same cores here and is not in it)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200, help="mailboxes (default 200)")
    parser.add_argument("--messages", type=int, default=500, help="messages per mailbox (default 500)")
    parser.add_argument("--workers", type=int, default=4, help="workers sharing PostgreSQL (default 4)")
    parser.add_argument("--lease", type=float, default=10.0, help="[daemon] lease in seconds (default 10)")
    parser.add_argument("--skip-single", action="store_true", help="only run (c) and (d)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--profile", metavar="DIR", help="sample each worker with py-spy (raw collapsed stacks into DIR)"
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()

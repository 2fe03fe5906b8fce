"""SMTP accept rate of gomail beside Postfix's smtp-sink and bare aiosmtpd, driven by smtp-source.

    uv run python contrib/bench/smtp_accept.py [--messages 20000] [--sessions 20] [--runs 3]
        [--only NAMES] [--profile]

Every target is driven by Postfix's smtp-source (2 KiB messages, SESSIONS parallel sessions,
MESSAGES messages) once with a new connection per message and once with connections reused
(`-d`), RUNS times, in one interleaved run so that the machine's drift hits every target alike.
Each run gets a freshly started server and a fresh data directory.  The rate is MESSAGES divided
by smtp-source's wall time; a run counts only when smtp-source exits 0 (without -A it stops at
the first refused command).  Where a target stores messages, they are counted afterwards
("stored").  See contrib/bench/README.md for installing smtp-source and reading the table.

Everything listens on 127.0.0.1; every wait is bounded; every child is killed at exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchproc import (
    TICK,
    busy_seconds,
    clean_up,
    exit_on_signals,
    format_table,
    free_port,
    gomail_bin,
    gomail_listeners,
    kill_all,
    log,
    report_profile,
    settle,
    spawn,
    start_pyspy,
    stop,
    tail,
    wait_greeting,
    write_json,
)

HERE = Path(__file__).resolve().parent
PY = sys.executable
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
SENDER = "from@bench.example"
RECIPIENT = "to@example.org"
DOMAIN = "example.org"
MODES = {"per-connection": [], "reused": ["-d"]}


# --------------------------------------------------------------------------------------------
# Targets


@dataclasses.dataclass
class Server:
    proc: subprocess.Popen
    port: int
    workdir: Path
    logfile: Path
    notes: list[str] = dataclasses.field(default_factory=list)


class Target:
    name = ""
    description = ""
    python = False  # a Python process py-spy can profile
    stores = False  # has a "stored" count
    ready_timeout = 30.0

    def available(self) -> str | None:
        """None when usable, else why not."""
        return None

    def start(self, workdir: Path) -> Server:
        port = free_port()
        logfile = workdir / "server.log"
        proc = spawn(self.argv(workdir, port), logfile, cwd=workdir)
        try:
            wait_greeting(proc, port, self.ready_timeout, logfile)
        except BaseException:
            stop(proc, signal.SIGKILL, grace=5)
            raise
        return Server(proc, port, workdir, logfile)

    def argv(self, workdir: Path, port: int) -> list[str]:
        raise NotImplementedError

    def stored(self, server: Server) -> int | None:
        return None


class SmtpSink(Target):
    name = "smtp-sink"
    description = "Postfix smtp-sink: answers everything, stores nothing"

    def available(self) -> str | None:
        return None if os.access(SMTP_SINK, os.X_OK) else f"{SMTP_SINK} missing (apt postfix)"

    def argv(self, workdir: Path, port: int) -> list[str]:
        return [SMTP_SINK, "-u", "nobody", "-c", f"127.0.0.1:{port}", "1024"]


class BareAiosmtpd(Target):
    name = "bare-aiosmtpd"
    description = "aiosmtpd, handler answers 250 only"
    python = True

    def argv(self, workdir: Path, port: int) -> list[str]:
        return [PY, str(HERE / "bare_aiosmtpd.py"), "--port", str(port)]


class AiosmtpdSqlite(Target):
    name = "aiosmtpd-sqlite"
    description = "aiosmtpd + one SQLite commit per message (WAL, synchronous=FULL)"
    python = True
    stores = True

    def argv(self, workdir: Path, port: int) -> list[str]:
        db = workdir / "bench.db"
        return [PY, str(HERE / "aiosmtpd_sqlite.py"), "--port", str(port), "--db", str(db)]

    def stored(self, server: Server) -> int | None:
        db = sqlite3.connect(server.workdir / "bench.db")
        try:
            return db.execute("SELECT count(*) FROM messages").fetchone()[0]
        finally:
            db.close()


class Gomail(Target):
    """gomail with a given pipeline file (None: its embedded defaults)."""

    python = True
    stores = True
    ready_timeout = 60.0
    pipeline_yaml: str | None = None
    _available: str | None | bool = False  # False: not probed yet

    def available(self) -> str | None:
        if Gomail._available is False:
            try:
                res = subprocess.run(
                    [gomail_bin(), "run", "--help"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    stdin=subprocess.DEVNULL,
                )
                ok = res.returncode == 0
                why = (res.stdout + res.stderr).strip().splitlines()[-1:] or ["no output"]
            except (OSError, subprocess.TimeoutExpired) as exc:
                ok, why = False, [str(exc)]
            Gomail._available = None if ok else f"`gomail run --help` fails: {why[0]}"
        return Gomail._available

    def gomail(self, data: Path, *args: str, stdin: str | None = None, timeout: float = 60):
        res = subprocess.run(
            [gomail_bin(), "--data", str(data), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=data.parent,
        )
        if res.returncode != 0:
            last = ((res.stderr or res.stdout).strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"gomail {' '.join(args)} exited {res.returncode}: {last[:300]}")
        return res.stdout

    def start(self, workdir: Path) -> Server:
        data = workdir / "data"
        notes = []
        for args, stdin in (
            (("domain", "add", DOMAIN), None),
            (("user", "add", RECIPIENT, "--password-stdin"), "bench-pass-1\n"),
        ):
            try:
                self.gomail(data, *args, stdin=stdin)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                # Go on: the run then shows what gomail answers without the user.
                notes.append(f"setup failed: {exc}"[:300])
                log(f"  {notes[-1]}")
        server = super().start(workdir)
        server.notes += notes
        return server

    def argv(self, workdir: Path, port: int) -> list[str]:
        argv = [gomail_bin(), "--data", str(workdir / "data")]
        if self.pipeline_yaml is not None:
            pipeline = workdir / "pipeline.yaml"
            pipeline.write_text(self.pipeline_yaml)
            config = workdir / "config.yaml"
            config.write_text(f"pipeline: {json.dumps(str(pipeline))}\n")
            argv += ["--config", str(config)]
        return [*argv, "run", *gomail_listeners(port)]

    def stored(self, server: Server) -> int | None:
        data = server.workdir / "data"
        try:
            out = self.gomail(data, "mailbox", "status", RECIPIENT, "--json")
            return count_from_status(json.loads(out))
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            log(f"  mailbox status failed ({exc}); counting in gomail.db")
        return count_in_db(data / "gomail.db")


def count_from_status(doc) -> int:
    """Sum the `messages` of every folder in `gomail mailbox status --json` output.

    Accepts a list of folder objects, a {folder: {...}} mapping or {"folders": ...}.
    """
    if isinstance(doc, dict) and "folders" in doc:
        doc = doc["folders"]
    if isinstance(doc, dict):
        if "messages" in doc and isinstance(doc["messages"], int):
            return doc["messages"]
        doc = list(doc.values())
    if not isinstance(doc, list):
        raise ValueError(f"unexpected mailbox status shape: {str(doc)[:200]}")
    total = 0
    for folder in doc:
        if not isinstance(folder, dict) or not isinstance(folder.get("messages"), int):
            raise ValueError(f"unexpected folder entry: {str(folder)[:200]}")
        total += folder["messages"]
    return total


def count_in_db(path: Path) -> int | None:
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM messages").fetchone()[0]
    except sqlite3.Error as exc:
        log(f"  counting in {path} failed: {exc}")
        return None
    finally:
        db.close()


def stock_pipeline_text() -> str:
    """The pipeline file gomail uses when none is named (the installed package's copy)."""
    from importlib.resources import files

    return files("gomail").joinpath("pipelines/default.yaml").read_text()


def stock_without_loopback_limit() -> str:
    """The stock pipelines with every `ratelimit` use told to exempt loopback clients.

    The stock inbound pipeline limits new connections per client address (a burst, then a few
    per second); smtp-source connects from 127.0.0.1 only, so a connection per message would
    measure the limiter.  Everything else stays as shipped.
    """
    import yaml

    doc = yaml.safe_load(stock_pipeline_text())
    for stages in (doc.get("pipelines") or {}).values():
        for stage, uses in (stages or {}).items():
            for i, use in enumerate(uses or []):
                if use == "ratelimit":
                    uses[i] = {"ratelimit": {"exempt_loopback": True}}
                elif isinstance(use, dict) and "ratelimit" in use:
                    use["ratelimit"] = {**(use["ratelimit"] or {}), "exempt_loopback": True}
            stages[stage] = uses
    head = "# gomail's stock pipelines, ratelimit exempting loopback (written by smtp_accept.py)\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


def no_plugins_pipeline() -> str:
    """The stock listeners and submission pipeline, with an empty inbound pipeline."""
    import yaml

    doc = yaml.safe_load(stock_pipeline_text())
    doc["pipelines"]["inbound"] = {}
    head = "# gomail with nothing in the inbound (mx) pipeline (written by smtp_accept.py)\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


def sink_pipeline() -> str:
    """The stock file with an inbound pipeline of only gomail's `sink` plugin (accept, discard)."""
    import yaml

    doc = yaml.safe_load(stock_pipeline_text())
    doc["pipelines"]["inbound"] = {"rcpt": ["sink"], "data": ["sink"]}
    head = "# gomail's core with only the sink plugin inbound (written by smtp_accept.py)\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


class GomailSink(Gomail):
    name = "gomail-sink"
    description = "gomail, inbound `rcpt: [sink], data: [sink]`: accepts all, stores nothing"
    stores = False

    @property
    def pipeline_yaml(self) -> str:
        return sink_pipeline()


class GomailNoPlugins(Gomail):
    name = "gomail-noplugins"
    description = "gomail, `pipelines: {inbound: {}}` (no plugins in the mx pipeline)"

    @property
    def pipeline_yaml(self) -> str:
        return no_plugins_pipeline()


class GomailStock(Gomail):
    name = "gomail-stock"
    description = "gomail on its embedded defaults (inbound: ratelimit, recipients, mailbox)"
    pipeline_yaml = None


class GomailStockLoopback(Gomail):
    name = "gomail-stock-lo"
    description = "gomail-stock with ratelimit's exempt_loopback: true"

    @property
    def pipeline_yaml(self) -> str:
        return stock_without_loopback_limit()


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        SmtpSink(),
        BareAiosmtpd(),
        AiosmtpdSqlite(),
        GomailNoPlugins(),
        GomailSink(),
        GomailStock(),
        GomailStockLoopback(),
    )
}


# --------------------------------------------------------------------------------------------
# One run


@dataclasses.dataclass
class Result:
    target: str
    mode: str
    run: int
    ok: bool
    seconds: float | None = None
    rate: float | None = None
    accepted: int | None = None
    rejected: int | None = None
    stored: int | None = None
    load: float | None = None  # 1-minute load average when the run started
    # CPU seconds used during smtp-source's run: by the server, by smtp-source, by the rest.
    cpu_server: float | None = None
    cpu_source: float | None = None
    cpu_other: float | None = None
    error: str = ""


def process_seconds(pid: int) -> float:
    """CPU time (user + system) of one live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return float("nan")


def children_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


REJECT_MARKS = ("sender rejected", "recipient rejected", "data rejected", "end of data rejected")


def run_source(port: int, mode: str, args, workdir: Path) -> tuple[int | None, float, str]:
    """Run smtp-source against port; return (exit status or None on timeout, seconds, stderr)."""
    argv = [SMTP_SOURCE, "-s", str(args.sessions), "-l", "2048", "-m", str(args.messages)]
    argv += ["-f", SENDER, "-t", RECIPIENT, *MODES[mode]]
    if args.allow_reject:
        argv.append("-A")
    argv.append(f"127.0.0.1:{port}")
    errfile = workdir / "smtp-source.err"
    t0 = time.perf_counter()
    proc = spawn(argv, errfile)
    try:
        status = proc.wait(timeout=args.source_timeout)
    except subprocess.TimeoutExpired:
        status = None
    seconds = time.perf_counter() - t0
    stop(proc, signal.SIGKILL, grace=1)
    return status, seconds, errfile.read_text(errors="replace")


def one_run(target: Target, mode: str, run: int, args, root: Path, spy=None) -> Result:
    settle(args.settle)
    workdir = Path(tempfile.mkdtemp(prefix=f"{target.name}-{mode}-{run}-", dir=root))
    res = Result(target.name, mode, run, ok=False, load=os.getloadavg()[0])
    server = None
    try:
        server = target.start(workdir)
        profiler = spy(server) if spy else None
        cpu0 = (busy_seconds(), process_seconds(server.proc.pid), children_seconds())
        status, seconds, err = run_source(server.port, mode, args, workdir)
        res.cpu_server = process_seconds(server.proc.pid) - cpu0[1]
        res.cpu_source = children_seconds() - cpu0[2]
        res.cpu_other = busy_seconds() - cpu0[0] - res.cpu_server - res.cpu_source
        if profiler is not None:
            profiler()
        res.seconds = seconds
        rejected = sum(1 for line in err.splitlines() if any(m in line for m in REJECT_MARKS))
        if status is None:
            res.error = f"smtp-source still running after {args.source_timeout:.0f}s: killed"
        elif status != 0:
            first = next((ln for ln in err.splitlines() if ln.strip()), f"exit status {status}")
            res.error = f"smtp-source exit {status}: {first.strip()[:200]}"
        else:
            res.ok = True
            res.rejected = rejected
            res.accepted = args.messages - rejected
            res.rate = res.accepted / seconds
        if server.proc.poll() is not None:
            res.ok = False
            res.error = (res.error + "; " if res.error else "") + (
                f"server died (exit {server.proc.returncode}): {tail(server.logfile, 3)}"
            )
        code = stop(server.proc)
        if code not in (0, None, -signal.SIGTERM) and not res.error:
            log(f"  note: server exited {code} on SIGTERM (log {server.logfile})")
        if target.stores:
            res.stored = target.stored(server)
        if server.notes:
            res.error = "; ".join([*server.notes, res.error] if res.error else server.notes)
    except Exception as exc:  # one failed run must not lose the others
        res.error = res.error or f"{type(exc).__name__}: {exc}"
    finally:
        if server is not None:
            stop(server.proc, signal.SIGKILL, grace=5)
        if not args.keep and res.ok:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


def describe(res: Result) -> str:
    if not res.ok:
        return f"FAILED {res.error}"
    s = f"{res.rate:8.0f} msg/s  {res.seconds:6.2f}s"
    if res.seconds and res.cpu_server is not None:
        s += "  cpu% server {:.0f} source {:.0f} other {:.0f}".format(
            *(100 * c / res.seconds for c in (res.cpu_server, res.cpu_source, res.cpu_other))
        )
    if res.rejected:
        s += f"  rejected {res.rejected}"
    if res.stored is not None:
        s += f"  stored {res.stored}"
    if res.error:
        s += f"  ({res.error})"
    return s


# --------------------------------------------------------------------------------------------
# Profile


def make_spy(outdir: Path, rate: int):
    """A hook for one_run: attach py-spy to the server, return a callable that stops it."""

    def attach(server: Server):
        proc = start_pyspy(server.proc.pid, outdir, rate)
        time.sleep(1.0)  # let it attach before the load starts
        if proc.poll() is not None:
            raise RuntimeError(f"py-spy exited {proc.returncode}: {tail(outdir / 'py-spy.log')}")

        def finish():
            stop(proc, signal.SIGINT, grace=30)  # SIGINT: py-spy writes its file and exits

        return finish

    return attach


def profile(target: Target, args, root: Path) -> None:
    outdir = Path(args.profile_dir).resolve()
    log(f"profiling {target.name} (reused connections) with py-spy into {outdir}")
    res = one_run(target, "reused", 0, args, root, spy=make_spy(outdir, args.profile_rate))
    log(f"  profiled run: {describe(res)}  (slowed by sampling; not in the table)")
    title = f"{target.name}, smtp-source -d -s {args.sessions} -m {args.messages}"
    report_profile(outdir, target.name, title)


# --------------------------------------------------------------------------------------------
# Table


def fmt_counts(values: list[int | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return str(lo) if lo == hi else f"{lo}..{hi}"


def cpu_share(pairs: list[tuple[float | None, float | None]]) -> str:
    """Median CPU share (100 = one core) over runs."""
    vals = [100 * c / t for c, t in pairs if c is not None and t and c == c]
    return f"{statistics.median(vals):.0f}" if vals else "-"


def table(results: list[Result], names: list[str], args) -> str:
    head = ["target", "mode", "runs", "median msg/s", "min", "max", "accepted", "stored"]
    head += ["server cpu%", "other cpu%"]
    rows = [head]
    notes = []
    for name in names:
        for mode in MODES:
            rs = [r for r in results if r.target == name and r.mode == mode]
            if not rs:
                continue
            good = [r for r in rs if r.ok]
            rates = [r.rate for r in good]
            rows.append(
                [
                    name,
                    mode,
                    f"{len(good)}/{len(rs)}",
                    f"{statistics.median(rates):.0f}" if rates else "-",
                    f"{min(rates):.0f}" if rates else "-",
                    f"{max(rates):.0f}" if rates else "-",
                    fmt_counts([r.accepted for r in good]),
                    fmt_counts([r.stored for r in rs]) if TARGETS[name].stores else "n/a",
                    cpu_share([(r.cpu_server, r.seconds) for r in good]),
                    cpu_share([(r.cpu_other, r.seconds) for r in good]),
                ]
            )
            for r in rs:
                if r.error:
                    notes.append(f"{name} {mode} run {r.run}: {r.error}")
    return format_table(rows, notes)


# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=20000, help="messages per run (smtp-source -m)")
    p.add_argument("--sessions", type=int, default=20, help="parallel sessions (smtp-source -s)")
    p.add_argument("--runs", type=int, default=3, help="runs per target and mode (0: profile only)")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated targets: " + ", ".join(TARGETS) + " (default: all available)",
    )
    p.add_argument("--modes", default=",".join(MODES), help="per-connection,reused (default both)")
    p.add_argument(
        "--allow-reject", action="store_true", help="pass -A: count refusals instead of stopping"
    )
    p.add_argument(
        "--source-timeout", type=float, default=None, help="seconds (default from --messages)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep every run's directory (failed ones always are)"
    )
    p.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="before each run wait up to this many s for other load to stop (0: never)",
    )
    p.add_argument("--json", dest="json_out", help="also write every run's result to this file")
    p.add_argument("--profile", action="store_true", help="one extra reused run under py-spy")
    p.add_argument("--profile-target", default="gomail-stock", help="which target --profile wraps")
    p.add_argument(
        "--profile-dir", default="/tmp/gomail-bench-profile", help="where the SVG and summary go"
    )
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    args = p.parse_args()
    if args.messages <= 0 or args.sessions <= 0 or args.runs < 0:
        p.error("--messages and --sessions must be positive, --runs not negative")
    if args.source_timeout is None:
        args.source_timeout = max(120.0, args.messages / 40)  # fails below 40 msg/s
    return args


def main() -> int:
    args = parse_args()
    if not os.access(SMTP_SOURCE, os.X_OK):
        log(f"{SMTP_SOURCE} is missing: install Debian's postfix (see contrib/bench/README.md)")
        return 2
    wanted = [n.strip() for n in args.only.split(",") if n.strip()] or list(TARGETS)
    unknown = [n for n in wanted if n not in TARGETS]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown or any(m not in MODES for m in modes):
        log(f"unknown target or mode: {unknown or modes}; targets: {', '.join(TARGETS)}")
        return 2
    names = []
    for n in wanted:
        why = TARGETS[n].available()
        if why:
            log(f"skipping {n}: {why}")
        else:
            names.append(n)
    if not names:
        log("no target available")
        return 1

    root = Path(tempfile.mkdtemp(prefix="gomail-bench-"))
    results: list[Result] = []
    log(f"work dir {root}; smtp-source -s {args.sessions} -l 2048 -m {args.messages}")
    exit_on_signals()
    try:
        for run in range(1, args.runs + 1):
            for name in names:
                for mode in modes:
                    res = one_run(TARGETS[name], mode, run, args, root)
                    results.append(res)
                    log(f"run {run} {name:17} {mode:14} {describe(res)}")
        if args.profile:
            target = TARGETS.get(args.profile_target)
            if target is None or not target.python or target.available():
                log(f"cannot profile {args.profile_target}: not an available Python target")
            else:
                profile(target, args, root)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        clean_up(root, keep=args.keep or not all(r.ok for r in results))

    if results:
        print()
        print(
            f"smtp-source -s {args.sessions} -l 2048 -m {args.messages} -f {SENDER} -t {RECIPIENT}"
            f" [-d]{' -A' if args.allow_reject else ''}; {args.runs} run(s); {os.cpu_count()} CPUs"
        )
        print(table(results, names, args))
    write_json(args.json_out, results)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()

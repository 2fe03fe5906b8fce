"""Child processes for the benchmark scripts: start them in their own process group, stop them
(and anything they forked) for sure, and read their logs. Shared by smtp_accept.py,
outbound_vs_postfix.py and imap_vs_dovecot.py; so are the helpers below the process ones (waiting
for an SMTP greeting, a quiet machine, gomail's script, the result table and py-spy profiles)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

# Children still alive, killed by kill_all() whatever happens.
CHILDREN: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], logfile: Path, **kw) -> subprocess.Popen:
    """Start a child in its own process group, output to logfile."""
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kw,
        )
    CHILDREN.append(proc)
    return proc


def descendants(pid: int) -> list[int]:
    """pid and every process below it, from /proc."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 20.0) -> int | None:
    """Signal the child's process group, wait up to `grace` s, then SIGKILL the group and any
    descendant that left it (Dovecot's processes do). Returns the child's exit code."""
    tree = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"  pid {proc.pid} ignored signal {sig} for {grace:.0f}s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if proc in CHILDREN:
        CHILDREN.remove(proc)
    return proc.returncode


def kill_all(sig: int = signal.SIGKILL, grace: float = 5.0) -> None:
    for proc in list(CHILDREN):
        stop(proc, sig, grace)


def tail(path: Path, lines: int = 15, sep: str = "\n") -> str:
    """The last lines of a log file, joined by sep ("" when it cannot be read)."""
    try:
        return sep.join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP end the script through sys.exit, so that its finally blocks run."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))


def clean_up(root: Path, keep: bool) -> None:
    """Kill every child, then remove root, or say where it is kept."""
    kill_all()
    if keep:
        log(f"run directories kept under {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def write_json(path: str | None, results: list) -> None:
    """Every run's result (dataclasses) to path, when one is given."""
    if path:
        Path(path).write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))


def wait_greeting(
    proc: subprocess.Popen | None, port: int, timeout: float, logfile: Path, interval: float = 0.1
) -> None:
    """Poll 127.0.0.1:port until it greets with 220; fail if proc exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode} before listening; log {logfile}: "
                + " | ".join(tail(logfile, 3).splitlines())
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                banner = s.recv(512)
                with contextlib.suppress(OSError):
                    s.sendall(b"QUIT\r\n")
                    s.recv(512)
            if banner.startswith(b"220"):
                return
            last = f"banner {banner[:80]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(interval)
    raise RuntimeError(f"port {port} not ready after {timeout:.0f}s ({last}); log {logfile}")


# --------------------------------------------------------------------------------------------
# gomail


BIN = Path(sys.executable).parent  # the venv's bin/: gomail's console script beside its python


def gomail_bin() -> str:
    exe = BIN / "gomail"
    return str(exe) if exe.exists() else (shutil.which("gomail") or str(exe))


def gomail_listeners(mx_port: int) -> list[str]:
    """`gomail run` options: mx on 127.0.0.1:mx_port, the other listeners (IMAP too) on free
    ports, so that two benchmarks, or a benchmark and a running gomail, do not collide."""
    return [
        *("--listen", f"mx=127.0.0.1:{mx_port}"),
        *("--listen", f"submission=127.0.0.1:{free_port()}"),
        *("--listen", f"smtps=127.0.0.1:{free_port()}"),
        *("--listen", f"imap=127.0.0.1:{free_port()}"),
        *("--listen", f"imaps=127.0.0.1:{free_port()}"),
    ]


# --------------------------------------------------------------------------------------------
# CPU


TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time all CPUs have spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK  # all but idle and iowait (guest is in user)


def settle(limit: float, threshold: float = 0.3, window: float = 1.0) -> None:
    """Wait up to `limit` s (0: not at all) for the machine to be quiet: under `threshold` cores
    busy over `window` s."""
    if limit <= 0:
        return
    deadline = time.monotonic() + limit
    while True:
        before = busy_seconds()
        time.sleep(window)
        busy = (busy_seconds() - before) / window
        if busy < threshold:
            return
        if time.monotonic() >= deadline:
            log(f"  machine still busy ({busy:.2f} cores) after {limit:.0f}s: running anyway")
            return


# --------------------------------------------------------------------------------------------
# Result table


def format_table(rows: list[list[str]], notes: list[str], after: list[str] = ()) -> str:
    """rows (the first is the header) in columns, the first two left-aligned, under the header a
    rule; then the lines of `after`; then, after a blank line, each note as "! note"."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append(
            "  ".join(
                c.ljust(w) if j < 2 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    out += after
    if notes:
        out.append("")
        out += [f"! {n}" for n in notes]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# py-spy profiles: outdir/profile.raw.txt (collapsed stacks), flamegraph.svg, top.txt


def pyspy_argv() -> list[str]:
    exe = shutil.which("py-spy")
    if exe:
        return [exe]
    uvx = shutil.which("uvx")
    if uvx:
        return [uvx, "py-spy"]
    return [shutil.which("uv") or "uv", "tool", "run", "py-spy"]


def start_pyspy(pid: int, outdir: Path, rate: int = 100) -> subprocess.Popen:
    """py-spy recording pid into outdir/profile.raw.txt; stop it with SIGINT to have it write."""
    outdir.mkdir(parents=True, exist_ok=True)
    argv = [*pyspy_argv(), "record", "--pid", str(pid), "--format", "raw"]
    argv += ["--function", "--threads", "--rate", str(rate)]
    argv += ["--output", str(outdir / "profile.raw.txt")]
    return spawn(argv, outdir / "py-spy.log")


def read_collapsed(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def top_functions(stacks, n: int = 25) -> str:
    """Per-thread shares, then the n functions with most self time (py-spy --threads stacks)."""
    total = sum(c for _, c in stacks) or 1
    self_t: dict[str, int] = defaultdict(int)
    incl: dict[str, int] = defaultdict(int)
    threads: dict[str, int] = defaultdict(int)
    for frames, c in stacks:
        if frames[0].startswith("thread ("):
            # "thread (TID): NAME": TIDs differ between runs, names say which thread it is
            threads[frames[0].partition(": ")[2] or frames[0]] += c
            frames = frames[1:] or frames
        self_t[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    lines = [f"busy samples: {total} (100% = all busy time of the server process)"]
    for name, c in sorted(threads.items(), key=lambda kv: -kv[1]):
        lines.append(f"  thread {name}: {100 * c / total:.1f}%")
    lines.append(f"{'self%':>6} {'total%':>7}  function (file:line)")
    for f, c in sorted(self_t.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(f"{100 * c / total:6.1f} {100 * incl[f] / total:7.1f}  {f}")
    return "\n".join(lines)


def flamegraph_svg(stacks, title: str, width: int = 1600) -> str:
    """A plain icicle graph (root on top) from collapsed stacks; <title> tooltips per frame."""
    from html import escape
    from zlib import crc32

    tree: dict = {"n": 0, "c": {}}
    for frames, c in stacks:
        node = tree
        node["n"] += c
        for f in frames:
            node = node["c"].setdefault(f, {"n": 0, "c": {}})
            node["n"] += c
    total = tree["n"] or 1
    row, top = 17, 40
    rects: list[str] = []
    depth_max = 0

    def walk(node, x: float, depth: int):
        nonlocal depth_max
        for name, child in sorted(node["c"].items()):
            w = child["n"] / total * (width - 20)
            if w >= 0.3:
                depth_max = max(depth_max, depth)
                y = top + depth * row
                hue = crc32(name.encode()) % 60
                label = name if len(name) * 6.5 < w - 6 else name[: max(0, int((w - 6) / 6.5) - 2)]
                label = label + ".." if label and label != name else label
                pct = 100 * child["n"] / total
                rects.append(
                    f"<g><title>{escape(name)} ({child['n']} samples, {pct:.2f}%)</title>"
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                    f'fill="hsl({hue},80%,{55 + hue % 15}%)"/>'
                    + (
                        f'<text x="{x + 3:.1f}" y="{y + 12}">{escape(label)}</text>'
                        if label
                        else ""
                    )
                    + "</g>"
                )
                walk(child, x, depth + 1)
            x += w

    walk(tree, 10.0, 0)
    height = top + (depth_max + 2) * row
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="10" y="22" font-size="15">{escape(title)} ({total} samples)</text>'
        + "".join(rects)
        + "</svg>\n"
    )


def report_profile(outdir: Path, name: str, title: str) -> None:
    """From outdir/profile.raw.txt: flamegraph.svg and top.txt, and the top functions printed."""
    raw = outdir / "profile.raw.txt"
    if not raw.exists():
        log(f"  no profile written; see {outdir / 'py-spy.log'}")
        return
    stacks = read_collapsed(raw)
    svg = outdir / "flamegraph.svg"
    svg.write_text(flamegraph_svg(stacks, title))
    summary = top_functions(stacks)
    (outdir / "top.txt").write_text(summary + "\n")
    print(f"\nTop 25 functions by self time in {name} ({title}):")
    print(summary)
    print(f"flamegraph: {svg}\nraw stacks: {raw}")

"""What `synthmix run` prints: the plan, one line per change of a stage's state, a status line now and then
while jobs run, and the summary at the end. Plain lines (no cursor tricks), so the view reads the same in a
terminal, a `tee`d log and a CI job.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from synthmix.cluster.resources import JobResources, family_and_key
from synthmix.config.resources import time_seconds

# a stage's states, in the order the status line lists them
STATES = ("waiting", "queued", "running", "done", "restored", "skipped", "failed", "not run", "cancelled")


@dataclass
class Entry:
    """One stage of the plan as the driver tracks it."""

    name: str
    resources: JobResources
    state: str = "waiting"
    began: float | None = None  # when its command started (epoch), from the job's own files
    ended: float | None = None
    note: str = ""  # what the summary says beside the state (exit status, log, reason)
    log: Path | None = None

    def wall(self) -> float | None:
        if self.began is None:
            return None
        return (self.ended or time.time()) - self.began


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class View:
    """Line-based live view of the run."""

    def __init__(self, out: TextIO = sys.stdout, status_every_s: float = 30.0):
        self.out = out
        self.t0 = time.monotonic()
        self.status_every_s = status_every_s
        self.last_status = self.t0
        self.width = 24

    def say(self, text: str) -> None:
        print(f"[{duration(time.monotonic() - self.t0):>7}] {text}", file=self.out, flush=True)

    def change(self, entry: Entry, detail: str = "") -> None:
        self.say(f"{entry.name:<{self.width}} {entry.state:<9} {detail}".rstrip())

    def status(self, entries: list[Entry], force: bool = False) -> None:
        """Every `status_every_s`: how many stages are in each state, and how long the running ones run."""
        now = time.monotonic()
        if not force and now - self.last_status < self.status_every_s:
            return
        self.last_status = now
        counts = Counter(entry.state for entry in entries)
        line = " · ".join(f"{state} {counts[state]}" for state in STATES if counts[state])
        running = [f"{e.name} {duration(e.wall())}" for e in entries if e.state == "running"]
        self.say(line + (f"  (running: {', '.join(running)})" if running else ""))


def plan_lines(
    entries: list[Entry],
    reasons: dict[str, str],
    upstream: dict[str, list[str]],
    total: int,
    executor: str,
    sbatch: dict[str, list[str]] | None,
) -> list[str]:
    """The plan as `--dry-run` prints it: each stage to run, upstream first, with why (what changed, or
    which upstream stages it waits for), its resources and sbatch flags; then the requests per family."""
    names = {e.name for e in entries}
    lines = [
        f"plan: {len(entries)} of {total} stage(s) to run, upstream first ({executor} executor). At run time a "
        "stage whose inputs come out unchanged is skipped, and one that DVC can restore from its run-cache is "
        "restored instead of submitted."
    ]
    for i, entry in enumerate(entries, 1):
        after = [u for u in upstream.get(entry.name, []) if u in names]
        why = f"after {', '.join(after)}" if after else reasons.get(entry.name, "")
        lines.append(f"{i:>3}. {entry.name}: {why}")
        lines.append(f"       resources {entry.resources.describe()}")
        if sbatch is not None:
            lines.append(f"       sbatch    {' '.join(sbatch[entry.name])}")
    families: dict[tuple[str, str], int] = Counter(
        (family_and_key(e.name)[0], e.resources.describe()) for e in entries
    )
    if families:
        width = max(len(family) for family, _ in families)
        lines.append("per family:")
        lines += [f"  {family:<{width}}  {n:>3} x  {what}" for (family, what), n in families.items()]
    limits = [e.resources for e in entries if e.resources.gpus and e.resources.time]
    if limits:
        hours = sum(r.gpus * r.nodes * time_seconds(r.time) for r in limits) / 3600  # type: ignore[arg-type]
        lines.append(
            f"GPU time the jobs may take at most (gpus x nodes x time limit): {hours:,.0f} GPU-hours"
        )
    return lines


def summary_lines(entries: list[Entry], wall: float) -> list[str]:
    """The end of a run: every stage's result, wall time and resources, then each failure with its log."""
    counts = Counter(entry.state for entry in entries)
    width = max([len(e.name) for e in entries] + [5])
    lines = [
        f"summary: {' · '.join(f'{s} {counts[s]}' for s in STATES if counts[s]) or 'nothing to run'} "
        f"in {duration(wall)}"
    ]
    if entries:
        lines.append(f"  {'stage':<{width}}  {'result':<9}  {'wall':>7}  resources")
    for entry in entries:
        lines.append(
            f"  {entry.name:<{width}}  {entry.state:<9}  {duration(entry.wall()):>7}  {entry.resources.describe()}"
        )
    for entry in entries:
        if entry.state in ("failed", "not run", "cancelled") and entry.note:
            lines.append(f"{entry.state}: {entry.name}: {entry.note}")
    return lines


def log_tail(path: Path | None, lines: int = 5) -> str:
    """The last lines of a job's log, indented, for the failure message."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 4000))
        text = handle.read().decode("utf-8", "replace")
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "".join(f"\n      | {line}" for line in tail)

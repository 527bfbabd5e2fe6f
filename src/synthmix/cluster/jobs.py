"""A submitted stage as files: its job script, its log and exit status, and a small JSON handle.

Everything lives in the ignored work folder `.synthmix/jobs/` of the project:

    .synthmix/jobs/<stage>.json           the handle of the stage's job while it is not yet recorded
    .synthmix/jobs/run.json               the run in progress: what dvc.lock and .gitignore held before it
    .synthmix/jobs/driver.lock            held (flock) by the one `synthmix run` driving the project
    .synthmix/jobs/logs/<stage>/<n>/      attempt n: job.sh, log (stdout + stderr), started, exitcode

The job script writes `started` when it begins and `exitcode` (status and end time) when the command ends,
each through a rename, so a reader never sees half a file. These files, not the scheduler, are the source of
truth: they work without Slurm accounting, survive a driver restart, and say the same thing for both
executors. A handle is written before the job is submitted and updated after, so a driver killed in between
still knows that a job may exist (slurm.py finds it again by its comment, local.py by the pid in `started`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.io import atomic_write_text, write_json


class ClusterError(RuntimeError):
    """`synthmix run` cannot go on; the message says what is wrong and what to do."""


@dataclass
class Status:
    """A job's state: PENDING (submitted, not begun), RUNNING, or final with its exit status (None when the
    job ended without writing one: cancelled, killed, lost)."""

    state: str
    code: int | None = None
    final: bool = False


def jobs_dir(root: str | Path) -> Path:
    return Path(root) / paths.WORK / "jobs"


def safe_name(stage: str) -> str:
    """A stage name as one file name (`sub/dvc.yaml:train@a` -> `sub_dvc.yaml_train@a`)."""
    return re.sub(r"[^A-Za-z0-9_.@=+-]", "_", stage)


@dataclass
class Job:
    """One submitted attempt of one stage, as saved in `.synthmix/jobs/<stage>.json`."""

    stage: str
    executor: str  # "local" or "slurm"
    jobdir: str  # absolute: job.sh, log, started, exitcode
    fingerprint: dict[str, str]  # the stage's cmd, deps and params when submitted (pipeline.fingerprint)
    resources: dict[str, Any]
    handle: dict[str, Any] | None = None  # executor's: {"pid", "start"} or {"job_id"}; None while submitting
    gpus: list[str] = field(default_factory=list)  # local executor: the GPU ids it was given
    submitted: float = field(default_factory=time.time)

    @property
    def log(self) -> Path:
        return Path(self.jobdir) / "log"

    def started(self) -> float | None:
        """When the job's command began (the job wrote it), else None."""
        fields = _read_fields(Path(self.jobdir) / "started")
        return _seconds(fields[0]) if fields else None

    def started_pid(self) -> int | None:
        fields = _read_fields(Path(self.jobdir) / "started")
        return int(fields[1]) if fields and len(fields) > 1 else None

    def exit(self) -> tuple[int, float] | None:
        """(exit status, end time) once the command has ended, else None."""
        fields = _read_fields(Path(self.jobdir) / "exitcode")
        return (int(fields[0]), _seconds(fields[1])) if fields and len(fields) > 1 else None


def _seconds(text: str) -> float:
    """A `date +%s.%N` time; BSD date (macOS) prints a literal N for %N, so only the leading number counts."""
    return float(re.match(r"[0-9]+(\.[0-9]+)?", text)[0])  # type: ignore[index]


def _read_fields(path: Path) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8").split() or None
    except FileNotFoundError:
        return None


def save_job(root: str | Path, job: Job) -> None:
    write_json(jobs_dir(root) / f"{safe_name(job.stage)}.json", asdict(job))


def remove_job(root: str | Path, stage: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (jobs_dir(root) / f"{safe_name(stage)}.json").unlink()


def load_jobs(root: str | Path) -> list[Job]:
    """The handles a previous driver left (jobs submitted but not yet recorded)."""
    jobs = []
    for path in sorted(jobs_dir(root).glob("*.json")):
        if path.name == "run.json":
            continue
        try:
            jobs.append(Job(**json.loads(path.read_text(encoding="utf-8"))))
        except (json.JSONDecodeError, TypeError) as error:
            raise ClusterError(
                f"{path}: not a job handle ({error}); if no job of that stage is running, delete the file"
            ) from None
    return jobs


def new_jobdir(root: str | Path, stage: str) -> Path:
    """`.synthmix/jobs/logs/<stage>/<n>`: a fresh folder per attempt, so a failed attempt's log stays."""
    base = jobs_dir(root) / "logs" / safe_name(stage)
    base.mkdir(parents=True, exist_ok=True)
    attempt = 1 + max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0)
    folder = base / str(attempt)
    folder.mkdir()
    return folder.resolve()


def write_script(jobdir: Path, command: str, cwd: str, env: dict[str, str], multi_node: bool = False) -> Path:
    """`jobdir/job.sh`: run `command` in `cwd` with `env` added, and leave `started` and `exitcode` behind.

    The command runs in a child shell, so that an `exit N` inside it still reaches the lines that write the
    exit status. With `multi_node` (a Slurm job over several nodes) the command runs once per node through
    srun, with the rendezvous of a multi-machine `accelerate launch` in SYNTHMIX_* variables (see slurm.py).
    """
    q = shlex.quote
    started, exitcode = q(str(jobdir / "started")), q(str(jobdir / "exitcode"))
    exports = "".join(f"export {name}={q(value)}\n" for name, value in env.items())
    if multi_node:
        run = (
            'export SYNTHMIX_NUM_MACHINES="$SLURM_JOB_NUM_NODES"\n'
            'export SYNTHMIX_MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"\n'
            'export SYNTHMIX_MAIN_PROCESS_PORT="$((29500 + SLURM_JOB_ID % 1000))"\n'
            'srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=1 '
            f"bash -c {q('export SYNTHMIX_MACHINE_RANK=$SLURM_NODEID; ' + command)}\n"
        )
    else:
        run = f"bash -c {q(command)}\n"
    text = (
        "#!/bin/bash\n"
        f"# written by `synthmix run` for stage {env.get('DVC_STAGE', '?')}: its cmd from dvc.yaml\n"
        f'echo "$(date +%s.%N) $$ ${{SLURM_JOB_ID:-}}" > {started}.tmp && mv {started}.tmp {started}\n'
        f"cd {q(cwd)} || exit 97\n"
        f"{exports}"
        f"{run}"
        "rc=$?\n"
        f'echo "$rc $(date +%s.%N)" > {exitcode}.tmp && mv {exitcode}.tmp {exitcode}\n'
        "exit $rc\n"
    )
    script = jobdir / "job.sh"
    atomic_write_text(script, text)
    script.chmod(0o755)
    return script


class DriverLock:
    """One driver per project: an flock on `.synthmix/jobs/driver.lock`, released when the process ends
    however it ends (so a killed driver never blocks the next one)."""

    def __init__(self, root: str | Path):
        self.path = jobs_dir(root) / "driver.lock"
        self.handle: Any = None

    def __enter__(self) -> DriverLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "?"
            self.handle.close()
            raise ClusterError(
                f"another `synthmix run` (pid {owner}) is driving this project ({self.path}); wait for it to "
                "finish or stop it (Ctrl-C cancels its jobs)"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()

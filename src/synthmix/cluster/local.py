"""The local executor: each stage's job is a process on this machine, at most `-j N` at a time, and jobs that
ask for GPUs get disjoint ones through CUDA_VISIBLE_DEVICES.

A job runs in its own session (process group), so Ctrl-C in the terminal reaches the driver only, which then
cancels its jobs itself, and a driver that is killed leaves its jobs running for the next driver to wait for.
That next driver is not their parent, so it cannot wait() for them: it knows them by pid plus the process's
start time (a reused pid is another process) and reads their exit status from the `exitcode` file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from synthmix.cluster.jobs import ClusterError, Job, Status


def visible_gpus(spec: str | None = None) -> list[str]:
    """The GPU ids the local executor may hand out: `--gpus 0,1` when given, else CUDA_VISIBLE_DEVICES when
    set (the driver's own share of the machine), else every GPU `nvidia-smi -L` lists, else none."""
    if spec is None:
        spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is not None:
        return [part.strip() for part in spec.split(",") if part.strip() and part.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return [str(i) for i, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU ")]


class GpuPool:
    """Disjoint GPU ids for concurrent jobs: a job takes all it asks for or waits."""

    def __init__(self, ids: list[str]):
        self.ids = list(ids)
        self.free = list(ids)

    def take(self, count: int) -> list[str] | None:
        if count > len(self.free):
            return None
        taken, self.free = self.free[:count], self.free[count:]
        return taken

    def give_back(self, ids: list[str]) -> None:
        self.free += [i for i in ids if i in self.ids and i not in self.free]
        self.free.sort(key=self.ids.index)

    def reserve(self, ids: list[str]) -> None:
        """Mark GPUs as in use by a job found again after a restart."""
        self.free = [i for i in self.free if i not in ids]


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None if it is gone
    or a zombie. Where /proc does not exist (macOS), "" when the pid exists."""
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


class LocalExecutor:
    name = "local"

    def __init__(self, root: str | Path, gpus: list[str]):
        self.root = str(root)
        self.pool = GpuPool(gpus)
        self.children: dict[int, subprocess.Popen[bytes]] = {}

    def check(self, stage: str, gpus: int, nodes: int) -> None:
        """Refuse at plan time what this machine can never run."""
        if nodes > 1:
            raise ClusterError(
                f"{stage}: resources ask for {nodes} nodes; the local executor runs on this machine only "
                "(use --executor slurm, or set nodes: 1)"
            )
        if gpus > len(self.pool.ids):
            have = ", ".join(self.pool.ids) or "none"
            raise ClusterError(
                f"{stage}: resources ask for {gpus} GPU(s) but this machine offers {len(self.pool.ids)} "
                f"(GPU ids: {have}; from --gpus, CUDA_VISIBLE_DEVICES or nvidia-smi); lower its `gpus` in "
                "params resources, or run with --executor slurm"
            )

    def can_take(self, count: int) -> bool:
        return count <= len(self.pool.free)

    def assign(self, job: Job, count: int) -> bool:
        """Give the job `count` GPUs; False when not enough are free now (it waits)."""
        taken = self.pool.take(count)
        if taken is None:
            return False
        job.gpus = taken
        return True

    def job_env(self, job: Job) -> dict[str, str]:
        # a job sees exactly the GPUs it was given (none when it asked for none), as under Slurm
        return {"CUDA_VISIBLE_DEVICES": ",".join(job.gpus)}

    def submit(self, job: Job, script: Path, flags: list[str]) -> None:
        """Start the job now (`flags`, the sbatch flags, mean nothing here)."""
        with open(job.log, "ab") as log:
            process = subprocess.Popen(
                ["/bin/bash", str(script)],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C is the driver's to handle
            )
        self.children[process.pid] = process
        job.handle = {"pid": process.pid, "start": _start_time(process.pid)}

    def adopt(self, job: Job) -> None:
        """A job found again after a restart: its GPUs are taken; a handle lost in a crash is recovered."""
        self.pool.reserve(job.gpus)
        if job.handle is None and (pid := job.started_pid()) is not None:
            job.handle = {"pid": pid, "start": _start_time(pid)}

    def _alive(self, job: Job) -> bool:
        if job.handle is None:
            return False
        pid = job.handle["pid"]
        if pid in self.children:
            return self.children[pid].poll() is None
        start = _start_time(pid)
        return start is not None and (start == job.handle.get("start") or not job.handle.get("start"))

    def poll(self, jobs: list[Job]) -> dict[str, Status]:
        found = {}
        for job in jobs:
            alive = self._alive(job)
            ended = job.exit()  # read after the liveness check: a job that just ended has written it
            if ended is not None:
                found[job.stage] = Status("COMPLETED" if ended[0] == 0 else "FAILED", ended[0], True)
            elif alive:
                found[job.stage] = Status("RUNNING" if job.started() else "PENDING")
            else:
                found[job.stage] = Status("LOST", None, True)
        for job in jobs:
            if found[job.stage].final:
                self.pool.give_back(job.gpus)
                if job.handle:
                    self.children.pop(job.handle["pid"], None)
        return found

    def cancel(self, jobs: list[Job], grace_s: float = 5.0) -> None:
        """SIGTERM each job's process group, then SIGKILL what is left after `grace_s`."""
        alive = [job for job in jobs if self._alive(job)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for job in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.handle["pid"], sig)  # type: ignore[index]
            deadline = time.monotonic() + grace_s
            while alive and time.monotonic() < deadline:
                time.sleep(0.1)
                alive = [job for job in alive if self._alive(job)]
            if not alive:
                break
        for job in jobs:
            self.pool.give_back(job.gpus)

"""The Slurm executor: each stage's job is one `sbatch` of its job script, watched with `squeue` and cancelled
with `scancel`. Plain subprocess calls, no Python client: the scheduler's own tools are what every cluster has.

Why not submitit (or dask-jobqueue, ray): a DVC stage is a shell command, not a Python callable, so pickling
buys nothing; submitit learns a finished job's state only from `sacct`, which fails on clusters without the
accounting daemon (a killed job then looks pending forever); and re-attaching to a job after a driver restart
needs nothing but its id here. The job writes its exit status to a file on the shared filesystem (jobs.py),
which is the source of truth; `squeue -t all` says whether a job is pending or running and notices one that
ended without writing it (cancelled, timed out, out of memory, node failure), `scontrol` gives that job's
exit status while the controller remembers it, and `sacct` (real accounting or the jobcomp text file) after.

The job runs in the project root with the driver's environment (`--export=ALL`, as DVC runs a stage), minus
CUDA_VISIBLE_DEVICES: Slurm sets that for jobs that ask for GPUs (`--gres=gpu:N`), and a login node's value
must not leak into the others. The project must be on a filesystem the compute nodes share.

Multi-node jobs (`nodes: N > 1` in resources): the job script runs the stage's command once per node through
`srun --ntasks-per-node=1`, with SYNTHMIX_NUM_MACHINES (the node count), SYNTHMIX_MACHINE_RANK (the node's
index, $SLURM_NODEID), SYNTHMIX_MAIN_PROCESS_IP (the first node) and SYNTHMIX_MAIN_PROCESS_PORT in the
environment, for `accelerate launch --num_machines/--machine_rank/--main_process_ip/--main_process_port`.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from synthmix.cluster.jobs import ClusterError, Job, Status

PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
# states in which the job script itself exited, so it wrote its exit status: wait for the file to show up
# on a shared filesystem that caches attributes instead of reporting the job lost
EXITED = {"COMPLETED", "FAILED"}
FILE_GRACE_S = 30.0


class SubmitError(RuntimeError):
    """sbatch refused one job (an impossible request, an unknown partition or account): that stage fails."""


class SlurmExecutor:
    name = "slurm"

    def __init__(self, root: str | Path):
        missing = [tool for tool in ("sbatch", "squeue", "scontrol", "scancel") if shutil.which(tool) is None]
        if missing:
            raise ClusterError(
                f"--executor slurm needs the Slurm commands {', '.join(missing)} on PATH: run on a login node "
                "of the cluster (e.g. after `module load slurm`), or use --executor local"
            )
        self.root = str(root)
        self.exited_at: dict[str, float] = {}
        self.warned = False

    def check(self, stage: str, gpus: int, nodes: int) -> None:
        """Nothing to refuse here: sbatch itself rejects what the cluster cannot give (the stage then fails
        with sbatch's message)."""

    def can_take(self, count: int) -> bool:
        return True

    def assign(self, job: Job, count: int) -> bool:
        return True  # Slurm assigns GPUs (--gres) and sets CUDA_VISIBLE_DEVICES in the job

    def job_env(self, job: Job) -> dict[str, str]:
        return {}

    def sbatch_command(self, job: Job, script: Path, flags: list[str]) -> list[str]:
        return [
            "sbatch",
            "--parsable",
            f"--job-name=smx-{job.stage}",
            f"--output={job.log}",  # stderr goes there too
            f"--chdir={self.root}",
            f"--comment=synthmix:{job.jobdir}",  # finds the job again if the driver dies right after sbatch
            "--export=ALL",
            *flags,
            str(script),
        ]

    def submit(self, job: Job, script: Path, flags: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        done = subprocess.run(
            self.sbatch_command(job, script, flags), capture_output=True, text=True, env=env, timeout=120
        )
        if done.returncode != 0:
            raise SubmitError(f"sbatch refused the job: {done.stderr.strip() or done.stdout.strip()}")
        job.handle = {"job_id": done.stdout.strip().split(";")[0]}

    def adopt(self, job: Job) -> None:
        """A job found again after a restart; one whose handle was lost in a crash is found by its comment."""
        if job.handle is not None:
            return
        listing = subprocess.run(
            ["squeue", "-h", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%k"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        for line in listing.stdout.splitlines():
            job_id, _, comment = line.partition("|")
            if comment == f"synthmix:{job.jobdir}":
                job.handle = {"job_id": job_id}

    def _queue_states(self, ids: list[str]) -> dict[str, str] | None:
        """{job id: state} from one squeue call; None when the controller cannot be asked right now."""
        if not ids:
            return {}
        done = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0 and "Invalid job id" not in done.stderr:
            if not self.warned:
                print(f"warning: squeue failed ({done.stderr.strip()}); retrying", file=sys.stderr)
                self.warned = True
            return None
        states = {}
        for line in done.stdout.splitlines():
            job_id, _, state = line.partition("|")
            states[job_id.strip()] = state.strip()
        return states

    def poll(self, jobs: list[Job]) -> dict[str, Status]:
        states = self._queue_states([job.handle["job_id"] for job in jobs if job.handle])
        found = {}
        for job in jobs:
            ended = job.exit()  # read after squeue: a job squeue saw end has written it by now
            if ended is not None:
                found[job.stage] = Status("COMPLETED" if ended[0] == 0 else "FAILED", ended[0], True)
                continue
            if job.handle is None:
                found[job.stage] = Status("LOST", None, True)  # never submitted (the driver died first)
                continue
            if states is None:  # controller unreachable: never call a job lost for that
                found[job.stage] = Status("RUNNING" if job.started() else "PENDING")
                continue
            job_id = job.handle["job_id"]
            state, code = states.get(job_id), None
            if state is None:  # the controller forgot it (MinJobAge): ask accounting
                state, code = _final_state(job_id)
            state = (state or "LOST").split()[0]
            if state in PENDING:
                found[job.stage] = Status("PENDING")
            elif state in RUNNING or (state in EXITED and self._file_on_its_way(job_id)):
                found[job.stage] = Status("RUNNING")
            else:
                found[job.stage] = Status(state, code if code is not None else _final_state(job_id)[1], True)
        return found

    def _file_on_its_way(self, job_id: str) -> bool:
        """A job that exited wrote its exit status file; a shared filesystem may show it a little later."""
        first_seen = self.exited_at.setdefault(job_id, time.monotonic())
        return time.monotonic() - first_seen < FILE_GRACE_S

    def cancel(self, jobs: list[Job]) -> None:
        ids = [job.handle["job_id"] for job in jobs if job.handle]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=120, check=False)


def _exit_status(text: str) -> int | None:
    """Slurm's "rc:signal" as one status (128 + signal for a killed job, as a shell reports it)."""
    code, _, sig = text.partition(":")
    if not code.isdigit():
        return None
    return 128 + int(sig) if sig.isdigit() and int(sig) else int(code)


def _final_state(job_id: str) -> tuple[str | None, int | None]:
    """(state, exit status) of a job from the controller's memory, else from accounting."""
    shown = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=120
    )
    if shown.returncode == 0:
        fields = dict(kv.split("=", 1) for kv in shown.stdout.split() if "=" in kv)
        return fields.get("JobState"), _exit_status(fields.get("ExitCode", ""))
    if shutil.which("sacct") is None:
        return None, None
    for extra in ([], ["-c"]):  # real accounting, then the jobcomp text file
        done = subprocess.run(
            ["sacct", *extra, "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        for line in done.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[0] == job_id:
                return parts[1].split()[0], _exit_status(parts[2])
    return None, None

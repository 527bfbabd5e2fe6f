"""`synthmix run`: the scheduling loop. DVC says what is stale (pipeline.py); every stage whose upstream is
done becomes one job (local.py, slurm.py); each finished job is recorded in dvc.lock as `dvc repro` would.

One polling round: ask the executor about the submitted jobs; then, under DVC's lock, record the jobs that
succeeded and dispatch every stage whose upstream is done (skipped if its inputs came out unchanged,
restored from the run-cache when DVC can, else prepared as a job); then, with the lock released, submit the
jobs. A failed job stops only the stages downstream of it (`dvc repro --keep-going`).

Restarts. Each job's handle is saved in `.synthmix/jobs/<stage>.json` before it is submitted and removed once
the stage is recorded (or has failed). A driver that starts and finds handles plans again, waits for those
jobs instead of submitting their stages a second time, and records them when they succeed; a job that was
lost (its process or Slurm job ended without an exit status) is submitted again. A job is recorded only if the
stage's command, dependencies and params are still those it started with, and a found job whose upstream
must run first is cancelled, so no stage is recorded twice or with outputs of two different runs.
`.synthmix/jobs/run.json` keeps the dvc.lock entries and .gitignore lines from before the run, so their final
order is the sequential one even across restarts. Ctrl-C (or SIGTERM) cancels the jobs this driver submitted.

Over 400 lines on purpose: the polling round, the job handles and the restart rules are one state machine
(each step reads what the others wrote under DVC's lock); the executors and DVC queries already live apart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from synthmix.cluster.jobs import (
    ClusterError,
    DriverLock,
    Job,
    jobs_dir,
    load_jobs,
    new_jobdir,
    remove_job,
    save_job,
    write_script,
)
from synthmix.cluster.pipeline import (
    Plan,
    changed_inputs,
    dispatch,
    fingerprint,
    gitignore_order,
    hold_paths,
    job_command,
    job_env,
    lock_entries,
    locked,
    make_plan,
    open_repo,
    read_lines,
    record,
    release,
    reorder_lock,
    stages_by_name,
    tidy_gitignores,
    track_with_git,
)
from synthmix.cluster.progress import Entry, View, duration, log_tail, plan_lines, summary_lines
from synthmix.cluster.resources import Resources, load_resources
from synthmix.cluster.slurm import SubmitError
from synthmix.io import read_json, write_json

FINISHED = ("done", "restored", "skipped")  # a downstream stage may go
STOPPED = ("failed", "not run", "cancelled")  # a downstream stage may not


def make_executor(name: str, root: str, gpus: str | None) -> Any:
    if name == "slurm":
        from synthmix.cluster.slurm import SlurmExecutor

        return SlurmExecutor(root)
    from synthmix.cluster.local import LocalExecutor, visible_gpus

    return LocalExecutor(root, visible_gpus(gpus))


class Driver:
    def __init__(self, repo: Any, executor: Any, plan: Plan, resources: Resources, limit: int, poll_s: float):
        self.repo, self.executor, self.plan = repo, executor, plan
        self.root = repo.root_dir
        self.limit, self.poll_s = limit, poll_s
        self.entries = {name: Entry(name, resources.resolve(name)) for name in plan.candidates}
        self.jobs: dict[str, Job] = {}  # submitted and not finished
        self.holds: dict[str, Any] = {}  # DVC path locks of the submitted jobs
        self.succeeded: list[Job] = []  # finished with status 0, to record
        self.label = " ".join(sys.argv)
        self.gitignores: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})  # (order, before)
        self.view = View()
        self.view.width = max([len(n) for n in self.entries] + [12])

    # ---- states ----
    def set(self, entry: Entry, state: str, detail: str = "") -> None:
        entry.state = state
        self.view.change(entry, detail)

    def fail(self, entry: Entry, state: str, note: str) -> None:
        entry.note = note
        self.set(entry, state, note + (log_tail(entry.log) if state == "failed" else ""))
        for name in self.plan.candidates:  # in order, so the blocking spreads downstream in one pass
            other = self.entries[name]
            if other.state == "waiting" and any(
                self.entries[u].state in STOPPED for u in self.plan.upstream[name] if u in self.entries
            ):
                other.note = "an upstream stage did not finish: " + ", ".join(
                    u
                    for u in self.plan.upstream[name]
                    if u in self.entries and self.entries[u].state in STOPPED
                )
                self.set(other, "not run", other.note)

    def ready(self) -> list[Entry]:
        """Waiting stages whose upstream stages (those in the plan) all finished, in plan order."""
        return [
            self.entries[name]
            for name in self.plan.candidates
            if self.entries[name].state == "waiting"
            and name not in self.jobs  # prepared this round, submitted when the lock is released
            and all(self.entries[u].state in FINISHED for u in self.plan.upstream[name] if u in self.entries)
        ]

    def slots(self) -> int:
        return self.limit - len(self.jobs) if self.limit else sys.maxsize

    def can_dispatch(self) -> bool:
        return self.slots() > 0 and any(self.executor.can_take(e.resources.gpus) for e in self.ready())

    # ---- restart ----
    def adopt(self, saved: list[Job], by_name: dict[str, Any]) -> None:
        """Jobs an earlier driver submitted: wait for them, unless their stage no longer needs them."""
        for job in saved:
            self.executor.adopt(job)
            entry = self.entries.get(job.stage)
            status = self.executor.poll([job])[job.stage]
            pending = [u for u in self.plan.upstream.get(job.stage, []) if u in self.entries]
            why = ""
            if job.stage not in by_name:
                why = "its stage is no longer in dvc.yaml"
            elif entry is None:
                why = "its stage is up to date"
            elif pending:
                why = f"{', '.join(pending)} must run first; the stage will be submitted again"
            elif status.final and status.code != 0:
                code = f" (exit status {status.code})" if status.code is not None else ""
                why = f"it ended {status.state.lower()}{code}; submitting the stage again"
            if why:
                self.executor.cancel([job])  # running or not: also gives its GPUs back
                self.view.say(f"{job.stage}: job of an earlier run ({_handle(job)}) dropped: {why}")
                remove_job(self.root, job.stage)
                continue
            self.holds[job.stage] = hold_paths(self.repo, by_name[job.stage], f"{self.label} [{job.stage}]")
            self.jobs[job.stage] = job
            entry.log = job.log
            self.set(entry, "queued", f"found its job of an earlier run ({_handle(job)}); waiting for it")

    # ---- one round ----
    def poll(self) -> None:
        if not self.jobs:
            return
        statuses = self.executor.poll(list(self.jobs.values()))
        for name, job in list(self.jobs.items()):
            status, entry = statuses[name], self.entries[name]
            entry.began = job.started() or entry.began
            if not status.final:
                state = "running" if status.state == "RUNNING" else "queued"
                if state != entry.state:
                    self.set(entry, state, _handle(job))
                continue
            del self.jobs[name]
            release(self.holds.pop(name))
            ended = job.exit()
            entry.ended = ended[1] if ended else time.time()
            if status.code == 0:
                self.succeeded.append(job)
                continue
            remove_job(self.root, name)
            code = f"exit status {status.code}" if status.code is not None else "no exit status"
            if status.state != "FAILED":  # cancelled, timed out, out of memory, lost ...
                code = f"{status.state.lower()}, {code}"
            self.fail(entry, "failed", f"{code}; log {_rel(job.log)}")

    def record_succeeded(self, by_name: dict[str, Any]) -> None:
        from dvc.exceptions import DvcException

        for job in self.succeeded:
            entry, stage = self.entries[job.stage], by_name.get(job.stage)
            try:
                if stage is None:
                    raise ClusterError("the stage left dvc.yaml while its job ran")
                changed = changed_inputs(stage, job.fingerprint)
                if changed:
                    raise ClusterError(
                        f"its inputs changed while its job ran ({', '.join(changed)}); run again"
                    )
                record(stage)
                tidy_gitignores(*self.gitignores)
            except (DvcException, ClusterError) as error:
                self.fail(entry, "failed", f"not recorded: {error}; log {_rel(job.log)}")
            else:
                self.set(entry, "done", f"{duration(entry.wall())}, recorded")
            remove_job(self.root, job.stage)
        self.succeeded = []

    def dispatch_ready(self, by_name: dict[str, Any]) -> list[tuple[Job, Path]]:
        from dvc.exceptions import DvcException

        launches: list[tuple[Job, Path]] = []
        progress = True
        while progress:  # a skipped or restored stage can make its downstream ready in the same round
            progress = False
            for entry in self.ready():
                if self.slots() <= 0:  # prepare() counts each new job in self.jobs
                    return launches
                if not self.executor.can_take(entry.resources.gpus):
                    continue
                stage = by_name[entry.name]
                try:
                    outcome = dispatch(self.repo, stage, [by_name[u] for u in self.plan.upstream[entry.name]])
                    tidy_gitignores(*self.gitignores)  # after a restore, before a downstream stage hashes it
                    if outcome == "submit":
                        launches.append(self.prepare(entry, stage))
                        continue
                except DvcException as error:
                    self.fail(entry, "failed", str(error))
                    continue
                messages = {"skipped": "inputs unchanged", "restored": "from the run-cache, recorded"}
                self.set(entry, "done" if outcome == "done" else outcome, messages.get(outcome, "by DVC"))
                progress = True
        return launches

    def prepare(self, entry: Entry, stage: Any) -> tuple[Job, Path]:
        # DVC's path lock first: when another dvc command holds a path, nothing else needs undoing
        self.holds[entry.name] = hold_paths(self.repo, stage, f"{self.label} [{entry.name}]")
        jobdir = new_jobdir(self.root, entry.name)
        job = Job(entry.name, self.executor.name, str(jobdir), fingerprint(stage), asdict(entry.resources))
        self.executor.assign(job, entry.resources.gpus)
        env = {**job_env(stage), **self.executor.job_env(job)}
        script = write_script(
            jobdir, job_command(stage), stage.wdir, env, multi_node=entry.resources.nodes > 1
        )
        save_job(self.root, job)  # before sbatch: a driver killed during it still knows a job may exist
        self.jobs[entry.name] = job
        return job, script

    def submit(self, job: Job, script: Path) -> None:
        entry = self.entries[job.stage]
        entry.log = job.log
        try:
            self.executor.submit(job, script, entry.resources.sbatch_flags())
        except (SubmitError, OSError) as error:
            del self.jobs[job.stage]
            release(self.holds.pop(job.stage))
            self.executor.cancel([job])  # gives its GPUs back
            remove_job(self.root, job.stage)
            self.fail(entry, "failed", f"not submitted: {error}")
            return
        save_job(self.root, job)
        self.set(entry, "queued", f"{_handle(job)} · {entry.resources.describe()} · log {_rel(job.log)}")

    def cancel_all(self) -> None:
        jobs = list(self.jobs.values())
        if jobs:
            self.view.say(f"interrupted: cancelling {len(jobs)} job(s)")
            self.executor.cancel(jobs)
        for job in jobs:
            remove_job(self.root, job.stage)
            self.set(self.entries[job.stage], "cancelled", f"log {_rel(job.log)}")
            self.entries[job.stage].note = "cancelled by Ctrl-C"
        self.jobs.clear()

    def loop(self) -> None:
        wait = self.poll_s
        while True:
            if _INTERRUPTED["signal"] is not None:
                raise KeyboardInterrupt
            self.poll()
            if self.succeeded or self.can_dispatch():
                with locked(self.repo):
                    by_name = stages_by_name(self.repo)
                    self.record_succeeded(by_name)
                    launches = self.dispatch_ready(by_name)
                for job, script in launches:
                    self.submit(job, script)
                wait = 0.05  # new jobs: look again soon (a metric stage ends in a second), then less often
            if not self.jobs and not self.succeeded and not self.can_dispatch():
                for entry in self.entries.values():  # cannot happen, but never report it as success
                    if entry.state == "waiting":
                        entry.note = "it never became ready (a bug: please report it)"
                        self.set(entry, "not run", entry.note)
                return
            self.view.status(list(self.entries.values()))
            time.sleep(min(wait, self.poll_s))
            wait *= 2


def _handle(job: Job) -> str:
    if not job.handle:
        return "submitting"
    if "job_id" in job.handle:
        return f"slurm job {job.handle['job_id']}"
    gpus = f", CUDA_VISIBLE_DEVICES={','.join(job.gpus)}" if job.gpus else ""
    return f"pid {job.handle['pid']}{gpus}"


def _rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return os.path.relpath(path)
    return str(path)


_INTERRUPTED = {"signal": None}  # set by _interrupt; the loop re-raises it at its next turn


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C or SIGTERM: stop now, and remember it, so that a KeyboardInterrupt that library code happens
    to catch (the signal can land anywhere, DVC's calls included) is still honoured at the loop's next turn."""
    _INTERRUPTED["signal"] = signum
    raise KeyboardInterrupt


def run(
    targets: list[str],
    *,
    jobs: int | None = None,
    executor: str = "local",
    dry_run: bool = False,
    gpus: str | None = None,
    params_file: str = "params.yaml",
    poll_s: float | None = None,
) -> int:
    """Run the stale stages of `targets` as parallel jobs; 0 when every stage finished, 1 when one failed,
    130 when interrupted."""
    params = Path(params_file)
    if params.is_file():  # a params problem first, even outside a DVC project
        load_resources(params)
    repo = open_repo()
    if not params.is_file() and not params.is_absolute():  # run from a subfolder: the project's params
        params = Path(repo.root_dir) / params
    resources = load_resources(params, Path(repo.root_dir) / "dvc.yaml")
    if dry_run:
        return _dry_run(repo, targets, resources, executor, gpus)
    engine = make_executor(executor, repo.root_dir, gpus)
    limit = jobs if jobs is not None else (1 if executor == "local" else 0)  # 0: no limit (Slurm queues)
    with DriverLock(repo.root_dir):
        return _drive(
            repo, engine, targets, resources, limit, poll_s or (0.5 if executor == "local" else 5.0)
        )


def _dry_run(repo: Any, targets: list[str], resources: Resources, executor: str, gpus: str | None) -> int:
    with locked(repo):
        plan = make_plan(repo, targets)
    entries = [Entry(name, resources.resolve(name)) for name in plan.candidates]
    if executor == "local":  # what this machine can never run is refused now, not after hours
        local = make_executor("local", repo.root_dir, gpus)
        for entry in entries:
            local.check(entry.name, entry.resources.gpus, entry.resources.nodes)
    flags = {e.name: e.resources.sbatch_flags() for e in entries} if executor == "slurm" else None
    print("\n".join(plan_lines(entries, plan.reasons, plan.upstream, len(plan.order), executor, flags)))
    return 0


def _drive(
    repo: Any, engine: Any, targets: list[str], resources: Resources, limit: int, poll_s: float
) -> int:
    root = repo.root_dir
    saved = load_jobs(root)
    other = [job for job in saved if job.executor != engine.name]
    if other:
        raise ClusterError(
            f"{other[0].stage}: its job of an earlier run went to the {other[0].executor} executor; run "
            f"again with --executor {other[0].executor} to wait for it"
        )
    # what dvc.lock and the .gitignore files held before the run, kept across restarts for their final order
    state_file = jobs_dir(root) / "run.json"
    with locked(repo):
        known = stages_by_name(repo)
        plan = make_plan(repo, targets, also=[job.stage for job in saved if job.stage in known])
        state = read_json(state_file) if state_file.exists() else {}
        state.setdefault("lock_before", lock_entries(plan.lockfiles))
        state.setdefault("order", plan.order)
        state.setdefault("gitignore_order", gitignore_order([known[name] for name in plan.candidates]))
        state.setdefault("gitignore_before", read_lines(list(state["gitignore_order"])))
    driver = Driver(repo, engine, plan, resources, limit, poll_s)
    driver.gitignores = (state["gitignore_order"], state["gitignore_before"])
    for entry in driver.entries.values():
        engine.check(entry.name, entry.resources.gpus, entry.resources.nodes)
    write_json(state_file, state)
    gpu_note = f", GPUs {','.join(engine.pool.ids) or 'none'}" if engine.name == "local" else ""
    driver.view.say(
        f"{len(plan.candidates)} of {len(plan.order)} stage(s) to run; {engine.name} executor, "
        f"-j {limit or 'unlimited'}{gpu_note}"
    )
    _INTERRUPTED["signal"] = None
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    started, interrupted = time.time(), False
    try:
        with locked(repo):
            driver.adopt(saved, stages_by_name(repo))
        driver.loop()
    except KeyboardInterrupt:
        interrupted = True
        driver.cancel_all()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for hold in driver.holds.values():  # after a crash the jobs run on, for the next driver
            release(hold)
        driver.holds.clear()
    with locked(repo):
        order = state["order"] + [name for name in plan.order if name not in state["order"]]
        for path in plan.lockfiles:
            reorder_lock(path, order, state["lock_before"].get(path, []))
    state_file.unlink()
    track_with_git(repo)
    entries = list(driver.entries.values())
    print("\n".join(summary_lines(entries, time.time() - started)), flush=True)
    if interrupted:
        return 130
    return 1 if any(e.state in ("failed", "not run") for e in entries) else 0

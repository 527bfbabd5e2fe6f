"""examples/api-source.yaml: the embedded default with a third source that only an API serves, run with DVC
against a real vLLM OpenAI-compatible server (tests/vllm_server.py, shared with tests/test_vllm_server.py).

The example's API entries (model, source, condition) are put on tiny local models for the other sources and
on the shared server (real SmolLM2 served as `smollm2-135m-instruct`, the name the example asks for), so the
test pays for the server's start once and the API source's requests are real HTTP to vLLM.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dvcproject import REPO, clean_env, make_project, mix_study_params, ran_stages, run_dvc, written_out
from vllm_server import SMOLLM2_NAMES, VLLMServer

from synthmix.io import read_json, read_jsonl

EXAMPLE = REPO / "examples" / "api-source.yaml"
ADDED = {"models": ["smollm2-api"], "sources": ["api"], "conditions": ["multi3"]}  # what the example adds
STAGES = ["models", "prepare", "generate", "articles", "summarize", "mix"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_example_is_the_default_plus_an_api_source() -> None:
    """Nothing but the API model, its source and the three-source condition differs from params.yaml, so the
    example follows the default when the default changes (this test fails until it is updated too)."""
    from synthmix.config import load_params

    example, default = _load(EXAMPLE), _load(REPO / "params.yaml")
    for section, keys in ADDED.items():
        assert set(example[section]) - set(default[section]) == set(keys)
        for key in keys:
            example[section].pop(key)
    assert example == default
    params = load_params(EXAMPLE)
    assert params.models["smollm2-api"].api is not None and params.models["smollm2-api"].hub is None
    assert params.models["smollm2-api"].api.model in SMOLLM2_NAMES  # the name the test server answers to
    assert params.sources["api"].generation.backend == "openai"
    assert (
        params.sources["api"].generation.max_requests
        >= params.data.max_train_prompts + params.data.max_test_prompts
    )
    assert set(params.conditions["multi3"].mix) == {"smollm2", "gemma3", "api"}


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.vllm
def test_an_api_source_through_dvc(tmp_path: Path, tiny_raw_model: Path, smollm2_server: VLLMServer) -> None:
    """`dvc repro` with the example's API source on a real vLLM server: models@ writes the endpoint and no
    weights, generate@api and summarize@api answer every prompt once over HTTP and record what was served,
    multi3 mixes the three sources; a second repro sends nothing."""
    example = _load(EXAMPLE)
    api_model = example["models"]["smollm2-api"]
    params = mix_study_params(tiny_raw_model)  # the example's other names, on a tiny local model
    params["models"]["smollm2-api"] = {"api": {**api_model["api"], "base_url": smollm2_server.url}}
    api = example["sources"]["api"]
    params["sources"]["api"] = {**api, "generation": {**api["generation"], "max_new_tokens": 16}}
    params["conditions"]["multi3"] = example["conditions"]["multi3"]
    params = written_out(params)
    env = clean_env(tmp_path / "home")
    key_name = api_model["api"]["api_key_env"]
    env[key_name] = smollm2_server.api_key
    root = make_project(tmp_path / "api", params, env, STAGES)

    ran = ran_stages(run_dvc(root, env, "repro"))
    assert {"models@smollm2-api", "generate@api", "summarize@api", "mix@multi3"} <= set(ran)

    folder = root / "models" / "base" / "smollm2-api"
    assert sorted(p.name for p in folder.iterdir()) == ["model.json"]  # an endpoint, no weights
    described = read_json(folder / "model.json")
    assert smollm2_server.url in str(described) and api_model["api"]["model"] in str(described)
    assert smollm2_server.api_key not in str(described)  # the key's variable is named, never its value

    n_prompts = sum(len(read_jsonl(root / "data" / "prepared" / f"{s}.jsonl")) for s in ("train", "test"))
    records = read_jsonl(root / "data" / "generated" / "api" / "responses.jsonl")
    assert len(records) == len({r["id"] for r in records}) == n_prompts
    assert all(r["backend"] == "openai" and r["source"] == "api" for r in records)
    served = {r["served"]["model"] for r in records}  # vLLM replies with its first served name
    assert len(served) == 1 and served <= set(SMOLLM2_NAMES)
    assert sum(bool(r["response"].strip()) for r in records) >= n_prompts - 1  # SmolLM2 writes text
    manifest = read_json(root / "data" / "generated" / "api" / "manifest.json")
    assert manifest["counts"]["served"] == [records[0]["served"]]

    summaries = read_jsonl(root / "data" / "summaries" / "api" / "responses.jsonl")
    articles = read_jsonl(root / "data" / "articles" / "articles.jsonl")
    assert len(summaries) == len(articles) and {r["served"]["model"] for r in summaries} == served

    mix = read_jsonl(root / "data" / "mixes" / "multi3" / "train.jsonl")
    by_source = {s: sum(r["source"] == s for r in mix) for s in ("smollm2", "gemma3", "api")}
    assert sum(by_source.values()) == len(mix) == params["mix"]["size"]
    assert all(by_source.values()), by_source
    api_texts = {r["response"] for r in records}
    assert all(r["response"] in api_texts for r in mix if r["source"] == "api")

    assert ran_stages(run_dvc(root, env, "repro")) == []  # nothing reruns, so nothing is sent again

"""The paper presets validate and carry the paper's settings (../shared/PAPER.md §2-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from synthmix.config import load_params

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"paper-8b": "llama-3.1-8b", "paper-70b": "llama-3.1-70b", "paper-70b-tiers": "llama-3.1-70b"}

# PAPER.md §1: the four source models of each tier (what each model entry names: a hub id or an API model)
TIERS = {
    "small": {
        "meta-llama/Llama-3.1-8B-Instruct",
        "google/gemma-2-9b-it",
        "Qwen/Qwen2.5-7B-Instruct",
        "tiiuae/Falcon3-10B-Instruct",
    },
    "medium": {
        "meta-llama/Llama-3.1-70B-Instruct",
        "Qwen/Qwen2.5-72B-Instruct",
        "mistral-large-latest",
        "command-r-plus",
    },
    "large": {
        "meta-llama/Meta-Llama-3.1-405B-Instruct",
        "deepseek-ai/DeepSeek-V3",
        "gpt-4o",
        "gemini-2.0-flash",
    },
}
API_ONLY = {"mistral-large-latest", "command-r-plus", "meta-llama/Meta-Llama-3.1-405B-Instruct"}
API_ONLY |= {"deepseek-ai/DeepSeek-V3", "gpt-4o", "gemini-2.0-flash"}  # the paper called these through APIs


def model_name(params, source: str) -> str:
    spec = params.models[params.sources[source].model]
    return spec.api.model if spec.api else spec.hub


def tier_of(params, mix: dict) -> str:
    names = {model_name(params, s) for s in mix}
    tiers = [tier for tier, models in TIERS.items() if names <= models]
    assert len(tiers) == 1, names
    return tiers[0]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_has_the_papers_settings(name: str) -> None:
    path = ROOT / "presets" / f"{name}.yaml"
    params = load_params(path)
    # the paper trains (and samples, and evaluates) each condition once, with seed 42: one run seed. Written
    # out, not left to the default: dvc.yaml's matrix reads ${seeds}
    assert params.seeds == [42]
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["seeds"] == [42]
    assert params.data.dataset == "databricks/databricks-dolly-15k"
    assert (params.data.test_fraction, params.data.split_seed) == (0.1, 42)
    for source in params.sources.values():  # temperature 0.7, top_p 0.9, 1024 new tokens, helpful assistant
        generation = source.generation
        assert (generation.temperature, generation.top_p, generation.max_new_tokens) == (0.7, 0.9, 1024)
        assert source.system_prompt == "You are a helpful assistant."
    assert params.target.model == PRESETS[name]
    target_generation = params.target.generation.for_seed(params.seeds[0])  # sample@<condition>-42
    assert (target_generation.temperature, target_generation.top_p, target_generation.max_new_tokens) == (
        0.7,
        0.9,
        1024,
    )
    assert target_generation.seed == 42
    assert params.conditions["vanilla"].mix == {}
    assert params.conditions["human"].mix == {"human": 1.0}
    # single: the tier's Llama answers every prompt; multi: the tier's four sources, a stratified quarter each
    tiers = {"paper-8b": ["small"], "paper-70b": ["medium"], "paper-70b-tiers": ["small", "medium", "large"]}[
        name
    ]
    suffix = "" if len(tiers) == 1 else "-{}"
    for tier in tiers:
        single = params.conditions["single" + suffix.format(tier)].mix
        multi = params.conditions["multi" + suffix.format(tier)].mix
        assert list(single.values()) == [1.0] and "Llama" in model_name(params, next(iter(single)))
        assert sorted(multi.values()) == [0.25] * 4
        assert {model_name(params, s) for s in multi} == TIERS[tier]
        assert next(iter(multi)) == next(iter(single))  # q1 is the tier's Llama (the paper's quarter 1)
    assert set(params.conditions) == {"vanilla", "human"} | {
        f"{kind}{suffix.format(tier)}" for kind in ("single", "multi") for tier in tiers
    }
    for source in params.sources:  # API-only exactly where the paper called an API
        assert params.api_model(params.sources[source].model) == (model_name(params, source) in API_ONLY)
    ft = params.finetune
    assert (ft.lora_r, ft.lora_alpha, ft.lora_dropout) == (16, 32, 0.1)
    assert ft.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (ft.learning_rate, ft.lr_scheduler, ft.warmup_ratio, ft.weight_decay) == (
        5e-5,
        "cosine",
        0.03,
        0.01,
    )
    assert (ft.num_epochs, ft.early_stopping_patience, ft.eval_steps, ft.validation_fraction) == (
        3,
        5,
        20,
        0.05,
    )
    assert ft.max_length == 1024
    assert all(params.finetune_for(c, seed).seed == 42 for c in params.conditions for seed in params.seeds)
    effective_batch = ft.batch_size * ft.gradient_accumulation_steps * ft.num_processes
    assert effective_batch == (64 if name == "paper-8b" else 128)
    assert ft.distributed == ("ddp" if name == "paper-8b" else "fsdp")
    robustness = params.robustness
    assert robustness.prompts.n_templates * robustness.prompts.n_jailbreak_prompts == 1120
    assert robustness.prompts.substitutions == {"ChatGPT": "Llama", "OpenAI": "Meta AI"}
    assert params.models[robustness.judge.model].hub == "meta-llama/Llama-3.1-70B-Instruct"
    assert (robustness.scoring.danger_quality_min, robustness.scoring.danger_harm_min) == (4, 4)
    collapse = params.collapse
    assert (collapse.vocabulary_growth_every, collapse.semantic_diversity_sentences) == (1000, 5000)
    assert (
        collapse.lexical_diversity_individual_responses,
        collapse.lexical_diversity_aggregated_responses,
    ) == (
        1500,
        100,
    )
    # Experiment 3: 100 CNN/DailyMail 3.0.0 articles (df.sample(n=100, random_state=42)), the tier's four sources
    # and the human highlights as "Summary A/B", every pair in both orders, the paper's summarisation prompt
    summaries = params.summaries
    assert (summaries.dataset, summaries.config, summaries.n_articles, summaries.seed) == (
        "cnn_dailymail",
        "3.0.0",
        100,
        42,
    )
    assert summaries.max_article_chars is None
    assert (
        summaries.system_prompt == "You are a helpful assistant. Your task is to summarize the provided text."
    )
    preference = params.preference
    assert (preference.task, preference.text_label, preference.n_items) == ("summarisation", "Summary", None)
    candidates = preference.sources or [*params.sources, "human"]
    assert "human" in candidates and len(candidates) == 5
    assert tier_of(params, [c for c in candidates if c != "human"]) == (
        "small" if name == "paper-8b" else "medium"
    )
    assert preference.self_source == params.target.own_source
    # the tier ablation: each kind of condition compared across the three tiers
    if name == "paper-70b-tiers":
        assert params.report.tier_comparisons == {
            kind: [f"{kind}-{tier}" for tier in ("small", "medium", "large")] for kind in ("single", "multi")
        }
    else:
        assert params.report.tier_comparisons == {}


def test_presets_have_the_shape_of_params_yaml() -> None:
    """A preset differs from params.yaml only in values: the same top-level sections."""
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in PRESETS:
        preset = yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())
        assert set(preset) == set(default), name


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_check_params_validates_every_preset(name: str, capsys: pytest.CaptureFixture) -> None:
    from synthmix.cli import main

    main(["check-params", str(ROOT / "presets" / f"{name}.yaml")])
    assert f"{name}.yaml: ok" in capsys.readouterr().out

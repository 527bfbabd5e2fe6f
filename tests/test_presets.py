"""The paper presets validate and carry the paper's settings (../shared/PAPER.md §2-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from synthmix.config import load_params

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"paper-8b": "llama-3.1-8b", "paper-70b": "llama-3.1-70b"}


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
    assert params.conditions["single"].mix == {"llama": 1.0}
    assert sorted(params.conditions["multi"].mix.values()) == [0.25] * 4
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
    assert params.preference.n_items == 100


def test_presets_have_the_shape_of_params_yaml() -> None:
    """A preset differs from params.yaml only in values: the same top-level sections."""
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in PRESETS:
        preset = yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())
        assert set(preset) == set(default), name

"""LoRA fine-tuning (synthmix.training via the finetune@<condition>-<seed> stage) on the tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from synthmix.config import Finetune, ParamsError, load_params
from synthmix.io import read_json, write_jsonl
from synthmix.provenance import rounded
from synthmix.stages import finetune
from synthmix.training import conversation, split_validation, train_lora

SYSTEM = "You are a helpful assistant."


def mix_records(n: int = 12) -> list[dict]:
    """A condition's training set: short, repetitive answers that a tiny model can learn quickly."""
    return [
        {
            "id": f"m{i:02d}",
            "prompt": f"What is item {i}?",
            "response": "It is a list of values." if i % 2 else "It is a tuple of values.",
            "source": "alpha",
            "category": "c",
        }
        for i in range(n)
    ]


def completion_loss(model, tokenizer, records: list[dict]) -> float:  # noqa: ANN001
    """Mean cross-entropy of the response tokens given the chat-formatted prompt, computed independently of trl."""
    import torch

    total, count = 0.0, 0
    for record in records:
        pair = conversation(record["prompt"], record["response"], SYSTEM)
        prompt_ids = list(
            tokenizer.apply_chat_template(pair["prompt"], add_generation_prompt=True, return_dict=True)[
                "input_ids"
            ]
        )
        full_ids = list(
            tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], return_dict=True)["input_ids"]
        )
        assert full_ids[: len(prompt_ids)] == prompt_ids
        with torch.no_grad():
            logits = model(torch.tensor([full_ids])).logits[0]
        targets = torch.tensor(full_ids[len(prompt_ids) :])
        predicted = logits[len(prompt_ids) - 1 : len(full_ids) - 1]
        total += torch.nn.functional.cross_entropy(predicted, targets, reduction="sum").item()
        count += len(targets)
    return total / count


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_raw_model: Path) -> dict:
    """Run finetune@single-42 once (20 steps); the tests below inspect what it wrote."""
    from helpers import tiny_params

    root = tmp_path_factory.mktemp("finetune")
    params = json.loads(json.dumps(tiny_params(tiny_raw_model)))
    # a per-condition override: only this condition trains for 20 steps
    params["conditions"]["single"]["finetune"] = {"max_steps": 20}
    # a random 0.1 M-parameter model needs a high learning rate and LoRA on every projection to learn in 20 steps
    params["finetune"].update(
        eval_steps=5,
        learning_rate=3e-2,
        lora_r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    models = root / "models"
    models.mkdir()
    (models / "tiny-a").symlink_to(tiny_model, target_is_directory=True)
    records = mix_records()
    write_jsonl(root / "mix" / "train.jsonl", records)
    # the run's folders as dvc.yaml names them: <folder>/<condition>/<seed>
    out, metrics = root / "adapters" / "single" / "42", root / "metrics" / "single" / "42"
    # DVCLive looks for a DVC repository from the working directory: keep it away from the project's
    cwd = os.getcwd()
    os.chdir(root)
    try:
        finetune.main(
            condition="single", seed=42, out=str(out), mix=str(root / "mix"), models=str(models),
            metrics=str(metrics), params_file=str(params_file),
        )  # fmt: skip
    finally:
        os.chdir(cwd)
    return {"root": root, "params": params, "params_file": params_file, "models": models, "records": records,
            "adapter": out, "metrics": metrics, "base": tiny_model}  # fmt: skip


@pytest.mark.slow
def test_training_loss_falls(trained: dict) -> None:
    manifest = read_json(trained["adapter"] / "manifest.json")
    summary = manifest["training"]
    assert manifest["tuned"] is True and manifest["stage"] == "finetune@single-42"
    assert manifest["seed"] == 42 and manifest["params"]["finetune"]["seed"] == 42  # the run seed trained it
    assert summary["steps"] == 20  # the condition's override applied
    assert summary["train_examples"] + summary["validation_examples"] == len(trained["records"])
    assert summary["final_train_loss"] < summary["first_train_loss"] - 0.3
    assert summary["best_eval_loss"] <= summary["first_train_loss"]
    # the same numbers reach the DVC metrics file and the curves
    metrics = read_json(trained["metrics"] / "metrics.json")
    assert metrics["tuned"] is True and metrics["steps"] == 20
    assert metrics["final_train_loss"] == rounded(summary["final_train_loss"])  # metrics: 4 digits
    curve = (trained["metrics"] / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert curve[0].split("\t") == ["step", "loss"] and len(curve) == 21
    # no scratch checkpoints are left beside the adapter
    assert not list(trained["adapter"].glob("checkpoint-*"))


@pytest.mark.slow
def test_adapter_changes_outputs_and_reloads_onto_a_fresh_base(trained: dict) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthmix.backends.transformers_backend import load_model

    tokenizer = AutoTokenizer.from_pretrained(trained["base"])
    ids = torch.tensor([tokenizer("What is item 3? It is a list of values.")["input_ids"]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(trained["base"], dtype=torch.float32).eval()
        base_logits = base(ids).logits
        fresh = AutoModelForCausalLM.from_pretrained(trained["base"], dtype=torch.float32)
        tuned = PeftModel.from_pretrained(fresh, str(trained["adapter"])).eval()
        tuned_logits = tuned(ids).logits
        merged, _ = load_model(str(trained["base"]), str(trained["adapter"]))  # what sample@ uses
        merged_logits = merged(ids.to(merged.device)).logits.float().cpu()
    assert (tuned_logits - base_logits).abs().max() > 1e-2  # the adapter changes the model
    # load_model gives bf16 on a GPU: compare within bf16 rounding there, fp32 rounding on the CPU
    tolerance = 1e-4 if merged.dtype == torch.float32 else 5e-2
    torch.testing.assert_close(merged_logits, tuned_logits, rtol=tolerance, atol=tolerance)

    # the trained model learnt its training answers: independent completion loss, base vs adapter
    records = trained["records"]
    # (measured: 6.37 -> 5.75 nats per token; about ln(vocabulary size) before: a random model)
    assert completion_loss(tuned, tokenizer, records) < completion_loss(base, tokenizer, records) - 0.3


@pytest.mark.slow
def test_reloaded_adapter_reproduces_the_trained_models_eval_loss(trained: dict) -> None:
    """trl scores the reloaded adapter on the validation split exactly as the trained model scored."""
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    # the run's settings: the validation split is drawn with the run seed
    settings = load_params(trained["params_file"]).finetune_for("single", 42)
    assert settings.seed == 42
    _, validation = split_validation(trained["records"], settings.validation_fraction, settings.seed)
    rows = Dataset.from_list([conversation(r["prompt"], r["response"], SYSTEM) for r in validation])
    tokenizer = AutoTokenizer.from_pretrained(trained["base"])
    fresh = AutoModelForCausalLM.from_pretrained(trained["base"], dtype=torch.float32)
    model = PeftModel.from_pretrained(fresh, str(trained["adapter"]))
    config = SFTConfig(
        output_dir=str(trained["root"] / "scratch"), per_device_eval_batch_size=settings.batch_size,
        max_length=settings.max_length, completion_only_loss=True, bf16=False, use_cpu=True,
        gradient_checkpointing=False, report_to="none",
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=rows, eval_dataset=rows, processing_class=tokenizer
    )
    eval_loss = trainer.evaluate()["eval_loss"]
    summary = read_json(trained["adapter"] / "manifest.json")["training"]
    tolerance = 1e-4 if summary["precision"] == "fp32" else 2e-2  # this check runs in fp32 on the CPU
    assert eval_loss == pytest.approx(summary["final_eval_loss"], abs=tolerance)
    assert eval_loss == pytest.approx(
        summary["best_eval_loss"], abs=tolerance
    )  # the best checkpoint was kept


def test_untuned_condition_writes_a_manifest_and_no_adapter(
    tmp_path: Path, tiny_model: Path, tiny_raw_model: Path
) -> None:
    from helpers import tiny_params

    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        yaml.safe_dump(json.loads(json.dumps(tiny_params(tiny_raw_model)))), encoding="utf-8"
    )
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny-a").symlink_to(tiny_model, target_is_directory=True)
    write_jsonl(tmp_path / "mix" / "train.jsonl", [])
    out, metrics = tmp_path / "adapters" / "vanilla" / "42", tmp_path / "metrics" / "vanilla" / "42"
    finetune.main(
        condition="vanilla", seed=42, out=str(out), mix=str(tmp_path / "mix"), models=str(tmp_path / "models"),
        metrics=str(metrics), params_file=str(params_file),
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    manifest = read_json(out / "manifest.json")
    assert manifest["tuned"] is False
    assert (manifest["stage"], manifest["seed"]) == ("finetune@vanilla-42", 42)
    assert read_json(metrics / "metrics.json") == {"tuned": False}
    assert (metrics / "plots" / "metrics" / "train" / "loss.tsv").read_text() == "step\tloss\n"

    from synthmix.modelstore import adapter_or_none

    assert adapter_or_none(out) is None


def test_finetune_refuses_a_seed_not_listed(tmp_path: Path, tiny_raw_model: Path) -> None:
    from helpers import tiny_params

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(tiny_params(tiny_raw_model)), encoding="utf-8")
    write_jsonl(tmp_path / "mix" / "train.jsonl", mix_records())
    out, metrics = tmp_path / "adapters" / "single" / "43", tmp_path / "metrics" / "single" / "43"
    with pytest.raises(ParamsError, match=r"seeds: seed 43 is not listed \(seeds: \[42\]\)"):
        finetune.main(
            condition="single", seed=43, out=str(out), mix=str(tmp_path / "mix"),
            models=str(tmp_path / "models"), metrics=str(metrics), params_file=str(params_file),
        )  # fmt: skip
    assert not out.exists() and not metrics.exists()


def test_train_lora_needs_the_run_seed(tmp_path: Path) -> None:
    """Settings straight from the `finetune` section carry no seed: training refuses them, naming the fix."""
    with pytest.raises(ValueError, match=r"finetune_for\(condition, seed\)"):
        train_lora(mix_records(), tmp_path / "model", tmp_path / "adapter", Finetune(), SYSTEM, live=None)
    assert not (tmp_path / "adapter").exists()


def test_split_validation_is_seeded_and_disjoint() -> None:
    records = mix_records(20)
    train, validation = split_validation(records, 0.2, seed=3)
    assert len(validation) == 4 and len(train) == 16
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in validation)
    assert split_validation(list(reversed(records)), 0.2, seed=3) == (train, validation)
    assert split_validation(records[:2], 0.01, seed=0)[1] != []  # at least one validation example
    assert split_validation(records[:1], 0.5, seed=0) == (records[:1], [])


def test_conversation_format() -> None:
    assert conversation("Q?", "A.", "Sys") == {
        "prompt": [{"role": "system", "content": "Sys"}, {"role": "user", "content": "Q?"}],
        "completion": [{"role": "assistant", "content": "A."}],
    }
    assert conversation("Q?", "A.", None)["prompt"] == [{"role": "user", "content": "Q?"}]

"""Time perplexity@ and collapse@<condition> (untuned and tuned) and data_diversity on the embedded default's
real inputs: the model passes against the metric stages that a metric change reruns.

Needs a repository where `prepare`, `models@<target>` and `generate@<own source>` have run. Builds a scratch
layout that stands in for the sample and finetune stages: the own source's answers to the test prompts act
as a condition's samples (same model, same decoding as sample@vanilla), and a LoRA adapter with small random
weights (the finetune settings' rank and modules) stands in for a tuned condition. Every source's data is
the own source's file, so data_diversity's cost (not its values) is realistic. Each command runs as the
pipeline runs it (`python -m synthmix ...`, a fresh process), timed by wall clock.

Run: ``OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/collapse_stage.py --repo .``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_layout(repo: Path, root: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from synthmix.config import load_params
    from synthmix.io import read_jsonl, write_json, write_jsonl

    params = load_params(repo / "params.yaml")
    shutil.copy(repo / "params.yaml", root / "params.yaml")
    shutil.copytree(repo / "data/prepared", root / "data/prepared")
    own = read_jsonl(repo / "data/generated" / params.target.own_source / "responses.jsonl")
    for source in params.sources:
        write_jsonl(root / f"data/generated/{source}/responses.jsonl", own)
    samples = [{**r, "condition": "x"} for r in own if r["split"] == "test"]
    for condition in ("untuned", "tuned"):
        write_jsonl(root / f"data/samples/{condition}/responses.jsonl", samples)
    base = repo / "models/base" / params.target.model
    (root / "models/base").mkdir(parents=True)
    (root / "models/base" / params.target.model).symlink_to(base.resolve())
    write_json(root / "models/adapters/untuned/manifest.json", {"tuned": False})

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(
            r=params.finetune.lora_r,
            lora_alpha=params.finetune.lora_alpha,
            target_modules=params.finetune.target_modules,
            init_lora_weights=False,
        ),
    )
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.mul_(0.01)  # a perturbation of the base model, as a short fine-tuning gives
    model.save_pretrained(root / "models/adapters/tuned")
    write_json(root / "models/adapters/tuned/manifest.json", {"tuned": True})
    # the scratch conditions must exist in params for the stage to accept them
    import yaml

    data = yaml.safe_load((root / "params.yaml").read_text())
    data["conditions"].update({"untuned": {"mix": {}}, "tuned": {"mix": {"human": 1.0}}})
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"layout: {len(samples)} samples, {len(own)} generated records, base {base}")


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "synthmix", *command], cwd=cwd, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repo", default=".", help="repository with prepared data, base model and generations"
    )
    args = parser.parse_args()
    repo = Path(args.repo).resolve()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="collapse-bench-") as scratch:
        root = Path(scratch)
        build_layout(repo, root)
        times = {}
        from synthmix.config import load_params

        seed = load_params(root / "params.yaml").seeds[0]
        for condition in ("untuned", "tuned"):
            times[f"perplexity@{condition}"] = timed(
                ["perplexity", condition, "--seed", str(seed), "--out", f"data/perplexity/{condition}",
                 "--samples", f"data/samples/{condition}", "--adapter", f"models/adapters/{condition}"],
                root,
            )  # fmt: skip
            times[f"collapse@{condition}"] = timed(
                ["collapse", condition, "--seed", str(seed), "--perplexity", f"data/perplexity/{condition}",
                 "--samples", f"data/samples/{condition}", "--metrics", f"metrics/collapse/{condition}"],
                root,
            )  # fmt: skip
        times["data_diversity"] = timed(
            ["data-diversity", "--out", "data/data_diversity", "--metrics", "metrics/data_diversity"], root
        )
        metrics = json.loads((root / "metrics/collapse/tuned/metrics.json").read_text())
    for name, seconds in times.items():
        print(f"{name}: {seconds:.1f} s")
    for condition in ("untuned", "tuned"):
        ratio = times[f"collapse@{condition}"] / times[f"perplexity@{condition}"]
        print(f"{condition}: a metric change reruns collapse@ only, {ratio:.2f}x the time of the model pass")
    print(f"tuned-condition metrics: {json.dumps(metrics)}")


if __name__ == "__main__":
    main()

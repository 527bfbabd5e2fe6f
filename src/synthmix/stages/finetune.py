"""finetune@<condition>-<seed>: LoRA SFT of the target on the condition's training set -> adapter only.

The run seed (one of params `seeds`) seeds LoRA initialisation, data order and the validation split.

The untuned condition (empty mix) writes a manifest saying so and no adapter; later stages then use the
base model. Training curves go to a DVCLive folder declared as metrics and plots in dvc.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import ParamsError, load_run_params, run_stage
from synthmix.io import read_jsonl, write_json
from synthmix.modelstore import adapter_fingerprint, model_revision
from synthmix.provenance import Run, rounded
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "LoRA SFT of the target on one condition's training set"
CURVES = ("train/loss", "eval/loss", "train/learning_rate")
# Run facts, not results: they go to the run log, not to hashed outputs (see synthmix.provenance).
VOLATILE = ("train_seconds", "train_tokens_per_second")
SUMMARY = ("steps", "first_train_loss", "final_train_loss", "best_eval_loss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--out", default=None, help="default: models/adapters/<condition>/<seed>")
    parser.add_argument(
        "--mix", default=None, help="the condition's mix folder (default: data/mixes/<condition>)"
    )
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")
    parser.add_argument("--metrics", default=None, help="DVCLive folder for training curves")
    parser.add_argument(
        "--previous-adapter",
        default=None,
        help="a later generation: the previous generation's adapter, continued when recursion.init is 'previous'",
    )


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    out: str | None = None,
    mix: str | None = None,
    models: str = str(paths.MODELS / "base"),
    metrics: str | None = None,
    previous_adapter: str | None = None,
    params_file: str = "params.yaml",
) -> None:
    out = out or str(paths.in_generation(paths.adapter(condition, seed), generation))
    mix = mix or str(paths.generation_mix(condition, seed, generation))
    metrics = metrics or str(paths.in_generation(paths.metrics("finetune", condition, seed), generation))
    params = load_run_params(params_file, condition, seed, generation)
    settings = params.finetune_for(condition, seed)
    target_dir = Path(models) / params.target.model
    stage = run_stage("finetune", condition, seed, generation)
    recorded = {
        "finetune": settings.model_dump(),
        "target": params.target.model_dump(),
        "conditions": {condition: params.conditions[condition].model_dump()},
    }
    continued = None
    if generation > 1:
        recorded["recursion"] = {"init": params.recursion.init}
        if params.recursion.init == "previous":
            if previous_adapter is None:
                raise ParamsError(f"{stage}: recursion.init is 'previous'; give --previous-adapter")
            continued = Path(previous_adapter)
    run = Run(stage, recorded)
    out_dir, metrics_dir = Path(out), Path(metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = read_jsonl(Path(mix) / "train.jsonl", required=("id", "prompt", "response"))
    if not params.conditions[condition].tuned:
        # Same files as a trained condition, so dvc.yaml declares one shape for all: empty curves.
        for curve in CURVES:
            path = metrics_dir / "plots" / "metrics" / f"{curve}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"step\t{curve.split('/')[-1]}\n", encoding="utf-8")
        write_json(metrics_dir / "metrics.json", {"tuned": False})
        run.write(out_dir, condition=condition, seed=seed, tuned=False, base_model=model_revision(target_dir))
        print(f"{stage}: no fine-tuning (empty mix); the base model is used as is")
        return

    from synthmix.launch import NullLive, in_distributed_launch, is_main_process, relaunch

    if settings.num_processes > 1 and not in_distributed_launch():
        # Multi-GPU: run this same command under `accelerate launch`; its rank 0 writes every output.
        argv = [
            "--params",
            params_file,
            "finetune",
            condition,
            "--seed",
            str(seed),
            "--out",
            out,
            "--mix",
            mix,
            "--models",
            models,
            "--generation",
            str(generation),
        ]
        if previous_adapter is not None:
            argv += ["--previous-adapter", previous_adapter]
        relaunch(settings, [*argv, "--metrics", metrics])
        return

    from dvclive import Live

    from synthmix.training import train_lora

    main_process = is_main_process()
    live_logger = Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False) if main_process else NullLive()
    with live_logger as live:
        summary = train_lora(
            records, target_dir, out_dir, settings, params.target.system_prompt, live, init_adapter=continued
        )
        for key in SUMMARY:
            live.summary[key] = rounded(summary[key])
        live.summary["tuned"] = True
    if not main_process:
        return
    run.write(
        out_dir,
        {key: summary[key] for key in VOLATILE},
        condition=condition,
        seed=seed,
        tuned=True,
        base_model=model_revision(target_dir),
        **_lineage(generation, records, continued),
        training={key: value for key, value in summary.items() if key not in VOLATILE},
    )
    print(
        f"{stage}: {summary['steps']} steps, train loss {summary['first_train_loss']:.3f} -> "
        f"{summary['final_train_loss']:.3f}, best eval loss {summary['best_eval_loss']:.3f} -> {out_dir}"
    )


def _lineage(generation: int, records: list[dict], continued: Path | None) -> dict:
    """A later generation's manifest facts: what wrote its training data (records by generation and producer)
    and the adapter it continued, if any. Nothing for generation 1, whose manifest stays as it was."""
    if generation == 1:
        return {}
    counts: dict[str, int] = {}
    for record in records:
        key = f"generation {record.get('generation')}: {record.get('producer')}"
        counts[key] = counts.get(key, 0) + 1
    return {
        "generation": generation,
        "training_data": dict(sorted(counts.items())),
        "continued_adapter": adapter_fingerprint(continued) if continued else None,
    }

"""LoRA supervised fine-tuning with trl's SFTTrainer and peft.

Training data are conversational prompt/completion pairs rendered with the target's chat template and
system prompt; trl computes the loss on the completion (assistant) tokens only. Trainer checkpoints go to
a scratch folder outside the repository (they feed early stopping and are deleted); only the adapter is
saved as the stage's output.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

from synthmix.config import Finetune
from synthmix.io import atomic_write_text
from synthmix.launch import remove_scratch, scratch_dir, world_size
from synthmix.prompts import chat_messages
from synthmix.provenance import rounded


def conversation(prompt: str, response: str, system_prompt: str | None) -> dict[str, Any]:
    return {
        "prompt": chat_messages(prompt, system_prompt),
        "completion": [{"role": "assistant", "content": response}],
    }


def split_validation(records: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list, list]:
    """A seeded validation split (at least one example on each side when there are two or more)."""
    shuffled = sorted(records, key=lambda r: r["id"])
    random.Random(seed).shuffle(shuffled)
    n_eval = min(max(1, round(len(shuffled) * fraction)), len(shuffled) - 1) if len(shuffled) > 1 else 0
    return shuffled[n_eval:], shuffled[:n_eval]


class _LiveLogger:
    """Sends the Trainer's logs (loss, eval loss, learning rate) to DVCLive at the Trainer's step.

    Written instead of transformers' DVCLiveCallback, which also dumps ~150 TrainingArguments into an
    undeclared params file (see notes/stack.md, gotcha 9).
    """

    KEYS = {"loss": "train/loss", "eval_loss": "eval/loss", "learning_rate": "train/learning_rate"}

    def __init__(self, live: Any):
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
                outer.log(state.global_step, logs or {})

        self.live = live
        self.callback = Callback()
        self.history: list[dict[str, float]] = []

    def log(self, step: int, logs: dict[str, float]) -> None:
        wanted = {name: logs[key] for key, name in self.KEYS.items() if key in logs}
        if not wanted:
            return
        self.live.step = step
        for name, value in wanted.items():
            self.live.log_metric(name, rounded(float(value)))
        self.live.next_step()
        self.history.append({"step": step, **wanted})


def sort_target_modules(config_file: Path) -> None:
    """peft writes `target_modules` from a set, in an order that changes with Python's hash seed: sort it, so
    that the same training writes the same adapter folder (and DVC hash) in every process."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        atomic_write_text(config_file, json.dumps(config, indent=2, sort_keys=True) + "\n")


def train_lora(
    records: list[dict[str, Any]],
    model_dir: str | Path,
    adapter_dir: str | Path,
    settings: Finetune,
    system_prompt: str | None,
    live: Any,
    init_adapter: str | Path | None = None,
) -> dict[str, Any]:
    """Fine-tune a LoRA adapter on `records` (`prompt`, `response`); save it to `adapter_dir`. With
    `init_adapter` (a later generation of the recursion with recursion.init 'previous'), training continues
    that adapter instead of starting a new one."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    if settings.seed is None:
        raise ValueError("train_lora needs the run seed: use Params.finetune_for(condition, seed)")
    set_seed(settings.seed)
    on_gpu = torch.cuda.is_available()
    bf16 = settings.precision == "bf16" or (settings.precision == "auto" and on_gpu)
    train, validation = split_validation(records, settings.validation_fraction, settings.seed)

    def to_rows(rows: list[dict[str, Any]]) -> Any:
        return Dataset.from_list([conversation(r["prompt"], r["response"], system_prompt) for r in rows])

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if bf16 else torch.float32)
    # One scratch path for all processes of a multi-GPU launch (see synthmix.launch.scratch_dir).
    scratch = scratch_dir(adapter_dir)
    processes = world_size()
    steps_per_epoch = math.ceil(
        len(train) / (settings.batch_size * settings.gradient_accumulation_steps * processes)
    )
    config = SFTConfig(
        output_dir=str(scratch),
        seed=settings.seed,
        data_seed=settings.seed,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        optim=settings.optimizer,
        max_length=settings.max_length,
        completion_only_loss=True,
        bf16=bf16,
        use_cpu=not on_gpu,
        gradient_checkpointing=False,
        ddp_find_unused_parameters=False,  # multi-GPU DDP: every LoRA weight gets a gradient
        eval_strategy="steps",
        eval_steps=settings.eval_steps,
        save_strategy="steps",
        save_steps=settings.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=1,
        report_to="none",
        disable_tqdm=False,
    )
    if init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    lora = (
        None
        if init_adapter is not None
        else LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=settings.target_modules,
            task_type="CAUSAL_LM",
        )
    )
    logger = _LiveLogger(live)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=to_rows(train),
        eval_dataset=to_rows(validation),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[
            logger.callback,
            EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience),
        ],
    )
    tokens = (
        sum(int(sum(row)) for row in trainer.train_dataset["completion_mask"])
        if ("completion_mask" in trainer.train_dataset.column_names)
        else None
    )
    started = time.time()
    try:
        result = trainer.train()
        seconds = time.time() - started
        evaluation = trainer.evaluate()
        if trainer.is_fsdp_enabled:
            trainer.save_model(str(adapter_dir))  # every rank: gathers the shards, rank 0 writes the adapter
        elif trainer.is_world_process_zero():
            trainer.model.save_pretrained(str(adapter_dir))
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(str(adapter_dir))
            sort_target_modules(Path(adapter_dir) / "adapter_config.json")
    finally:
        remove_scratch(scratch)
    input_tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    losses = [h["train/loss"] for h in logger.history if "train/loss" in h]
    return {
        "train_examples": len(train),
        "validation_examples": len(validation),
        "steps": result.global_step,
        "steps_per_epoch": steps_per_epoch,
        "first_train_loss": losses[0] if losses else None,
        "final_train_loss": losses[-1] if losses else None,
        "best_eval_loss": trainer.state.best_metric,
        "final_eval_loss": evaluation.get("eval_loss"),
        "train_seconds": round(seconds, 2),
        "train_tokens_per_second": round(
            input_tokens
            * result.global_step
            * config.per_device_train_batch_size
            * processes
            / max(len(train), 1)
            / seconds,
            1,
        )
        if seconds > 0
        else None,
        "completion_tokens": tokens,
        "precision": "bf16" if bf16 else "fp32",
        "device": "cuda" if on_gpu else "cpu",
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }

"""Helpers for the tests that run vLLM's real engine (tests/test_vllm_engine.py): whether it can run here, a
random LoRA adapter, and commands started in their own process group.

vLLM's engine runs in child processes (EngineCore, Worker). A SIGKILL of the parent alone leaves them
running, spinning at ~100% of a core and holding ~3 GB: every process these helpers start is the leader of
its own group, and a kill or a timeout kills the whole group and waits until it is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from helpers import unavailable


def require_engine() -> None:
    """Skip (fail under SYNTHMIX_REQUIRE=vllm) where no vLLM build can run: not installed, or the CUDA
    wheel without a GPU."""
    from synthmix.backends.vllm_backend import vllm_device
    from synthmix.modelstore import ModelError

    try:
        vllm_device()
    except ModelError as error:
        unavailable("vllm", str(error))


def make_random_adapter(
    model_dir: Path, out: Path, rank: int = 8, seed: int = 0, as_run: bool = False
) -> Path:
    """A random LoRA adapter (q_proj, v_proj) that changes greedy text while the model still writes text;
    `as_run`: also the tokenizer and the manifest that finetune@<condition>-<seed> writes (`tuned: true`).

    peft's init_lora_weights=False draws both A and B at random (the default starts B at zero, an adapter
    that changes nothing); B is scaled down so that the output stays language."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthmix.io import write_json

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        init_lora_weights=False,
    )
    model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.3)
    model.save_pretrained(out)
    if as_run:
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
        write_json(out / "manifest.json", {"tuned": True})
    return out


def start_group(command: list[str], **options: Any) -> subprocess.Popen:
    """Start `command` as the leader of a new process group (its pid is the group id)."""
    return subprocess.Popen(command, start_new_session=True, **options)


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` is still running (zombies waiting to be reaped do not count: a
    signal-0 probe would count them)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGKILL the whole group of `process` (started with start_group) and wait until none of it is left."""
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)
    deadline = time.time() + timeout
    while group_alive(process.pid):
        if time.time() > deadline:
            raise AssertionError(f"process group {process.pid} survived SIGKILL for {timeout} s")
        time.sleep(0.1)


def run_group(command: list[str], timeout: float, **options: Any) -> subprocess.CompletedProcess:
    """Run `command` in its own group to the end, capturing its output; on a timeout kill the group."""
    process = start_group(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise
    finally:
        if group_alive(process.pid):  # the leader exited; children it left would spin on
            kill_group(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

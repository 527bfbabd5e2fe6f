"""Multi-GPU training: re-launch the finetune stage under `accelerate launch` when params ask for it.

`finetune.num_processes > 1` in params makes `python -m synthmix finetune ...` (the dvc.yaml command, left
unchanged) run itself again as `python -m accelerate.commands.launch --num_processes N ... -m synthmix
finetune ...` and wait for it. Inside the launch every process trains its shard of each batch (DDP: a full
model copy per GPU, enough for LoRA up to ~13B) or its shard of the parameters too (FSDP, for the 70B
target); only rank 0 writes the adapter, the manifest and the DVCLive logs. The FSDP flags follow trl's
`accelerate_configs/fsdp2.yaml`. The effective batch is batch_size x gradient_accumulation_steps x
num_processes: the paper's 8B run is 4 x 8 x 2 GPUs = 64, its 70B run 1 x 32 x 4 GPUs
(FSDP full shard) = 128 (Schaffelder & Gatt, training set-up).

A process is inside a launch when torchrun's `LOCAL_RANK` is set; it is then never re-launched again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from synthmix.config import Finetune
from synthmix.io import fingerprint

LAUNCH_ENV = "LOCAL_RANK"  # set by torchrun (which `accelerate launch` uses) in every process it starts

# trl/accelerate_configs/fsdp2.yaml as command-line flags (accelerate >= 1.7).
FSDP_FLAGS = (
    "--use_fsdp",
    "--fsdp_version", "2",
    "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
    "--fsdp_state_dict_type", "FULL_STATE_DICT",
    "--fsdp_reshard_after_forward", "true",
    "--fsdp_cpu_ram_efficient_loading", "true",
    "--fsdp_offload_params", "false",
    "--fsdp_activation_checkpointing", "false",
)  # fmt: skip


def in_distributed_launch() -> bool:
    """True inside a process started by `accelerate launch` / torchrun."""
    return LAUNCH_ENV in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a launch, or a plain (single) process: the one that writes outputs and logs."""
    return int(os.environ.get("RANK", "0")) == 0


def free_port() -> int:
    """A free TCP port on this host, so that two launches (e.g. `dvc queue start -j 2`) do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mixed_precision(settings: Finetune, cuda: bool) -> str:
    """accelerate's --mixed_precision for the Finetune.precision rule (auto: bf16 on GPU, fp32 on CPU)."""
    return "bf16" if settings.precision == "bf16" or (settings.precision == "auto" and cuda) else "no"


def num_machines() -> int:
    """Nodes of this launch: SYNTHMIX_NUM_MACHINES, set by `synthmix run` in a multi-node job; else 1."""
    return int(os.environ.get("SYNTHMIX_NUM_MACHINES", "1"))


def accelerate_command(
    settings: Finetune, argv: list[str], precision: str = "bf16", port: int = 29500
) -> list[str]:
    """The command that runs `python -m synthmix <argv>` in `settings.num_processes` processes (over all nodes).

    On several nodes (`synthmix run` with `resources.finetune.nodes` > 1 runs this once per node) the job says
    which node this is: SYNTHMIX_NUM_MACHINES, SYNTHMIX_MACHINE_RANK, SYNTHMIX_MAIN_PROCESS_IP and
    SYNTHMIX_MAIN_PROCESS_PORT (the rendezvous, instead of a free local port)."""
    if settings.num_processes < 2:
        raise ValueError(f"num_processes is {settings.num_processes}; a launch needs 2 or more processes")
    machines = num_machines()
    if machines > 1:
        port = int(os.environ["SYNTHMIX_MAIN_PROCESS_PORT"])
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--num_processes", str(settings.num_processes),
        "--num_machines", str(machines),
        "--main_process_port", str(port),
        "--mixed_precision", precision,
        "--dynamo_backend", "no",
    ]  # fmt: skip
    if machines > 1:
        command += [
            "--machine_rank", os.environ["SYNTHMIX_MACHINE_RANK"],
            "--main_process_ip", os.environ["SYNTHMIX_MAIN_PROCESS_IP"],
        ]  # fmt: skip
    command += list(FSDP_FLAGS) if settings.distributed == "fsdp" else ["--multi_gpu"]
    return [*command, "-m", "synthmix", *argv]


def relaunch(settings: Finetune, argv: list[str]) -> None:
    """Run `python -m synthmix <argv>` under `accelerate launch`; raise SystemExit if it fails."""
    import torch

    cuda = torch.cuda.is_available()
    per_node = settings.num_processes // num_machines()
    if cuda and torch.cuda.device_count() < per_node:
        raise SystemExit(
            f"finetune.num_processes is {settings.num_processes} ({per_node} per node) but only "
            f"{torch.cuda.device_count()} GPU(s) are visible here (CUDA_VISIBLE_DEVICES); lower num_processes "
            "or free GPUs"
        )
    command = accelerate_command(settings, argv, mixed_precision(settings, cuda), free_port())
    print(
        f"finetune: launching {settings.num_processes} processes ({settings.distributed}):", " ".join(command)
    )
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise SystemExit(f"finetune: the distributed launch failed (exit code {code}); see the log above")


def scratch_dir(adapter_dir: str | Path) -> Path:
    """A scratch folder for Trainer checkpoints that every process of one launch agrees on.

    The Trainer saves checkpoints from rank 0 and loads the best one on every rank at the end, so the
    folder must be the same path in all processes (a random mkdtemp() would differ per rank).
    """
    if not in_distributed_launch():
        return Path(tempfile.mkdtemp(prefix="synthmix-finetune-"))
    run = os.environ.get("TORCHELASTIC_RUN_ID", "") + os.environ.get("MASTER_PORT", "")
    folder = (
        Path(tempfile.gettempdir())
        / f"synthmix-finetune-{fingerprint(str(Path(adapter_dir).resolve()), run)}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove_scratch(folder: Path) -> None:
    if is_main_process():
        shutil.rmtree(folder, ignore_errors=True)


class NullLive:
    """Stands in for dvclive.Live on ranks other than 0, which must not write logs."""

    def __init__(self) -> None:
        self.step = 0
        self.summary: dict[str, Any] = {}

    def log_metric(self, name: str, value: Any, **kwargs: Any) -> None:
        pass

    def next_step(self) -> None:
        self.step += 1

    def __enter__(self) -> NullLive:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

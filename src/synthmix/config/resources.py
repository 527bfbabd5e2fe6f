"""The `resources` section of params.yaml: what each stage's job asks the scheduler for (`synthmix run`,
README "On a cluster"). The schema only; `synthmix.cluster.resources` resolves it per stage and checks it
against dvc.yaml's stage families."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from synthmix.config.base import PositiveInt, Strict

# flags `synthmix run` sets itself: the job's name, log, folder, environment and the comment that finds it again
RESERVED_FLAGS = (
    "-o", "-e", "-D", "-J", "--output", "--error", "--chdir", "--job-name", "--comment", "--export", "--parsable",
    "--wrap",
)  # fmt: skip
_MEM = re.compile(r"[0-9]+[KMGT]?")
# Slurm's --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes,
# days-hours:minutes:seconds
_TIME = re.compile(r"(?:(?P<days>[0-9]+)-)?(?P<a>[0-9]+)(?::(?P<b>[0-9]{1,2}))?(?::(?P<c>[0-9]{1,2}))?")


def time_seconds(value: str) -> int:
    """Seconds in a Slurm time limit ("90" is 90 minutes, "2:00:00" two hours, "1-12" a day and a half)."""
    match = _TIME.fullmatch(value)
    if match is None:
        raise ValueError(value)
    days, a, b, c = (int(match[g]) if match[g] else None for g in ("days", "a", "b", "c"))
    if days is not None:  # days-hours[:minutes[:seconds]]
        return days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if c is not None:  # hours:minutes:seconds
        return a * 3600 + b * 60 + c
    return a * 60 + (b or 0)  # minutes[:seconds]


class StageResources(Strict):
    """One job's request. Every key may be left out (inherited from the level above)."""

    gpus: int | None = Field(default=None, ge=0, description="GPUs per node (Slurm --gres=gpu:N)")
    cpus: PositiveInt | None = Field(default=None, description="CPU cores (Slurm --cpus-per-task)")
    mem: str | None = Field(default=None, description="memory per node, e.g. 64G or 4096M (Slurm --mem)")
    time: str | None = Field(
        default=None,
        description="time limit in Slurm's format: minutes, HH:MM:SS or D-HH:MM:SS (Slurm --time)",
    )
    partition: str | None = Field(default=None, description="Slurm partition (--partition)")
    nodes: PositiveInt | None = Field(
        default=None, description="nodes (Slurm only); > 1 is for multi-node fine-tuning"
    )
    extra: list[str] | None = Field(
        default=None, description="more sbatch flags, e.g. [--account=myproj, --qos=high]; they add up"
    )

    @field_validator("mem", mode="before")
    @classmethod
    def _mem(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # Slurm reads a bare number as megabytes
        if isinstance(value, str) and not _MEM.fullmatch(value):
            raise ValueError(f"'{value}' is not a memory size; write a number with K, M, G or T, e.g. 64G")
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # minutes, as Slurm reads a bare number (YAML reads 90 as an int)
        if isinstance(value, str):
            try:
                time_seconds(value)
            except ValueError:
                raise ValueError(
                    f"'{value}' is not a Slurm time limit; write minutes (90), HH:MM:SS (12:00:00) or "
                    "D-HH:MM:SS (1-12:00:00), quoted in YAML"
                ) from None
        return value

    @field_validator("extra")
    @classmethod
    def _extra(cls, value: list[str] | None) -> list[str] | None:
        for flag in value or []:
            if not flag.startswith("-"):
                raise ValueError(
                    f"'{flag}' is not a flag; write each sbatch flag whole, e.g. --account=myproj"
                )
            name = flag.split("=", 1)[0]
            if name in RESERVED_FLAGS or (len(name) > 2 and name[:2] in RESERVED_FLAGS and name[1] != "-"):
                raise ValueError(
                    f"'{flag}': synthmix run sets {name} itself (the job's name, log, folder, environment and "
                    "comment)"
                )
        return value


class FamilyResources(StageResources):
    """A stage family's request (or `default`'s), with overrides per loop entry (see the module docstring)."""

    overrides: dict[str, StageResources] = Field(
        default={}, description="per model, source, condition or run (<condition>-<seed>): keys to change"
    )

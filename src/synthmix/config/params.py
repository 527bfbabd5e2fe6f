"""The whole params.yaml (`Params`), its loading and its error messages.

`load_params(path)` validates a params file before anything heavy is imported. Errors say which key was
wrong, what value it had and what was expected, and suggest the closest valid name for a misspelt key.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from synthmix.config.base import HUMAN, Name, ParamsError, Strict
from synthmix.config.evaluation import Collapse, Preference, Report, Robustness, Summaries
from synthmix.config.resources import FamilyResources
from synthmix.config.study import (
    MAX_GENERATION,
    Condition,
    DataConfig,
    Finetune,
    MixConfig,
    ModelSpec,
    Recursion,
    Source,
    Target,
)


class Params(Strict):
    """The whole params.yaml."""

    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default=[42],
        min_length=1,
        description="run seeds: fine-tuning, sampling and every per-condition evaluation run once per seed "
        "(stages <stage>@<condition>-<seed>); the seed sets LoRA init, data order and the target's sampling. "
        "The report gives means with 95% CIs across seeds (paper: one run, seed 42)",
    )
    metric_definitions: Literal["paper", "synthmix"] = Field(
        default="paper",
        description="paper: the metrics exactly as the paper's code computes them; synthmix: our definitions "
        "where we think them better (README, 'Metric definitions')",
    )
    models: dict[Name, ModelSpec]
    data: DataConfig = DataConfig()
    sources: dict[Name, Source]
    target: Target
    conditions: dict[Name, Condition]
    mix: MixConfig
    finetune: Finetune = Finetune()
    collapse: Collapse = Collapse()
    robustness: Robustness = Robustness()
    preference: Preference = Preference()
    summaries: Summaries = Summaries()
    recursion: Recursion = Recursion()
    report: Report = Report()
    resources: dict[str, FamilyResources] = Field(
        default={},
        description="what each stage's job asks the scheduler for (`synthmix run`; README 'On a cluster'): "
        "`default` and dvc.yaml's stage families -> gpus, cpus, mem, time, partition, nodes, extra, overrides",
    )

    @model_validator(mode="after")
    def _references(self) -> Params:
        problems: list[str] = []
        names = list(self.sources)
        for key, source in self.sources.items():
            if source.model not in self.models:
                problems.append(_unknown(f"sources.{key}.model", source.model, list(self.models), "model"))
            if source.variant_of is not None and source.variant_of not in self.sources:
                problems.append(_unknown(f"sources.{key}.variant_of", source.variant_of, names, "source"))
        if self.target.model not in self.models:
            problems.append(_unknown("target.model", self.target.model, list(self.models), "model"))
        if self.target.own_source not in self.sources:
            problems.append(_unknown("target.own_source", self.target.own_source, names, "source"))
        for key, condition in self.conditions.items():
            for part in condition.mix:
                if part != HUMAN and part not in self.sources:
                    problems.append(
                        _unknown(f"conditions.{key}.mix.{part}", part, [*names, HUMAN], "source (or 'human')")
                    )
        if HUMAN in self.sources:
            problems.append(f"sources.{HUMAN}: the name '{HUMAN}' is reserved for the human reference data")
        judge = self.robustness.judge.model
        if judge is not None and judge not in self.models:
            problems.append(_unknown("robustness.judge.model", judge, list(self.models), "model"))
        candidates = self.preference.sources or [*names, HUMAN]
        for part in candidates:
            if part != HUMAN and part not in self.sources:
                problems.append(_unknown("preference.sources", part, [*names, HUMAN], "source (or 'human')"))
        own = self.preference.self_source
        if own is not None and own not in self.sources:
            problems.append(_unknown("preference.self_source", own, names, "source"))
        elif (own or self.target.own_source) not in candidates:
            problems.append(
                f"preference.sources: the judge's own source '{own or self.target.own_source}' must be one of "
                f"the candidates ({', '.join(candidates)})"
            )
        for group, compared in self.report.tier_comparisons.items():
            for condition in compared:
                if condition not in self.conditions:
                    problems.append(
                        _unknown(
                            f"report.tier_comparisons.{group}", condition, list(self.conditions), "condition"
                        )
                    )
        problems += self._recursion()
        problems += self._endpoints()
        if problems:
            raise ValueError("\n".join(problems))  # format_errors prints one line per problem
        return self

    def _recursion(self) -> list[str]:
        """Each later generation's conditions: tuned conditions that reached the generation before; in lineage
        mode every model source of a multi-source condition has a single-source condition in it too."""
        problems: list[str] = []
        for k in range(2, MAX_GENERATION + 1):
            key = f"recursion.generation_{k}"
            listed = self.recursion.conditions_at(k)
            for condition in listed:
                if condition not in self.conditions:
                    problems.append(_unknown(key, condition, list(self.conditions), "condition"))
                elif not self.conditions[condition].tuned:
                    problems.append(
                        f"{key}: '{condition}' is not fine-tuned (empty mix); it has no generations"
                    )
                elif k > 2 and condition not in self.recursion.conditions_at(k - 1):
                    problems.append(
                        f"{key}: '{condition}' is not in recursion.generation_{k - 1}; a generation trains on the "
                        "previous one's models, so list it there too"
                    )
            if len(set(listed)) != len(listed):
                problems.append(f"{key}: a condition is listed more than once ({listed})")
            evaluated = self.recursion.evaluated_at(k)
            for condition in evaluated:
                if condition not in listed:
                    problems.append(
                        f"recursion.evaluate_{k}: '{condition}' is not in {key} ({listed}); only a condition "
                        f"that trains generation {k} has generation-{k} models to evaluate"
                    )
            if len(set(evaluated)) != len(evaluated):
                problems.append(f"recursion.evaluate_{k}: a condition is listed more than once ({evaluated})")
            if self.recursion.multi_source != "lineages":
                continue
            for condition in (c for c in listed if c in self.conditions):
                for source in self.lineage_sources(condition):
                    lineage = self.lineage_of(source)
                    if lineage is None or lineage not in listed:
                        problems.append(
                            f"{key}: '{condition}' mixes {source}, so with recursion.multi_source 'lineages' its "
                            f"share needs the single-source condition of {source} (mix {{{source}: 1.0}}) in "
                            f"{key} too" + ("" if lineage else "; define one") + ", or set multi_source: self"
                        )
        return problems

    def lineage_sources(self, condition: str) -> list[str]:
        """The model sources of a multi-source condition (none for single-source or human-only mixes)."""
        sources = [s for s in self.conditions[condition].mix if s != HUMAN]
        return sources if len(sources) > 1 else []

    def lineage_of(self, source: str) -> str | None:
        """The single-source condition of `source` (mix {source: 1.0}), the first defined; None if none."""
        return next((name for name, c in self.conditions.items() if c.mix == {source: 1.0}), None)

    def recursion_for(self, condition: str) -> tuple[str, float]:
        """(data regime, human fraction) of a condition: its override, else the `recursion` default."""
        own = self.conditions[condition].recursion
        regime = own.regime or self.recursion.regime
        fraction = self.recursion.human_fraction if own.human_fraction is None else own.human_fraction
        return regime, fraction

    def _endpoints(self) -> list[str]:
        """Each model job's engine against its model: an API-only model (models.<name>.api) is reached with
        backend openai, its endpoint, name and key variable filled in from the model entry; it is never
        fine-tuned; backend openai with a model that has weights needs its api_base."""
        problems: list[str] = []
        target = self.models.get(self.target.model)
        if target is not None and target.api is not None:
            problems.append(
                f"target.model: '{self.target.model}' is served only behind an API (models.{self.target.model}"
                ".api) and cannot be fine-tuned; choose a model with weights (gguf, hub or path)"
            )
        jobs = [(f"sources.{key}.generation", source.model, source) for key, source in self.sources.items()]
        jobs.append(("target.generation", self.target.model, self.target))
        judge = self.robustness.judge.model or self.target.model
        jobs.append(("robustness.judge.generation", judge, self.robustness.judge))
        for key, model_name, owner in jobs:
            model = self.models.get(model_name)
            if model is None:
                continue
            generation = owner.generation
            if model.api is not None:
                if generation.backend != "openai":
                    problems.append(
                        f"{key}.backend: model '{model_name}' is served only behind an API (models.{model_name}"
                        f".api): use backend openai (got '{generation.backend}')"
                    )
                    continue
                owner.generation = generation.model_copy(
                    update={
                        "api_base": generation.api_base or model.api.base_url,
                        "api_model": generation.api_model or model.api.model,
                        "api_key_env": generation.api_key_env or model.api.api_key_env,
                    }
                )
            elif generation.backend == "openai" and not generation.api_base:
                problems.append(
                    f"{key}.api_base: backend 'openai' needs api_base, the endpoint's base URL (e.g. "
                    "http://127.0.0.1:8000/v1 for `vllm serve`), or a model served only behind an API "
                    "(models.<name>.api)"
                )
        return problems

    def api_model(self, name: str) -> bool:
        """Whether models.<name> is served only behind an API (no weights)."""
        return name in self.models and self.models[name].api is not None

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:
            raise ValueError(f"each seed may appear once; repeated: {repeated}")
        return seeds

    def finetune_for(self, condition: str, seed: int) -> Finetune:
        """The finetune settings of one run: `finetune` with the condition's overrides and the run seed."""
        overrides = self.conditions[condition].finetune.model_dump(exclude_none=True)
        return self.finetune.model_copy(update={**overrides, "seed": seed})

    def models_in_use(self) -> list[str]:
        used = {s.model for s in self.sources.values()} | {self.target.model}
        return [name for name in self.models if name in used]


def _unknown(key: str, value: str, valid: list[str], kind: str) -> str:
    hint = difflib.get_close_matches(value, valid, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    return f"{key}: unknown {kind} '{value}' (defined: {', '.join(valid) or 'none'}){suggestion}"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid field names of the object at `loc` (for suggesting a misspelt key)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            # a dictionary key (a source or condition name): step into the dict's value type
            continue
        current = _model_in(field.annotation)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside Optional[...] / dict[str, ...] annotations, else the annotation itself."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def format_errors(error: ValidationError, source: str, schema: type[BaseModel] = Params) -> str:
    lines: list[str] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(part) for part in loc) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            valid = _fields_at(schema, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            message = f"unknown key '{loc[-1]}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
            if valid:
                message += f" (valid keys: {', '.join(valid)})"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and not isinstance(item["input"], dict):
            message += f" (got {item['input']!r})"
        if not loc:  # cross-reference problems from Params: each line already names its key
            lines.extend(f"  - {line}" for line in message.splitlines())
            continue
        lines.append(f"  - {key}: {message}")
    return "\n".join([f"{source}: {len(lines)} problem(s) in params:", *lines])


def parse_params(data: Any, source: str = "params", base_dir: str | Path | None = None) -> Params:
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return Params.model_validate(data, context={"base_dir": str(base_dir) if base_dir else None})
    except ValidationError as error:
        raise ParamsError(format_errors(error, source)) from None


def load_condition_params(path: str | Path, condition: str) -> Params:
    """load_params for a per-condition stage: the condition must be defined."""
    params = load_params(path)
    if condition not in params.conditions:
        raise ParamsError(
            _unknown(f"{path}: conditions", condition, list(params.conditions), "condition")
            + "; run a condition that params.yaml defines"
        )
    return params


def load_run_params(path: str | Path, condition: str, seed: int, generation: int = 1) -> Params:
    """load_params for a per-run stage (<stage>@<condition>-<seed>): the condition and the seed must be defined,
    and for a later generation (<stage>_g<k>@...) the condition must be listed in recursion.generation_<k>."""
    params = load_condition_params(path, condition)
    if seed not in params.seeds:
        raise ParamsError(
            f"{path}: seeds: seed {seed} is not listed (seeds: {params.seeds}); add it to `seeds` to run it"
        )
    if not 1 <= generation <= MAX_GENERATION:
        raise ParamsError(f"generation {generation}: dvc.yaml declares generations 1 to {MAX_GENERATION}")
    if generation > 1 and condition not in params.recursion.conditions_at(generation):
        raise ParamsError(
            f"{path}: recursion.generation_{generation} does not list '{condition}' "
            f"({params.recursion.conditions_at(generation)}); add it to train that generation"
        )
    return params


def run_stage(stage: str, condition: str, seed: int, generation: int = 1) -> str:
    """The DVC stage name of one run, as dvc.yaml's matrix names it: finetune@human-42, and for a later
    generation of the recursion finetune_g3@human-42."""
    family = stage if generation == 1 else f"{stage}_g{generation}"
    return f"{family}@{condition}-{seed}"


def producer_name(condition: str, generation: int) -> str:
    """How the recursion names a tuned model of a run: "<condition>@g<generation>" (the seed is the run's)."""
    return f"{condition}@g{generation}"


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; raise ParamsError with every problem listed."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        with path.open(encoding="utf-8") as handle:  # a stream, so YAML's messages name the file
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {error}") from None
    if data is None:
        raise ParamsError(f"{path}: the file is empty; expected the params (models, sources, target, ...)")
    return parse_params(data, str(path), base_dir=path.resolve().parent)

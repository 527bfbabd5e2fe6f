"""candidates: the texts the preference judges compare, chosen once for every condition (no model).

For a seeded sample of items (`preference.n_items`, `preference.seed`), one text per candidate source:
- `preference.task: summarisation` (the paper's): each source's summary of the article (data/summaries/<source>)
  and the article's human summary (data/articles);
- `preference.task: instructions`: each source's answer to a held-out test prompt (data/generated/<source>) and
  the human reference answer (data/prepared/test.jsonl).

Writes
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
from synthmix.preference import candidate_sources, load_candidates, load_summary_candidates
from synthmix.provenance import Run

HELP = "choose the candidate texts of the self-preference judges"
CANDIDATES = "candidates.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.DATA / "candidates"))
    parser.add_argument("--prepared", default=str(paths.prepared()))
    parser.add_argument(
        "--generated", default=str(paths.DATA / "generated"), help="folder of the generations"
    )
    parser.add_argument("--articles", default=str(paths.articles()))
    parser.add_argument("--summaries", default=str(paths.DATA / "summaries"), help="folder of the summaries")


def main(
    *,
    out: str = str(paths.DATA / "candidates"),
    prepared: str = str(paths.prepared()),
    generated: str = str(paths.DATA / "generated"),
    articles: str = str(paths.articles()),
    summaries: str = str(paths.DATA / "summaries"),
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
    if settings.task == "summarisation":
        candidates = load_summary_candidates(articles, summaries, sources, settings)
    else:
        candidates = load_candidates(prepared, generated, sources, settings)
    out_dir = Path(out)
    write_jsonl(out_dir / CANDIDATES, candidates)
    run.write(out_dir, sources=sources, items=[c["item"] for c in candidates])
    print(
        f"candidates ({settings.task}): {len(candidates)} items x {len(sources)} sources ({', '.join(sources)}) -> {out_dir}"
    )

"""summarize@<source>: one source summarises every article (resumable); the candidates of the
self-preference judges when `preference.task` is 'summarisation' (Schaffelder & Gatt, Experiment 3).

A chat source gets the paper's summarisation system prompt (`summaries.system_prompt`) and the article as
the user turn; a few-shot base source gets "Summarize the following text." and the article as its
instruction. Sampling is the source's own generation settings (paper: temperature 0.7, top_p 0.9, 1024 new
tokens). Writes `<out>/responses.jsonl` (one record per article, `article_id` and `response`) and
`<out>/manifest.json`; with no articles (task 'instructions') both are written empty of records and no model
is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import ParamsError, load_params
from synthmix.generation import answer_all
from synthmix.io import read_jsonl, write_jsonl
from synthmix.modelstore import model_revision
from synthmix.prompts import summary_request
from synthmix.provenance import Run

HELP = "one source summarises the drawn articles"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a key of `sources` in params")
    parser.add_argument("--out", default=None, help="default: data/summaries/<source>")
    parser.add_argument("--articles", default=str(paths.articles()))
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def main(
    *,
    source: str,
    out: str | None = None,
    articles: str = str(paths.articles()),
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    params = load_params(params_file)
    if source not in params.sources:
        raise ParamsError(
            f"{params_file}: sources.{source} is not defined (defined: {', '.join(params.sources)})"
        )
    spec = params.sources[source]
    system_prompt = params.summaries.system_prompt
    run = Run(
        f"summarize@{source}",
        {"sources": {source: spec.model_dump()}, "summaries": {"system_prompt": system_prompt}},
    )
    requests = []
    for record in read_jsonl(Path(articles) / paths.ARTICLES, required=("id", "article")):
        request = summary_request(record["id"], record["article"], spec, system_prompt)
        request["meta"] = {"article_id": record["id"]}
        requests.append(request)
    out_dir = Path(out) if out else paths.summaries(source)
    if not requests:  # preference.task instructions: the articles stage drew none
        write_jsonl(out_dir / paths.RESPONSES, [])
        run.write(out_dir, counts={"records": 0})
        print(f"{run.stage}: no articles (preference.task is not 'summarisation') -> {out_dir}")
        return
    model_dir = Path(models) / spec.model
    counts, volatile = answer_all(
        requests,
        out_dir,
        model_dir,
        spec.generation,
        extra={"source": source, "model": spec.model},
        desc=run.stage,
    )
    run.write(out_dir, volatile, model_revision=model_revision(model_dir), counts=counts)
    print(f"{run.stage}: {counts['records']} summaries ({counts['generated_tokens']} tokens) -> {out_dir}")

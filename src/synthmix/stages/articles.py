"""articles: the article/summary pairs every source summarises for the self-preference judges (no model).

Draws `summaries.n_articles` pairs from `summaries.dataset` (synthmix.articles) with the paper's
`df.sample(n, random_state=seed)`, cuts each article to `summaries.max_article_chars`, and writes
`<out>/articles.jsonl` (`{"id", "article", "summary"}`, the summary being the human one) and
`<out>/manifest.json`. With `preference.task: instructions` the candidates are instruction answers and this
stage writes an empty file, so that no source summarises anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import articles, paths
from synthmix.config import load_params
from synthmix.human_data import cut_at_word
from synthmix.io import DataError, write_jsonl
from synthmix.provenance import Run

HELP = "draw the articles the sources summarise (preference.task: summarisation)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.articles()))


def main(*, out: str = str(paths.articles()), params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    settings = params.summaries
    task = params.preference.task
    run = Run("articles", {"summaries": settings.model_dump(), "preference": {"task": task}})
    out_dir = Path(out)
    if task != "summarisation":
        write_jsonl(out_dir / paths.ARTICLES, [])
        run.write(out_dir, task=task, articles=0)
        print(f"articles: preference.task is '{task}'; no articles -> {out_dir}")
        return
    available = articles.load_articles(settings)
    if not available:
        raise DataError(f"summaries.dataset '{settings.dataset}': no article/summary pairs")
    chosen = articles.select_articles(available, settings.n_articles, settings.seed)
    records = [
        {**record, "article": cut_at_word(record["article"], settings.max_article_chars)} for record in chosen
    ]
    write_jsonl(out_dir / paths.ARTICLES, records)
    run.write(
        out_dir,
        task=task,
        source=articles.provenance(settings),
        available=len(available),
        articles=len(records),
        cut=sum(r["article"] != c["article"] for r, c in zip(records, chosen, strict=True)),
    )
    print(f"articles: {len(records)} of {len(available)} article/summary pairs -> {out_dir}")

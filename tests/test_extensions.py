"""README "Extending synthmix": each recipe's code, run word for word from this test file alone, registers a
diversity metric, a judge rubric or a backend that the stages, params validation and the report then use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from synthmix.backends import BACKENDS
from synthmix.config import parse_params
from synthmix.metrics.diversity import DIVERSITY_METRICS, diversity_metrics, report_keys
from synthmix.rubrics import RUBRICS

README = Path(__file__).resolve().parents[1] / "README.md"


def recipes() -> list[str]:
    """The ```python blocks of README's "Extending synthmix" section: metric, rubric, backend."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Extending synthmix\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert section, "README has no '## Extending synthmix' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), flags=re.M | re.S)
    assert len(blocks) == 3, f"expected the metric, rubric and backend recipes, found {len(blocks)} blocks"
    return blocks


@pytest.fixture
def registered():
    """Run a recipe; unregister what it added afterwards (the registries are process-wide)."""
    before = {registry: set(registry.names()) for registry in (DIVERSITY_METRICS, RUBRICS, BACKENDS)}

    def run(block: str) -> dict:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own recipe
        return namespace

    yield run
    for registry, names in before.items():
        for name in set(registry.names()) - names:
            registry.remove(name)


def test_a_diversity_metric_from_the_readme(registered, tiny_params_dict: dict) -> None:
    registered(recipes()[0])
    settings = parse_params(tiny_params_dict).collapse
    values, _ = diversity_metrics(["one two three", "four five"], settings, embedder=None)
    assert values["mean_words"] == 2.5
    assert "mean_words" in report_keys()  # the report's diversity table gets the column

    from synthmix.report_markdown import render_markdown

    summary = {
        "seeds": [42],
        "conditions": {"vanilla": {"mean_words": 2.5, "ci95": {}}},
        "diversity_keys": report_keys(),
        "tests": {},
    }
    header = next(
        line for line in render_markdown(summary, 0.05, []).splitlines() if "compression_ratio" in line
    )
    assert header.rstrip().endswith("| mean_words |")


def test_a_judge_rubric_from_the_readme(registered, tiny_params_dict: dict) -> None:
    from synthmix.judge import judge_requests
    from synthmix.metrics.robustness import read_scores, summarise

    registered(recipes()[1])
    tiny_params_dict["robustness"] = {"judge": {"rubrics": ["quality", "helpfulness"]}}
    params = parse_params(tiny_params_dict)  # params validation knows the new name
    assert params.robustness.judge.rubrics == ["quality", "helpfulness"]
    items = [
        {"id": "benign/a", "prompt_set": "benign", "prompt": "What is a list?", "response": "A sequence."}
    ]
    requests = judge_requests(items, ["helpfulness"])
    assert requests[0]["id"] == "helpfulness/benign/a"
    assert "Question: What is a list?\nAnswer: A sequence." in requests[0]["messages"][-1]["content"]
    replies = [
        {"id": "helpfulness/benign/a", "response": "Score: 4"},
        {"id": "quality/benign/a", "response": "x"},
    ]
    scores = read_scores(items, replies, ["quality", "helpfulness"])
    assert scores[0]["helpfulness"] == 4 and scores[0]["quality"] is None
    metrics = summarise(items, scores, ["quality", "helpfulness"], ["I cannot"])
    assert metrics["benign"]["helpfulness_mean"] == 4.0 and metrics["benign"]["quality_parse_failures"] == 1
    tiny_params_dict["robustness"]["judge"]["rubrics"] = ["helpfulnes"]
    with pytest.raises(ValueError, match="unknown judge rubric 'helpfulnes'.*did you mean 'helpfulness'"):
        parse_params(tiny_params_dict)


def test_a_backend_from_the_readme(
    registered, tiny_params_dict: dict, tiny_model: Path, tmp_path: Path
) -> None:
    from synthmix.generation import answer_all
    from synthmix.io import read_jsonl

    registered(recipes()[2])
    tiny_params_dict["sources"]["alpha"]["generation"] = {"backend": "echo", "max_new_tokens": 2, "seed": 1}
    params = parse_params(tiny_params_dict)  # params validation knows the new name
    requests = [{"id": "p0", "messages": [{"role": "user", "content": "say the last words"}]}]
    counts, _ = answer_all(requests, tmp_path / "out", tiny_model, params.sources["alpha"].generation, {})
    (record,) = read_jsonl(tmp_path / "out" / "responses.jsonl")
    assert record["response"] == "last words" and record["backend"] == "echo" and counts["records"] == 1

    from synthmix.backends import UnsupportedPrimitive, load_backend, require

    with pytest.raises(UnsupportedPrimitive, match="backend 'echo' cannot provide loglikelihood"):
        require(load_backend("echo", str(tiny_model)), "loglikelihood")

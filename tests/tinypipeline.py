"""A tiny DVC pipeline of shell stages for `synthmix run` (tests/test_cluster.py, benchmarks/parallel.py).

generate@alpha and generate@beta sleep (1.2 s and 0.8 s by default: beta ends first) and write a folder each;
mix reads both folders; finetune reads mix's file; collapse (a persist output) reads alpha's folder; report (a
cache: false output) reads finetune's file. Every command appends its stage name to $RUNS_LOG, so a test can
count how often each command ran. The generate stages print their start and end times and the GPUs they saw
(into their job logs), wait while the file $GATE exists (so a test can hold them running), and fail with exit
status 3 when their input says "fail". The stage names are synthmix's (generate, mix, finetune, ...), so the
`resources` params apply to them as to the real pipeline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("generate@alpha", "generate@beta", "mix", "finetune", "collapse", "report")
OUTPUTS = ("data/generated/alpha/out.txt", "data/generated/beta/out.txt", "data/mix.txt", "data/model.txt")
OUTPUTS += ("data/collapse.txt", "report.txt")

GENERATE_SH = """\
# generate <source> <seconds>: a slow stage. Its job log gets its start and end times and the GPUs it saw.
echo "start $(date +%s.%N) gpus=${CUDA_VISIBLE_DEVICES-unset}"
echo "$DVC_STAGE" >> "$RUNS_LOG"
while [ -n "${GATE:-}" ] && [ -e "$GATE" ]; do sleep 0.1; done
sleep "$2"
if grep -q fail "inputs/$1.txt"; then echo "generate: inputs/$1.txt asks to fail" >&2; exit 3; fi
mkdir -p "data/generated/$1"
tr a-z A-Z < "inputs/$1.txt" > "data/generated/$1/out.txt"
echo "end $(date +%s.%N)"
"""
DVC_YAML = """\
stages:
  generate:
    foreach: ${sources}
    do:
      cmd: bash bin/generate.sh ${key} ${item.seconds}
      deps: [bin/generate.sh, "inputs/${key}.txt"]
      params: ["sources.${key}"]
      outs: ["data/generated/${key}"]
  mix:
    cmd: cat data/generated/alpha/out.txt data/generated/beta/out.txt > data/mix.txt && echo $DVC_STAGE >> $RUNS_LOG
    deps: [data/generated]
    outs: [data/mix.txt]
  finetune:
    cmd: rev data/mix.txt > data/model.txt && echo $DVC_STAGE >> $RUNS_LOG
    deps: [data/mix.txt]
    outs: [data/model.txt]
  collapse:
    cmd: echo run >> data/collapse.txt && echo $DVC_STAGE >> $RUNS_LOG
    deps: [data/generated/alpha]
    outs:
      - data/collapse.txt:
          persist: true
  report:
    cmd: wc -c data/model.txt > report.txt && echo $DVC_STAGE >> $RUNS_LOG
    deps: [data/model.txt]
    outs:
      - report.txt:
          cache: false
"""
PARAMS = {
    "sources": {"alpha": {"seconds": 1.2}, "beta": {"seconds": 0.8}},
    "conditions": {"multi": {}},
    "seeds": [42],
}


def write_project(root: Path, env: dict[str, str], params: dict | None = None) -> None:
    """The tiny project as a committed git + DVC repository (with the project's .gitignore and .dvcignore)."""
    (root / "bin").mkdir(parents=True)
    (root / "inputs").mkdir()
    (root / "bin" / "generate.sh").write_text(GENERATE_SH, encoding="utf-8")
    (root / "inputs" / "alpha.txt").write_text("alpha\n", encoding="utf-8")
    (root / "inputs" / "beta.txt").write_text("beta\n", encoding="utf-8")
    (root / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")
    (root / "params.yaml").write_text(yaml.safe_dump(params or PARAMS, sort_keys=False), encoding="utf-8")
    for name in (".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    for command in (["git", "init", "-q", "-b", "main"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-q", "-m", "tiny"], cwd=root, env=env, check=True, capture_output=True)

"""Which params.yaml keys dvc.yaml reads, so `check-params` can catch what DVC would reject later.

DVC needs every key a stage declares (`params:`) or interpolates (`${target.model}`) to be written out in
params.yaml: a key left to its schema default makes DVC stop with "Parameters ... are missing".
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

_INTERPOLATION = re.compile(r"\$\{([^}]+)\}")


def _lookup(data: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _members(spec: Any, raw_params: dict[str, Any], needed: dict[str, str], name: str) -> list[Any] | None:
    """The members a `foreach` or matrix entry iterates over (a dict's keys, a list's items); records the key
    it interpolates as needed. None when it cannot be resolved (a missing key: reported as missing)."""
    if isinstance(spec, list):
        return spec
    if isinstance(spec, str) and (match := _INTERPOLATION.fullmatch(spec.strip())):
        needed.setdefault(match.group(1), name)
        found, value = _lookup(raw_params, match.group(1))
        if found and isinstance(value, dict | list):
            return list(value)
    return None


def _generated(name: str, stage: dict[str, Any], raw_params: dict[str, Any], needed: dict[str, str]):
    """(label, {placeholder: value}) for each stage that a plain, foreach or matrix stage generates."""
    if "foreach" in stage:
        keys = _members(stage["foreach"], raw_params, needed, name)
        return [(f"{name}@{k}", {"${key}": str(k)}) for k in keys] if keys else [(name, {})]
    if isinstance(stage.get("matrix"), dict):
        axes = {axis: _members(spec, raw_params, needed, name) for axis, spec in stage["matrix"].items()}
        if not all(axes.values()):
            return [(name, {})]
        combos = list(itertools.product(*axes.values()))
        return [
            (
                f"{name}@{'-'.join(map(str, combo))}",
                {f"${{item.{axis}}}": str(v) for axis, v in zip(axes, combo, strict=True)},
            )
            for combo in combos
        ]
    return [(name, {})]


def referenced_keys(dvc_yaml: str | Path, raw_params: dict[str, Any]) -> dict[str, str]:
    """{params key: stage that needs it} for every key dvc.yaml declares or interpolates."""
    stages = (yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8")) or {}).get("stages", {})
    needed: dict[str, str] = {}
    for name, stage in stages.items():
        body = {k: v for k, v in stage.get("do", stage).items() if k not in ("foreach", "matrix")}
        for label, placeholders in _generated(name, stage, raw_params, needed):
            for ref in body.get("params", []):
                if not isinstance(ref, str):
                    continue
                for placeholder, value in placeholders.items():
                    ref = ref.replace(placeholder, value)  # conditions.${item.condition} -> conditions.multi
                if "${" not in ref:
                    needed.setdefault(ref, label)
            for s in _strings({k: v for k, v in body.items() if k != "params"}):
                for ref in _INTERPOLATION.findall(s):  # ${target.model}; not the loop's own ${key}, ${item.*}
                    if ref != "key" and not ref.startswith("item.") and "${" not in ref:
                        needed.setdefault(ref, label)
    return needed


def missing_keys(dvc_yaml: str | Path, raw_params: dict[str, Any]) -> list[str]:
    """Problems DVC would hit: declared keys absent from the file, interpolated keys that are null."""
    problems = []
    for ref, stage in referenced_keys(dvc_yaml, raw_params).items():
        found, value = _lookup(raw_params, ref)
        if not found:
            problems.append(
                f"{ref}: missing, but stage {stage} in dvc.yaml reads it; write it out explicitly"
            )
        elif value is None and any(ref in s for s in ("target.model", "robustness.judge.model")):
            problems.append(f"{ref}: is null, but stage {stage} uses it in a path; name the model")
    return problems

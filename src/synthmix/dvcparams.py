"""Which params.yaml keys dvc.yaml reads, so `check-params` can catch what DVC would reject later.

DVC needs every key a stage declares (`params:`) or interpolates (`${target.model}`) to be written out in
params.yaml: a key left to its schema default makes DVC stop with "Parameters ... are missing".
"""

from __future__ import annotations

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


def referenced_keys(dvc_yaml: str | Path, raw_params: dict[str, Any]) -> dict[str, str]:
    """{params key: stage that needs it} for every key dvc.yaml declares or interpolates."""
    stages = (yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8")) or {}).get("stages", {})
    needed: dict[str, str] = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        keys: list[str | None] = [None]
        foreach = stage.get("foreach")
        if isinstance(foreach, str) and (match := _INTERPOLATION.fullmatch(foreach.strip())):
            needed.setdefault(match.group(1), name)
            found, value = _lookup(raw_params, match.group(1))
            keys = list(value) if found and isinstance(value, dict) else [None]
        for key in keys:
            label = f"{name}@{key}" if key is not None else name
            declared = [p for p in body.get("params", []) if isinstance(p, str)]
            interpolated = [
                m
                for s in _strings({k: v for k, v in body.items() if k != "params"})
                for m in _INTERPOLATION.findall(s)
            ]
            for ref in [*declared, *interpolated]:
                if key is not None:
                    ref = ref.replace("${key}", key)
                if ref == "key" or ref.startswith("item.") or "${" in ref:
                    continue
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

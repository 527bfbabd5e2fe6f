"""The DVC side of `synthmix run`: which stages to run, in what order, and recording each one in dvc.lock
exactly as `dvc repro` would (DVC 3; every call here was checked against `dvc/repo/reproduce.py`,
`dvc/stage/__init__.py` and `dvc/stage/run.py`, and the resulting dvc.lock against a sequential repro).

What `dvc repro` does for one stage, and where it happens here:
- `Stage.reproduce`: skip the stage when `changed(upstream)` is false, judged when its turn comes, after its
  upstream ran (a downstream stage whose inputs came out identical is skipped) -> `dispatch`;
- `Stage.run`: delete the declared outputs (persist ones are kept), restore from the run-cache when DVC can,
  else hash the dependencies and run the command -> `dispatch`, then the job;
- then `save` (hashes and a run-cache entry, none for a stage with a `cache: false` output), `commit` (outputs
  into the cache) and `dump` (the dvc.lock entry) -> `record`.

DVC calls stay in the driver's one thread, under DVC's repository lock, taken once per polling round (DVC
itself releases that lock while a stage's command runs). While a job runs, the driver holds DVC's per-path
lock on the stage's dependencies and outputs, as `dvc repro` does, so another dvc command cannot change them.
`import dvc` happens inside the functions: `synthmix --help` must stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthmix.cluster.jobs import ClusterError


def open_repo() -> Any:
    """The DVC project around the current folder."""
    import logging

    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    # after `import dvc`, which sets its loggers up: warnings only, not "Updating lock file" for every stage
    logging.getLogger("dvc").setLevel(logging.WARNING)

    try:
        return Repo()
    except NotDvcRepoError:
        raise ClusterError(
            f"{os.getcwd()}: not inside a DVC project (no .dvc folder above it); run synthmix run in the project"
        ) from None


@contextlib.contextmanager
def locked(repo: Any, wait_s: float = 600) -> Iterator[None]:
    """DVC's repository lock (.dvc/tmp/lock), waited for while another dvc command holds it. Entering it
    re-reads the project (dvc.yaml, dvc.lock, params), so each round sees the files as they are now."""
    from dvc.lock import LockError
    from dvc.repo import lock_repo

    deadline = time.monotonic() + wait_s
    said = False
    while True:
        context = lock_repo(repo)
        try:
            context.__enter__()
            break
        except LockError:
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the DVC project stayed locked by another dvc command for {wait_s:.0f} s ({repo.tmp_dir}/lock)"
                ) from None
            if not said:
                print("waiting for another dvc command to release the project lock ...", file=sys.stderr)
                said = True
            time.sleep(1)
    try:
        yield
    except BaseException:
        if not context.__exit__(*sys.exc_info()):
            raise
    else:
        context.__exit__(None, None, None)


@dataclass
class Plan:
    order: list[str]  # every stage the targets need, upstream first: dvc repro's order
    upstream: dict[str, list[str]]  # stage -> the stages it depends on
    candidates: list[str]  # to run (stale now, or downstream of one that is), in order
    reasons: dict[str, str]  # candidate -> why
    lockfiles: list[str]  # the dvc.lock files these stages are recorded in


def stages_by_name(repo: Any) -> dict[str, Any]:
    return {stage.addressing: stage for stage in repo.index.stages}


def make_plan(repo: Any, targets: list[str], also: list[str] = ()) -> Plan:
    """The plan for `targets` (all of dvc.yaml when empty) plus the stages `also` names (jobs of an earlier
    run). Call it under `locked`: DVC asserts its lock when it compares hashes."""
    from dvc.exceptions import DvcException
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    graph = get_active_graph(repo.index.graph)  # edges: stage -> the stages it depends on
    try:
        stages = collect_stages(repo, [*(targets or ["dvc.yaml"]), *also])
    except DvcException as error:
        raise ClusterError(f"{' '.join(targets)}: {error}") from None
    steps = plan_repro(graph, stages)
    upstream = {s.addressing: [u.addressing for u in graph.successors(s)] for s in steps}
    candidates: list[str] = []
    reasons: dict[str, str] = {}
    for stage in steps:
        name = stage.addressing
        if any(u in candidates for u in upstream[name]):
            candidates.append(name)
            reasons[name] = "an upstream stage runs first"
        elif stage.changed():
            candidates.append(name)
            reasons[name] = describe_status(stage.status().get(name, []))
    lockfiles = sorted({s.dvcfile._lockfile.path for s in steps if hasattr(s.dvcfile, "_lockfile")})
    return Plan([s.addressing for s in steps], upstream, candidates, reasons, lockfiles)


def describe_status(entries: list[Any]) -> str:
    """`dvc status`'s entries as one short line: "changed deps: src/x.py (modified); changed outs: ..."."""
    parts = []
    for entry in entries:
        if isinstance(entry, str):
            parts.append(entry)
            continue
        for kind, changes in entry.items():
            items = [
                f"{path} ({change})" if isinstance(change, str) else f"{path} ({', '.join(change)})"
                for path, change in changes.items()
            ]
            parts.append(f"{kind}: {', '.join(items)}")
    return "; ".join(parts) or "changed"


def lock_entries(lockfiles: list[str]) -> dict[str, list[str]]:
    """The stage entries each dvc.lock holds now."""
    from dvc.utils.serialize import load_yaml

    return {
        path: list((load_yaml(path) or {}).get("stages", {})) if os.path.exists(path) else []
        for path in lockfiles
    }


def job_command(stage: Any) -> str:
    """The stage's cmd as DVC runs it: each line through `$SHELL --noprofile --norc -c`, stopping at the
    first that fails."""
    from dvc.stage.run import _enforce_cmd_list, _make_cmd, get_executable

    executable = get_executable()
    return " && ".join(shlex.join(_make_cmd(executable, line)) for line in _enforce_cmd_list(stage.cmd))


def job_env(stage: Any) -> dict[str, str]:
    """What DVC adds to the environment of a stage's command (the rest is the driver's environment)."""
    from dvc.stage.run import prepare_kwargs

    env = prepare_kwargs(stage)["env"]
    return {name: env[name] for name in ("DVC_ROOT", "DVC_STAGE")}


def fingerprint(stage: Any) -> dict[str, str]:
    """The stage's command and the hashes of its dependencies and params, after `save_deps()`: what its job
    was started with. Recording compares it again, so outputs made from other inputs are never recorded."""
    found = {"cmd": json.dumps(stage.cmd)}
    for dep in stage.deps:
        info = dep.hash_info
        found[dep.def_path] = json.dumps(info.to_dict() if info else None, sort_keys=True, default=str)
    return found


def hold_paths(repo: Any, stage: Any, label: str) -> Any:
    """DVC's per-path lock (.dvc/tmp/rwlock) on the stage's deps (read) and outs (write), entered; the caller
    releases it with `release(...)` before recording (stage.commit takes the same lock)."""
    from dvc.rwlock import rwlock

    context = rwlock(
        repo.tmp_dir,
        repo.fs,
        label,
        [d.fs_path for d in stage.deps if d.protocol == "local"],
        [o.fs_path for o in stage.outs if o.protocol == "local"],
        repo.config["core"].get("hardlink_lock", False),
    )
    context.__enter__()
    return context


def release(context: Any) -> None:
    context.__exit__(None, None, None)


def dispatch(repo: Any, stage: Any, upstream: list[Any]) -> str:
    """Everything `dvc repro` does for a stage before its command: returns "skipped" (inputs unchanged),
    "done" (frozen or import stage, handled by DVC here), "restored" (from the run-cache, recorded) or
    "submit" (outputs removed, dependencies hashed: the job may start)."""
    from dvc.stage.cache import RunCacheNotFoundError

    if not stage.changed(upstream=upstream):
        return "skipped"
    if stage.frozen or not stage.cmd or stage.is_import:
        repo.reproduce(stage.addressing, single_item=True)  # no command of ours to run
        return "done"
    stage.remove_outs(ignore_remove=False, force=False)  # persist outputs are kept, as DVC keeps them
    try:
        repo.stage_cache.restore(stage)
    except RunCacheNotFoundError:
        stage.save_deps()
        return "submit"
    record(stage)
    return "restored"


def changed_inputs(stage: Any, expected: dict[str, str]) -> list[str]:
    """The inputs (cmd, deps, params) that differ from `expected` now; hashes the dependencies again."""
    stage.save_deps()
    now = fingerprint(stage)
    return sorted(key for key in set(now) | set(expected) if now.get(key) != expected.get(key))


def record(stage: Any) -> None:
    """The tail of `Stage.run` and `_reproduce_stage`: hashes, run-cache entry, cache, dvc.lock entry."""
    no_cache_outs = any(not out.use_cache for out in stage.outs if not (out.is_metric or out.is_plot))
    stage.save(allow_missing=False, run_cache=not no_cache_outs)
    stage.commit(allow_missing=False)
    stage.dump(update_pipeline=False)


def gitignore_order(stages: list[Any]) -> dict[str, list[str]]:
    """The .gitignore files that recording `stages` may append to, each with the entries in the order a
    sequential `dvc repro` of `stages` (in this order) appends them.

    Why it matters: DVC lists each cached output in the .gitignore beside it, and a folder dependency such as
    `data/generated` (read by mix@) hashes that .gitignore too. Jobs that finish in another order would write
    `/beta` before `/alpha`, and mix@'s dependency hash, its dvc.lock entry and its run-cache key would differ
    from a sequential run's (same size, other md5).
    """
    from pathspec.patterns import GitWildMatchPattern  # how scmrepo writes the entry

    order: dict[str, list[str]] = {}
    for stage in stages:
        for out in stage.outs:
            if out.protocol == "local" and out.use_scm_ignore:
                folder, name = os.path.split(out.fs_path)
                order.setdefault(os.path.join(folder, ".gitignore"), []).append(
                    GitWildMatchPattern.escape("/" + name)
                )
    return order


def read_lines(paths: list[str]) -> dict[str, list[str]]:
    return {
        path: Path(path).read_text(encoding="utf-8").splitlines() if os.path.exists(path) else []
        for path in paths
    }


def tidy_gitignores(order: dict[str, list[str]], before: dict[str, list[str]]) -> None:
    """Put the .gitignore entries added since `before` in sequential order (see gitignore_order)."""
    from synthmix.io import atomic_write_text

    for path, lines in read_lines(list(order)).items():
        rank = {entry: i for i, entry in enumerate(order[path])}
        old = set(before.get(path, []))
        new = sorted((line for line in lines if line not in old), key=lambda line: rank.get(line, len(rank)))
        tidy = [line for line in lines if line in old] + new
        if tidy != lines:
            atomic_write_text(path, "\n".join(tidy) + "\n")


def reorder_lock(path: str, order: list[str], before: list[str]) -> None:
    """Put the dvc.lock entries that are new since `before` in plan order, as a sequential `dvc repro`
    appends them; parallel jobs finish, and are recorded, in any order."""
    from dvc.utils.serialize import modify_yaml

    if not os.path.exists(path):
        return
    position = {name.rsplit(":", 1)[-1]: i for i, name in enumerate(order)}
    with modify_yaml(path) as data:
        stages = data.get("stages", {})
        keys = list(stages)
        new = sorted((k for k in keys if k not in before), key=lambda k: position.get(k, len(position)))
        wanted = [k for k in keys if k in before] + new
        if wanted != keys:
            items = {k: stages.pop(k) for k in keys}
            for key in wanted:
                stages[key] = items[key]


def track_with_git(repo: Any) -> None:
    """What `dvc repro` does at the end: stage dvc.lock and .gitignore with core.autostage, else say how."""
    scm = repo.scm_context
    if not scm.files_to_track:
        return
    if scm.autostage:
        scm.track_changed_files()
    else:
        print(f"To track the changes with git, run: git add {' '.join(sorted(scm.files_to_track))}")
    scm.files_to_track = set()

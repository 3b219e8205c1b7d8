"""Stored analyses: what is computed from stored runs, kept like a training result.

Some analyses of trained models take minutes (re-estimating statistics, evaluating weights
on other data) and would otherwise run again in every notebook and every test that reads
them. An :class:`Analysis` names the experiments whose stored runs it reads (none for a
slow computation from fixed data only) and a function that computes JSON data from them;
``nnlab train NAME`` computes it and stores it in
``<results>/<NAME>/analysis.json``, written atomically under the folder's lock, with the
sha256 of its data.

A stored analysis is current while the hash of its inputs is unchanged: every stored run of
its experiments (the run's record, which names its weights by their sha256, and its
variant's hash) and the source of the modules named in its ``code``. A retrained
run or an edited analysis module makes it stale; ``nnlab results check`` says so by name,
and ``nnlab train`` computes it again (``nnlab train EXPERIMENT`` also refreshes the stale
analyses of that experiment once its runs are stored).

The registry is empty on import; a course registers its analyses in one of the modules its
``[tool.nnlab]`` table names, as it registers experiments.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import nnlab
from nnlab import experiments as E
from nnlab import results as store
from nnlab.fileio import atomic_write_json, json_hash
from nnlab.runner import torch_threads

SCHEMA = 1
FILE = "analysis.json"


@dataclass(frozen=True)
class Analysis:
    """A result computed from the stored runs of experiments.

    Attributes:
        name: the registry key, used by ``nnlab train NAME`` and as the results folder; no
            experiment may have the same name.
        purpose: one sentence for listings.
        chapter: where it is used.
        experiments: the experiments whose stored runs (and weights) ``compute`` reads; empty
            for a computation from fixed data only (a slow study of a chapter), which is then
            current while the source of its ``code`` is unchanged.
        compute: a function of no arguments returning JSON data (dicts, lists, strings,
            numbers); it must read only the stored runs of ``experiments`` and fixed data.
        code: modules (dotted names) whose source enters the hash; by default the module
            that defines ``compute``. Name every module whose change would change the data.
        threads: torch's intra-op threads while it computes (recorded with the data): float
            sums depend on the thread count, and one thread is not slowed down by other
            processes on a busy machine as threads waiting for each other are.
    """

    name: str
    purpose: str
    chapter: str
    experiments: tuple[str, ...]
    compute: Callable[[], object]
    code: tuple[str, ...] = ()
    threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "experiments", tuple(self.experiments))
        object.__setattr__(self, "code", tuple(self.code) or (self.compute.__module__,))
        if not isinstance(self.name, str) or not self.name.strip() or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"analysis name must be a non-empty folder name without '/', got {self.name!r}")


REGISTRY: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    """Add an analysis to the registry and return it (again with an equal one: no change)."""
    if analysis.name in E.REGISTRY:
        raise ValueError(f"analysis {analysis.name!r} has the name of an experiment; rename it")
    old = REGISTRY.get(analysis.name)
    if old is not None and old != analysis:
        raise ValueError(f"analysis {analysis.name!r} is registered twice with different settings; rename one")
    REGISTRY[analysis.name] = analysis
    return analysis


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def names() -> list[str]:
    """Names of the registered analyses of the project's experiments (after importing the
    project's modules): an analysis of experiments that are not registered is left out."""
    E.load_project()
    return [name for name, a in REGISTRY.items() if all(e in E.REGISTRY for e in a.experiments)]


def is_analysis(name: str) -> bool:
    return name in names()


def get(name: str | Analysis) -> Analysis:
    if isinstance(name, Analysis):
        return name
    if not is_analysis(name):
        close = difflib.get_close_matches(name, REGISTRY, n=3, cutoff=0.4)
        raise E.UnknownExperiment(f"no analysis named {name!r}"
                                  + (f"; did you mean {', '.join(close)}?" if close else ""))
    return REGISTRY[name]


def path(name: str | Analysis) -> Path:
    return store.experiment_dir(get(name).name) / FILE


def dependants(experiments: list[str]) -> list[str]:
    """The registered analyses that read any of these experiments."""
    return [a.name for a in map(get, names()) if set(a.experiments) & set(experiments)]


def _module_hash(module: str) -> str:
    source = Path(importlib.import_module(module).__file__).read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]


def inputs(name: str | Analysis) -> dict:
    """What the analysis is computed from: per experiment, a hash of every stored run (its
    record and its variant's hash); per module of its ``code``, a hash of its source.

    Raises:
        nnlab.results.ResultError: a stored result it reads is missing, stale or damaged.
    """
    a = get(name)
    runs = {}
    for exp in a.experiments:
        data = store.load(exp)
        hashes = E.variant_hashes(data["config"])
        runs[exp] = {key: json_hash({"variant": hashes[r["variant"]], "run": r})
                     for key, r in sorted(data["runs"].items())}
    return {"experiments": runs, "code": {m: _module_hash(m) for m in a.code}}


def _what_changed(then: dict, now: dict) -> str:
    parts = [f"the stored runs of {exp}" for exp in now["experiments"]
             if then.get("experiments", {}).get(exp) != now["experiments"][exp]]
    parts += [f"the source of {m}" for m in now["code"] if then.get("code", {}).get(m) != now["code"][m]]
    return ", ".join(parts) or "its inputs"


def _read(a: Analysis) -> dict | None:
    """The stored file, checked for form and checksum; None if there is none."""
    p = path(a)
    if not p.exists():
        return None
    fix = f"restore it with `git checkout -- {p}` or compute it again with `{store.retrain_command(a.name)}`"
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise store.DamagedResult(f"{p} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or "data" not in data \
            or not isinstance(data.get("inputs"), dict):
        raise store.DamagedResult(f"{p} is not an nnlab analysis (schema {SCHEMA}); {fix}")
    if json_hash(data["data"], 64) != data.get("data_sha256"):
        raise store.DamagedResult(f"{p}: its data does not match its sha256 (truncated or altered); {fix}")
    return data


def status(name: str | Analysis) -> store.Status:
    """ok, missing, stale (its inputs changed, or a result it reads is not usable) or damaged."""
    a = get(name)
    command = store.retrain_command(a.name)
    try:
        stored = _read(a)
    except store.DamagedResult as exc:
        return store.Status(a.name, "damaged", str(exc))
    if stored is None:
        return store.Status(a.name, "missing", store._missing_detail(a.name, "analysis", path(a)))
    try:
        now = inputs(a)
    except store.ResultError as exc:
        return store.Status(a.name, "stale", f"it reads a result that is not usable ({exc})")
    if json_hash(now) != stored.get("inputs_hash"):
        return store.Status(a.name, "stale", f"{_what_changed(stored['inputs'], now)} changed since it was "
                                             f"computed; run `{command}`")
    return store.Status(a.name, "ok")


def load(name: str | Analysis):
    """The stored data of a current analysis.

    Raises:
        MissingResult, StaleResult, DamagedResult: each message names the command that
            computes it again.
    """
    a = get(name)
    st = status(a)
    if st.state != "ok":
        cls = {"missing": store.MissingResult, "stale": store.StaleResult}.get(st.state, store.DamagedResult)
        raise cls(f"analysis {a.name!r} is {st.state}: {st.detail}")
    return _read(a)["data"]


def compute(name: str | Analysis, *, fresh: bool = False, log: Callable[[str], None] | None = None) -> bool:
    """Compute and store an analysis unless it is current (always with ``fresh``); returns
    whether it computed. The file is written atomically, under the folder's lock.

    Raises:
        nnlab.results.ResultError: a stored result it reads is missing, stale or damaged.
    """
    a = get(name)
    say = log or (lambda msg: None)
    if not fresh and status(a).state == "ok":
        say(f"[{a.name}] current: nothing to compute")
        return False
    with store.locked(a.name):
        before = inputs(a)
        t0 = time.perf_counter()
        with torch_threads(a.threads):
            data = a.compute()
        seconds = time.perf_counter() - t0
        if inputs(a) != before:
            raise store.ResultError(f"analysis {a.name!r}: its inputs changed while it was computed "
                                    "(a run was stored meanwhile); run it again")
        data = json.loads(json.dumps(data))  # what is stored is what a reader gets back
        atomic_write_json(path(a), {
            "schema": SCHEMA, "analysis": a.name, "inputs": before, "inputs_hash": json_hash(before),
            "data": data, "data_sha256": json_hash(data, 64), "seconds": seconds, "threads": a.threads,
            "nnlab_version": nnlab.__version__, "source_hash": store.source_hash(), "torch": torch.__version__,
            "python": platform.python_version(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    say(f"[{a.name}] computed in {seconds:.0f} s and stored in {path(a)}")
    return True

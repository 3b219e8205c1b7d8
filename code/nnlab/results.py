"""The committed results store: ``results/<name>/result.json`` plus safetensors weights.

A result carries what produced it: the experiment's config and config hash, and per run
the seed, the ``nnlab`` version and source hash, the torch version, the device and the
wall time. A stored run is current while its variant's hash
(:func:`nnlab.experiments.variant_hashes`) computed from the stored config equals the
registered one: adding a variant or a seed keeps every stored run, changing a variant makes
its runs stale. Files are written atomically (unique temporary file, ``fsync``, rename), under
an exclusive lock, so an interrupted or concurrent writer never leaves a half-written
result. Weights are verified against their sha256 on every load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import nnlab
from nnlab import experiments as E
from nnlab import project
from nnlab.fileio import atomic_write_bytes, atomic_write_json, sha256_file  # noqa: F401  (the store's writers)
from nnlab.models import build
from nnlab.rules import check

SCHEMA = 1


class ResultError(RuntimeError):
    """A stored result is missing, stale or damaged; the message says how to fix it."""


class MissingResult(ResultError):
    pass


class StaleResult(ResultError):
    pass


class DamagedResult(ResultError):
    pass


def results_root() -> Path:
    """``$NNLAB_RESULTS``, else the ``results`` folder named in ``[tool.nnlab]``, else
    ``./results`` (see :mod:`nnlab.project`)."""
    return project.results_root()


def experiment_dir(name: str | E.Experiment) -> Path:
    return results_root() / (name.name if isinstance(name, E.Experiment) else name)


def retrain_command(name: str | E.Experiment) -> str:
    return project.cli_hint(f"nnlab train {name.name if isinstance(name, E.Experiment) else name}")


@contextlib.contextmanager
def locked(name: str):
    """An exclusive lock on one experiment's folder (between processes)."""
    d = experiment_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def source_hash() -> str:
    """sha256 (16 hex digits) of the ``nnlab`` package's Python sources."""
    h = hashlib.sha256()
    base = Path(nnlab.__file__).parent
    for f in sorted(base.rglob("*.py")):
        h.update(f.relative_to(base).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def run_key(variant: str, seed: int) -> str:
    return f"{variant}/seed={seed}"


def weights_path(name: str, variant: str, seed: int, sha256: str = "") -> Path:
    """Where a run's weights are stored; the name carries the start of their sha256.

    A new run's weights get a new file, so the stored result keeps pointing at intact
    weights until its ``result.json`` is replaced.
    """
    safe = variant.replace("/", "_").replace("=", "")
    tag = f"-{sha256[:16]}" if sha256 else ""
    return experiment_dir(name) / "weights" / f"{safe}-seed{seed}{tag}.safetensors"


def _stored_weights_file(name: str, run) -> Path | None:
    """The weights file a stored run points at, if it lies in the experiment's weights folder."""
    w = run.get("weights") if isinstance(run, dict) else None
    if not isinstance(w, dict) or not isinstance(w.get("file"), str):
        return None
    path = (experiment_dir(name) / w["file"]).resolve()
    return path if path.parent == (experiment_dir(name) / "weights").resolve() else None


def _read_json(path: Path, name: str) -> dict:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedResult(f"{path} is not valid JSON ({exc}); restore it with "
                            f"`git checkout -- {path}` or retrain with `{retrain_command(name)}`") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("runs"), dict):
        raise DamagedResult(f"{path} is not an nnlab result (schema {SCHEMA}); "
                            f"retrain with `{retrain_command(name)}`")
    try:
        E.variant_hashes(data["config"])
        if not all(isinstance(r, dict) and isinstance(r.get("variant"), str) for r in data["runs"].values()):
            raise TypeError("a run without a variant")
    except (KeyError, TypeError, AttributeError) as exc:
        raise DamagedResult(f"{path} has no readable config or runs ({exc!r}); restore it with "
                            f"`git checkout -- {path}` or retrain with `{retrain_command(name)}`") from None
    return data


def read_raw(name: str) -> dict | None:
    """The stored JSON of an experiment, or None if there is none (no checks beyond parsing)."""
    path = experiment_dir(name) / "result.json"
    return _read_json(path, name) if path.exists() else None


@dataclass
class Status:
    name: str
    state: str  # "ok", "missing", "stale", "incomplete", "damaged"
    detail: str = ""


def current_runs(name: str | E.Experiment, data: dict) -> tuple[dict, list[str]]:
    """Split the runs of a stored result (as :func:`read_raw` returns it) by the experiment:
    the runs that are still current, keyed as stored, and the names of the variants whose
    config changed since their runs were trained. Runs of variants no longer in the
    experiment are in neither."""
    now = E.get(name).variant_hashes()
    stored = E.variant_hashes(data["config"])
    current, changed = {}, set()
    for key, run in data["runs"].items():
        v = run["variant"]
        if v in now and stored.get(v) == now[v]:
            current[key] = run
        elif v in now:
            changed.add(v)
    return current, sorted(changed)


def _inspect(name: str | E.Experiment) -> tuple[Status, dict | None, dict]:
    """The status of a stored result, its raw data and its current runs, from one read."""
    exp = E.get(name)
    name = exp.name
    try:
        data = read_raw(name)
    except DamagedResult as exc:
        return Status(name, "damaged", str(exc)), None, {}
    if data is None:
        return Status(name, "missing", f"no stored result in {experiment_dir(name)}; "
                                       f"run `{retrain_command(name)}`"), None, {}
    current, changed = current_runs(exp, data)
    if changed:
        listed = ", ".join(changed[:3]) + (f", ... ({len(changed)} in all)" if len(changed) > 3 else "")
        return Status(name, "stale", f"variant(s) {listed} changed since their runs were trained; "
                                     f"run `{retrain_command(name)}`"), data, current
    missing = [run_key(v.name, s) for v, s in exp.runs() if run_key(v.name, s) not in current]
    if missing:
        detail = (f"{len(missing)} run(s) missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                  f"run `{retrain_command(name)}`")
        return Status(name, "incomplete", detail), data, current
    return Status(name, "ok"), data, current


def stored_current_runs(name: str | E.Experiment) -> dict:
    """The stored runs of an experiment that are still current, keyed as stored (none when
    the result is missing or damaged): the runs ``nnlab train`` need not train again."""
    return _inspect(name)[2]


def status(name: str | E.Experiment) -> Status:
    """Whether an experiment's stored result is usable, and if not, why."""
    return _inspect(name)[0]


def load(name: str | E.Experiment, *, allow_incomplete: bool = False) -> dict:
    """The stored result of an experiment (a name or the :class:`~nnlab.experiments.Experiment`
    itself), checked against it, with the runs of its variants and seeds only.

    Raises:
        MissingResult, StaleResult, DamagedResult: each message names the experiment and
            the command that retrains it.
    """
    exp = E.get(name)
    st, data, current = _inspect(exp)
    if st.state == "ok" or (allow_incomplete and st.state == "incomplete"):
        seeds = set(exp.seeds)
        return {**data, "runs": {k: r for k, r in current.items() if r["seed"] in seeds}}
    cls = {"missing": MissingResult, "stale": StaleResult, "damaged": DamagedResult}.get(st.state, ResultError)
    raise cls(f"result of experiment {exp.name!r} is {st.state}: {st.detail}")


def _state_dict(model) -> dict[str, torch.Tensor]:
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def record_run(name: str | E.Experiment, variant: str, seed: int, run: dict,
               model: nn.Module | dict | None) -> None:
    """Add one finished run (and its weights: a model or its state dict) to the store,
    atomically and under the lock.

    The stored runs that are still current are kept; runs of changed variants, and of
    variants no longer in the experiment, are dropped together with their weights (git keeps
    the committed ones), so the stored config always describes every stored run.
    """
    exp = E.get(name)
    name = exp.name
    with locked(name):
        path = experiment_dir(name) / "result.json"
        try:
            data = read_raw(name)
        except DamagedResult:
            data = None
        key = run_key(variant, seed)
        # keep the runs that are still current; drop stale ones, and the run this one replaces
        kept = current_runs(exp, data)[0] if data is not None else {}
        replaced = [r for k, r in data["runs"].items() if k not in kept or k == key] if data else []
        data = {"schema": SCHEMA, "experiment": name, "config": exp.config(),
                "config_hash": exp.config_hash(), "runs": kept}
        old_files = {f for f in (_stored_weights_file(name, r) for r in replaced) if f is not None}
        new_file = None
        if model is not None and exp.save_weights:
            from safetensors.torch import save

            blob = save(_state_dict(model))
            sha = hashlib.sha256(blob).hexdigest()
            wpath = weights_path(name, variant, seed, sha)
            atomic_write_bytes(wpath, blob)
            new_file = wpath.resolve()
            run["weights"] = {"file": wpath.relative_to(experiment_dir(name)).as_posix(), "sha256": sha}
        run.update({"variant": variant, "seed": seed, "nnlab_version": nnlab.__version__,
                    "source_hash": source_hash(), "torch": torch.__version__,
                    "python": platform.python_version(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        data["runs"][key] = run
        try:
            atomic_write_json(path, data)
        except BaseException:
            # the stored result still points at its old weights; the new file belongs to nothing
            if new_file is not None and new_file not in old_files:
                new_file.unlink(missing_ok=True)
            raise
        for old in old_files - {new_file}:  # weights no stored run points at any more
            old.unlink(missing_ok=True)


def chosen_variant(name: str | E.Experiment) -> str:
    """The variant an experiment reports: its only one, or the best by mean validation accuracy.

    Experiments with several candidate variants (e.g. two augmentation recipes) are decided
    here, on the validation split, never on the test set. Accuracies are counts of correct
    images, so two candidates can tie exactly; a tie goes to the lower mean validation loss.
    """
    exp = E.get(name)
    if len(exp.variants) == 1:
        return exp.variants[0].name
    blind = [v.name for v in exp.variants if exp.train_config(v).fit_on != "train"]
    if blind:
        raise ValueError(f"experiment {exp.name!r} cannot choose a variant on validation: {', '.join(blind)} "
                         "trained on the validation images (fit_on='train+val'); name the variant, or "
                         "choose among variants fit on the training split alone")
    data = load(exp)
    keys = {}
    for v in exp.variants:
        runs = [r for r in data["runs"].values() if r["variant"] == v.name]
        # rounded, so that equal accuracies summed in another order still compare equal
        keys[v.name] = (round(statistics.fmean(r["val_acc"] for r in runs), 9),
                        -statistics.fmean(r["val_loss"] for r in runs))
    return max(keys, key=keys.get)


def _variant_name(exp: E.Experiment, variant: str | None) -> str:
    return exp.variant(variant).name if variant is not None else chosen_variant(exp)


def stored_seeds(name: str | E.Experiment, variant: str | None = None) -> list[int]:
    """Seeds stored for an experiment's variant (the chosen variant by default)."""
    exp = E.get(name)
    v = _variant_name(exp, variant)
    data = load(exp, allow_incomplete=True)
    return sorted(r["seed"] for r in data["runs"].values() if r["variant"] == v)


def runs(name: str | E.Experiment, variant: str | None = None) -> list[dict]:
    """Stored runs of an experiment (of one variant, if given), ordered by variant and seed."""
    exp = E.get(name)
    data = load(exp)
    order = {v.name: i for i, v in enumerate(exp.variants)}
    out = [r for r in data["runs"].values() if variant is None or r["variant"] == variant]
    return sorted(out, key=lambda r: (order.get(r["variant"], 99), r["seed"]))


def summary(name: str | E.Experiment, metric: str = "test_acc", variant: str | None = None) -> dict:
    """Mean, standard deviation (n-1), min, max and seeds of a metric over a variant's runs
    (the chosen variant, see :func:`chosen_variant`, by default)."""
    exp = E.get(name)
    rs = runs(exp, _variant_name(exp, variant))
    values = [r[metric] for r in rs]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values), "seeds": [r["seed"] for r in rs],
            "values": values}


def load_model(name: str | E.Experiment, seed: int | None = None, variant: str | None = None) -> nn.Module:
    """The trained model of a run, in eval mode on the CPU, taking input as the experiment's
    data source serves it.

    Raises:
        MissingResult: no such run or no stored weights.
        DamagedResult: the weights file is missing, truncated or altered (sha256 mismatch).
    """
    from safetensors.torch import load as st_load

    exp = E.get(name)
    name = exp.name
    v = exp.variant(_variant_name(exp, variant))
    data = load(exp, allow_incomplete=True)
    seed = exp.seeds[0] if seed is None else seed
    run = data["runs"].get(run_key(v.name, seed))
    if run is None:
        raise MissingResult(f"experiment {name!r} has no stored run {run_key(v.name, seed)}; "
                            f"stored seeds: {stored_seeds(exp, v.name)}; run `{retrain_command(name)}`")
    if "weights" not in run:
        raise MissingResult(f"experiment {name!r} stores no weights (save_weights=False)")
    path = experiment_dir(name) / run["weights"]["file"]
    if not path.exists():
        raise DamagedResult(f"weights file {path} is missing; run `{retrain_command(name)}`")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != run["weights"]["sha256"]:
        raise DamagedResult(f"weights file {path} does not match its sha256 in result.json "
                            f"(truncated or altered); restore it with git or run `{retrain_command(name)}`")
    model = build(v.spec, exp.data.input_shape)
    check(model, exp.rules)
    try:
        model.load_state_dict(st_load(blob))
    except Exception as exc:
        raise DamagedResult(f"weights file {path} does not fit the model ({exc}); "
                            f"run `{retrain_command(name)}`") from None
    return model.eval()

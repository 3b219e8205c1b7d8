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
import hashlib
import json
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import nnlab
from nnlab import experiments as E
from nnlab import project, tasks
from nnlab.data import DataError
from nnlab.fileio import TMP_SUFFIX, atomic_write_bytes, atomic_write_json, sha256_file
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
    """An exclusive lock on one experiment's folder, between processes, on Linux, macOS and
    Windows alike (``filelock``: ``flock`` on Unix, ``msvcrt`` locking on Windows)."""
    from filelock import FileLock

    d = experiment_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    with FileLock(d / ".lock"):
        yield


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


def _number_or_none(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _out_of_range(key: str, value) -> str | None:
    """Why a stored metric cannot be what it says (None if it can): an accuracy outside
    [0, 1], a loss or a time that is negative, or anything not finite."""
    if value is None:
        return None
    if not _number_or_none(value):
        return f"holds {key}={value!r}, not a number"
    if not math.isfinite(value):
        return f"holds {key}={value!r}, not a finite number"
    if key.endswith("_acc") and not 0 <= value <= 1:
        return f"holds {key}={value!r}, not an accuracy in [0, 1]"
    if value < 0 and (key.endswith(("_loss", "_rmse")) or key == "seconds"):
        return f"holds {key}={value!r}, a negative {'time' if key == 'seconds' else 'loss or error'}"
    return None


def _weights_problem(w) -> str | None:
    """Why a run's weights entry cannot be read (None if it can): it must name a file in the
    experiment's ``weights`` folder, by a relative path that stays there, and its sha256."""
    if w is None:
        return None
    if not (isinstance(w, dict) and isinstance(w.get("file"), str) and isinstance(w.get("sha256"), str)
            and len(w["sha256"]) == 64):
        return "has a weights entry without a file name and a sha256"
    parts = w["file"].replace("\\", "/").split("/")
    if len(parts) != 2 or parts[0] != "weights" or parts[1] in ("", ".", "..") or ":" in w["file"]:
        return f"has a weights path {w['file']!r} that leaves the experiment's weights folder"
    return None


def run_problems(run) -> list[str]:
    """What is wrong with one stored run, in plain words (empty when it is readable): the
    fields every reader relies on (``variant``, ``seed``, ``val_loss`` and ``test_loss``, and
    ``val_acc`` and ``test_acc`` unless it holds the metrics of another task), the types and
    ranges of its metrics (accuracies in [0, 1], losses, errors and times finite and not
    negative), and the form of its weights entry (a file in the experiment's weights folder)."""
    if not isinstance(run, dict):
        return [f"is a {type(run).__name__}, not a run"]
    problems = []
    if not isinstance(run.get("variant"), str):
        problems.append("has no variant name")
    if not isinstance(run.get("seed"), int) or isinstance(run.get("seed"), bool):
        problems.append("has no integer seed")
    other_task = "val_loss" in run and "val_acc" not in run and any(
        k.startswith("val_") and k != "val_loss" for k in run)
    for key in ("val_loss", "test_loss") if other_task else ("val_acc", "test_acc"):
        if key not in run:
            problems.append(f"has no {key}")
    for key, value in run.items():
        if key.startswith(("val_", "test_")) or key.endswith(("_acc", "_loss")) or key == "seconds":
            problem = _out_of_range(key, value)
            if problem:
                problems.append(problem)
    weights = _weights_problem(run.get("weights"))
    if weights:
        problems.append(weights)
    return problems


def _key_problems(runs: dict) -> list[str]:
    """Runs stored under a key that is not their own (``variant/seed=N``)."""
    return [f"run {key} is stored under that key but is variant {run['variant']!r}, seed {run['seed']}"
            for key, run in runs.items()
            if not run_problems(run) and key != run_key(run["variant"], run["seed"])]


def _read_json(path: Path, name: str) -> dict:
    fix = f"restore it with `git checkout -- {path}` or retrain with `{retrain_command(name)} --fresh`"
    if path.is_dir():
        raise DamagedResult(f"{path} is a folder, not a result file; move it out of {path.parent} (nothing in it "
                            f"is read), then restore the file with `git checkout -- {path}` or run "
                            f"`{retrain_command(name)}`")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise DamagedResult(f"{path} cannot be read ({exc.strerror or exc}); make it readable for this user") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedResult(f"{path} is not valid JSON ({exc}); {fix}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if isinstance(schema, int) and schema > SCHEMA:
        raise DamagedResult(f"{path} was written by a newer nnlab (result schema {schema}; this nnlab "
                            f"{nnlab.__version__} reads schema {SCHEMA}): upgrade nnlab to read it")
    if not isinstance(data, dict) or schema != SCHEMA or not isinstance(data.get("runs"), dict):
        raise DamagedResult(f"{path} is not an nnlab result (schema {SCHEMA}); {fix}")
    try:
        E.variant_hashes(data["config"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise DamagedResult(f"{path} has no readable config ({exc!r}); {fix}") from None
    bad = [f"run {key} {p}" for key, run in data["runs"].items() for p in run_problems(run)]
    bad += _key_problems(data["runs"])
    if bad:
        listed = "; ".join(bad[:3]) + (f"; ... ({len(bad)} problems in all)" if len(bad) > 3 else "")
        raise DamagedResult(f"{path}: {listed}; {fix}")
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


def same_data(exp: E.Experiment, run: dict) -> bool:
    """Whether a stored run was trained on the data its experiment has now, by the data's
    fingerprint. A run stored without one, or data that cannot be read here, counts as the
    same: its hash, which covers the data's description, still holds."""
    stored = run.get("data_fingerprint")
    if stored is None:
        return True
    try:
        return stored == exp.data.fingerprint()
    except (DataError, OSError):
        return True


def current_runs(name: str | E.Experiment, data: dict) -> tuple[dict, list[str]]:
    """Split the runs of a stored result (as :func:`read_raw` returns it) by the experiment:
    the runs that are still current, keyed as stored, and the names of the variants whose
    config or data changed since their runs were trained. Runs of variants no longer in the
    experiment are in neither."""
    exp = E.get(name)
    now = exp.variant_hashes()
    stored = E.variant_hashes(data["config"])
    current, changed = {}, set()
    for key, run in data["runs"].items():
        v = run["variant"]
        if v in now and stored.get(v) == now[v] and same_data(exp, run):
            current[key] = run
        elif v in now:
            changed.add(v)
    return current, sorted(changed)


def what_changed(name: str | E.Experiment, data: dict, variant: str) -> list[str]:
    """Which parts of a variant's config differ between a stored result (as :func:`read_raw`
    returns it) and the experiment now: some of ``model`` (spec or factory and kwargs, and
    info), ``model code in FILE`` (the source of a factory's module was edited), ``recipe`` (the
    training config it uses), ``rules`` and ``data`` (its description, or the fingerprint of
    what it loads); ``other`` if none of those (the experiment's name)."""
    exp = E.get(name)
    now, then = exp.config(), data["config"]
    v_now = next(v for v in now["variants"] if v["name"] == variant)
    v_then = next((v for v in then["variants"] if v["name"] == variant), None)
    if v_then is None:
        return ["model"]
    parts = []
    model_now, model_then = ({k: x for k, x in v.items() if k not in ("train", "source")} for v in (v_now, v_then))
    if model_now != model_then:
        parts.append("model")
    elif v_now.get("source") != v_then.get("source"):  # a factory's module was edited
        parts.append(f"model code in {v_now['source']['file']}")
    if (v_now["train"] or now["train"]) != (v_then["train"] or then["train"]):
        parts.append("recipe")
    if now["rules"] != then["rules"]:
        parts.append("rules")
    if now["data"] != then["data"]:
        parts.append("data")
    elif not all(same_data(exp, r) for r in data["runs"].values() if r["variant"] == variant):
        parts.append("data (its fingerprint differs)")
    return parts or ["other"]


def _changes(exp: E.Experiment, data: dict, changed: list[str]) -> str:
    listed = ", ".join(changed[:3]) + (f", ... ({len(changed)} in all)" if len(changed) > 3 else "")
    what = "; ".join(f"{v}: {', '.join(what_changed(exp, data, v))}" for v in changed[:3])
    return f"variant(s) {listed} changed since their runs were trained ({what})"


def changes(name: str | E.Experiment) -> str | None:
    """What made a stored result stale, in words (which variants, and which of their model,
    recipe, rules and data changed); None if no stored variant changed."""
    exp = E.get(name)
    try:
        data = read_raw(exp.name)
    except DamagedResult:
        return None
    changed = current_runs(exp, data)[1] if data is not None else []
    return _changes(exp, data, changed) if changed else None


def _missing_detail(name: str, kind: str = "result", where: Path | None = None) -> str:
    """Why an experiment (or an analysis: ``kind``) has nothing stored, and what to do: train
    it, or, outside any project (a notebook downloaded into an empty folder, where ``nnlab
    train`` finds no experiments), read the stored results of the repository it comes from."""
    here = project.current()
    folder = where if where is not None else experiment_dir(name)
    if here.config_file is not None or here.results_from != "default" or here.experiments_from != "nowhere":
        return f"no stored {kind} in {folder}; run `{retrain_command(name)}`"
    what = "experiment" if kind == "result" else kind
    return (f"no stored {kind} in {folder}, and {here.root} is in no nnlab project (no pyproject.toml with "
            f"a [tool.nnlab] table there or above), so `nnlab train` cannot find the {what} here. Its "
            "stored results come with the repository that trains them (a book's or course's), in its "
            "results/ folder: point NNLAB_RESULTS at that folder, in a notebook with "
            "`%env NNLAB_RESULTS=/path/to/the/repository/results`, or run inside the repository")


def _inspect(name: str | E.Experiment) -> tuple[Status, dict | None, dict]:
    """The status of a stored result, its raw data and its current runs, from one read."""
    exp = E.get(name)
    name = exp.name
    try:
        data = read_raw(name)
    except DamagedResult as exc:
        return Status(name, "damaged", str(exc)), None, {}
    if data is None:
        return Status(name, "missing", _missing_detail(name)), None, {}
    current, changed = current_runs(exp, data)
    if changed:
        return Status(name, "stale", f"{_changes(exp, data, changed)}; run `{retrain_command(name)}`"), data, current
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
               model: nn.Module | dict | None, *, replace_damaged: bool = False) -> None:
    """Add one finished run (and its weights: a model or its state dict) to the store,
    atomically and under the lock.

    The stored runs that are still current are kept; runs of changed variants, and of
    variants no longer in the experiment, are dropped together with their weights (git keeps
    the committed ones), so the stored config always describes every stored run.

    Raises:
        DamagedResult: the stored result cannot be read (damaged, or written by a newer
            nnlab); it is left as it is unless ``replace_damaged`` (``nnlab train --fresh``),
            so that runs it holds are never dropped silently.
    """
    exp = E.get(name)
    name = exp.name
    with locked(name):
        path = experiment_dir(name) / "result.json"
        try:
            data = read_raw(name)
        except DamagedResult as exc:
            if not replace_damaged or path.is_dir():  # --fresh replaces a damaged file, never a folder
                raise DamagedResult(f"not storing run {run_key(variant, seed)}: {exc}") from None
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


def _weights_files(name: str) -> list[Path]:
    folder = experiment_dir(name) / "weights"
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def verify_weights(name: str | E.Experiment) -> list[str]:
    """Every problem with the weights of an experiment's current runs: a run that should
    have weights and has none, a weights file that is missing, or one whose sha256 differs
    from the one stored with its run. Each problem names the file and the fix."""
    exp = E.get(name)
    name = exp.name
    fix = f"restore it with `git checkout -- <file>` or retrain with `{retrain_command(name)} --fresh`"
    problems = []
    for key, run in sorted(stored_current_runs(exp).items()):
        if "weights" not in run:
            if exp.save_weights:
                problems.append(f"run {key} has no weights, but the experiment stores them; "
                                f"retrain with `{retrain_command(name)} --fresh`")
            continue
        path = experiment_dir(name) / run["weights"]["file"]
        if not path.is_file():
            problems.append(f"weights file {path} of run {key} is missing; {fix.replace('<file>', str(path))}")
        elif sha256_file(path) != run["weights"]["sha256"]:
            problems.append(f"weights file {path} of run {key} does not match its sha256 (truncated or "
                            f"altered); {fix.replace('<file>', str(path))}")
    return problems


def debris(name: str | E.Experiment) -> list[Path]:
    """Files in an experiment's folder that no stored run needs: temporary files left by an
    interrupted write, and weights files that no run of ``result.json`` points at."""
    name = name.name if isinstance(name, E.Experiment) else name
    folder = experiment_dir(name)
    if not folder.is_dir():
        return []
    leftovers = [p for p in folder.rglob(f"*{TMP_SUFFIX}") if ".checkpoints" not in p.parts]
    try:
        data = read_raw(name)
    except DamagedResult:
        return sorted(leftovers)  # which weights belong to it cannot be known: keep them all
    used = {f for f in (_stored_weights_file(name, r) for r in (data or {}).get("runs", {}).values()) if f}
    orphans = [p for p in _weights_files(name) if p.resolve() not in used]
    return sorted(leftovers + orphans)


def clean(name: str | E.Experiment) -> list[Path]:
    """Remove :func:`debris` (under the experiment's lock); returns what was removed."""
    name = name.name if isinstance(name, E.Experiment) else name
    removed = []
    try:
        with locked(name):
            for path in debris(name):
                path.unlink(missing_ok=True)
                removed.append(path)
    except OSError as exc:
        where = exc.filename or experiment_dir(name)
        raise ResultError(f"cannot remove {where} ({exc.strerror or exc}; {len(removed)} leftover file(s) of "
                          f"{name!r} removed before it, nothing else touched): the results store is read-only "
                          "for this user; make it writable (or run as its owner) and clean again") from None
    return removed


def task_of(name: str | E.Experiment, variant: str | None = None) -> tasks.Task:
    """The :class:`~nnlab.tasks.Task` an experiment's runs learn (one variant's, if named;
    else that of all its variants, which must agree)."""
    exp = E.get(name)
    chosen = [exp.variant(variant)] if variant is not None else exp.variants
    names = sorted({exp.train_config(v).task for v in chosen})
    if len(names) > 1:
        raise ValueError(f"the variants of experiment {exp.name!r} learn different tasks ({', '.join(names)}); "
                         "their metrics cannot be compared: name a variant")
    return tasks.get(names[0])


def chosen_variant(name: str | E.Experiment, *, allow_incomplete: bool = False) -> str:
    """The variant an experiment reports: its only one, or the best by the mean validation
    value of its task's main metric (accuracy for classification: higher is better; RMSE for
    regression: lower is better; see :mod:`nnlab.tasks`).

    Experiments with several candidate variants (e.g. two augmentation recipes) are decided
    here, on the validation split, never on the test set. Accuracies are counts of correct
    images, so two candidates can tie exactly; a tie goes to the lower mean validation loss.
    With ``allow_incomplete``, a result with runs missing is decided on the runs it holds.
    """
    exp = E.get(name)
    if len(exp.variants) == 1:
        return exp.variants[0].name
    blind = [v.name for v in exp.variants if exp.train_config(v).fit_on != "train"]
    if blind:
        raise ValueError(f"experiment {exp.name!r} cannot choose a variant on validation: {', '.join(blind)} "
                         "trained on the validation images (fit_on='train+val'); name the variant, or "
                         "choose among variants fit on the training split alone")
    task = task_of(exp)
    sign = 1 if task.higher_is_better else -1
    data = load(exp, allow_incomplete=allow_incomplete)
    keys = {}
    for v in exp.variants:
        runs = [r for r in data["runs"].values() if r["variant"] == v.name]
        if not runs:  # only where allowed incomplete: a variant without runs is no candidate
            continue
        # rounded, so that equal accuracies summed in another order still compare equal
        keys[v.name] = (round(sign * statistics.fmean(r[f"val_{task.main}"] for r in runs), 9),
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


def summary(name: str | E.Experiment, metric: str | None = None, variant: str | None = None) -> dict:
    """Mean, standard deviation (n-1), min, max and seeds of a metric over a variant's runs
    (the chosen variant, see :func:`chosen_variant`, by default). The metric is a stored
    run's key; by default the test value of the task's main metric (``test_acc`` for
    classification, ``test_rmse`` for regression)."""
    exp = E.get(name)
    chosen = _variant_name(exp, variant)
    metric = metric or f"test_{task_of(exp, chosen).main}"
    rs = runs(exp, chosen)
    values = [r.get(metric) for r in rs]
    if not rs or not all(_number_or_none(v) and v is not None for v in values):
        raise ResultError(f"experiment {exp.name!r}: {len(rs)} stored run(s) of this variant, not all with a "
                          f"number for {metric!r} (e.g. no validation metric when fit on train+val); "
                          "ask for another metric or variant")
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
    if run is None and seed not in exp.seeds:
        raise MissingResult(f"experiment {name!r} has no seed {seed}: its seeds are {list(exp.seeds)} (stored: "
                            f"{stored_seeds(exp, v.name)}); ask for one of them, or add {seed} to the "
                            f"experiment's seeds where it is defined and run `{retrain_command(name)}`")
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
    model = v.build(exp.data)
    check(model, exp.rules, input_shape=exp.data.input_shape)
    try:
        model.load_state_dict(st_load(blob))
    except Exception as exc:
        raise DamagedResult(f"weights file {path} does not fit the model ({exc}); "
                            f"run `{retrain_command(name)}`") from None
    return model.eval()

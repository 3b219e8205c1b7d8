"""Grading submissions: static checks, one contained child each, verdicts computed here.

A submission is a folder holding ``model.py`` (and ``weights.safetensors`` when the problem
asks for trained weights, plus any helper ``.py`` files), or a single ``.py`` file that
serves as ``model.py``. ``model.py`` defines the problem's entry function (``build()`` by
default) returning an ``nn.Module``, and, when the problem lets submissions choose their
recipe, ``recipe()`` returning a dict of :class:`~nnlab.train.TrainConfig` fields.
"""

from __future__ import annotations

import ast
import csv
import io
import shutil
import signal
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nnlab.fileio import atomic_write_bytes, atomic_write_json
from nnlab.grade import sandbox
from nnlab.grade._child import PREFIX
from nnlab.grade.problem import Problem
from nnlab.train import ConfigError, TrainConfig

REQUIREMENTS = ("loads", "stays in its folder", "rules", "budget", "runs within its limits",
                "outputs", "weights", "accuracy")
LABELS = {
    "loads": "model.py loads and builds a model",
    "stays in its folder": "touches nothing outside its folder",
    "rules": "follows the problem's rules",
    "budget": "trains within the budget",
    "runs within its limits": "finishes within its CPU, memory and time limits",
    "outputs": "returns finite logits of the right shape",
    "weights": "returned weights agree with the model",
    "accuracy": "reaches the accuracy threshold",
}
TIMING_KEY = "timing"


class SubmissionError(ValueError):
    """A path given as a submission that is not one (no model.py, not a .py file)."""


def submission_files(path: Path) -> dict[str, Path]:
    """The files of a submission: name inside it -> path. Raises :class:`SubmissionError`."""
    if path.is_file():
        if path.suffix != ".py":
            raise SubmissionError(f"{path} is not a submission: give a folder holding model.py, or a .py file")
        return {"model.py": path}
    if not path.is_dir():
        raise SubmissionError(f"{path} does not exist; give a folder holding model.py, or a .py file")
    files = {p.name: p for p in sorted(path.iterdir())
             if p.is_file() and not p.is_symlink() and (p.suffix == ".py" or p.name == "weights.safetensors")}
    return files


def expand(paths: list[Path]) -> list[Path]:
    """Submissions named on the command line: a folder without model.py is a class folder,
    and stands for its entries (folders and .py files), in name order."""
    found = []
    for p in paths:
        p = Path(p)
        if p.is_dir() and not (p / "model.py").exists():
            entries = sorted(e for e in p.iterdir() if not e.name.startswith((".", "_"))
                             and (e.is_dir() or e.suffix == ".py"))
            if not entries:
                raise SubmissionError(f"{p} holds no submissions (folders with model.py, or .py files)")
            found += entries
        elif p.exists():
            found.append(p)
        else:
            raise SubmissionError(f"submission {p} does not exist; give folders or .py files")
    return found


def _name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def static_problems(problem: Problem, files: dict[str, Path]) -> str | None:
    """What stops a submission before it runs: no model.py, syntax errors, forbidden imports,
    missing or unreadable weights. Nothing here executes the submission's code."""
    if "model.py" not in files:
        return "there is no model.py in the submission"
    for name, path in files.items():
        if not name.endswith(".py"):
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=name)
        except SyntaxError as exc:
            return f"syntax error in {name}, line {exc.lineno}: {exc.msg}"
        except ValueError as exc:
            return f"{name} cannot be read as Python source ({exc})"
        bad = sorted({m for m in _imports(tree) if m.split(".")[0] in problem.forbidden_imports
                      or m in problem.forbidden_imports})
        if bad:
            return f"{name} imports {', '.join(bad)}, which this problem forbids"
    if problem.budget.mode == "weights":
        if "weights.safetensors" not in files:
            return "this problem grades trained weights, but there is no weights.safetensors"
        try:
            _tensor_sizes(files["weights.safetensors"])
        except Exception as exc:  # noqa: BLE001  (any malformed file)
            return f"weights.safetensors is not a readable safetensors file ({type(exc).__name__})"
    return None


def _tensor_sizes(path: Path) -> dict[str, int]:
    """Element count of every tensor in a safetensors file (safetensors only, never pickle)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return {k: int(np.prod(f.get_slice(k).get_shape())) for k in f.keys()}


NOT_CHECKED = "not checked: an earlier requirement failed"


class _Verdicts:
    def __init__(self):
        self.items: dict[str, tuple[bool, str]] = {}
        self.default = NOT_CHECKED

    def set(self, key: str, passed: bool, reason: str) -> None:
        self.items[key] = (bool(passed), reason)

    def rows(self) -> list[dict]:
        rows = []
        for key in REQUIREMENTS:
            passed, reason = self.items.get(key, (False, self.default))
            rows.append({"requirement": key, "description": LABELS[key], "passed": passed, "reason": reason})
        return rows


def _crash_reason(problem: Problem, run: sandbox.ChildRun) -> str:
    """Why a child ended without finishing, in plain words."""
    lim = problem.limits
    if run.timed_out:
        return f"stopped after its wall-clock limit of {lim.wall_seconds} s (an endless loop or a very slow model?)"
    if run.returncode == -signal.SIGXCPU:
        return f"stopped after its CPU-time limit of {lim.cpu_seconds} s (an endless loop or a very slow model?)"
    if any(s in run.stderr for s in ("MemoryError", "can't allocate memory", "bad_alloc", "Cannot allocate memory")):
        return f"ran out of its memory limit of {lim.memory_mib} MiB"
    if run.returncode == -signal.SIGKILL:
        return "was killed (SIGKILL), by the system or by its own code"
    last = [line for line in run.stderr.strip().splitlines() if line.strip() and not line.startswith(PREFIX)]
    tail = f": {last[-1].strip()[:200]}" if last else ""
    status = "unknown" if run.returncode is None else run.returncode
    return f"the grading process stopped unexpectedly (exit status {status}){tail}"


def _refused(run: sandbox.ChildRun) -> list[str]:
    seen = list((run.result or {}).get("refused", []))
    for line in run.stderr.splitlines():
        if line.startswith(PREFIX):
            what = line[len(PREFIX):].strip()
            if what not in seen:
                seen.append(what)
    return seen[:20]


STAGES = ("start", "load", "build", "rules", "shape", "recipe", "weights", "train", "evaluate", "done")
STAGE_WORDS = {"start": "start-up", "load": "the import of model.py", "build": "build()",
               "rules": "the rule check", "shape": "the output check", "recipe": "recipe()",
               "weights": "loading the weights", "train": "training", "evaluate": "evaluation on the test images"}


def _judge(problem: Problem, inputs: sandbox.Inputs, run: sandbox.ChildRun, v: _Verdicts, report: dict) -> None:
    """Fill the verdicts from what the child left; every number checked here, in the parent."""
    res = run.result or {}
    refused = _refused(run)
    if refused:
        v.set("stays in its folder", False, "tried " + "; ".join(refused))
    else:
        v.set("stays in its folder", True, "nothing outside its folder was touched")
    final = res.get("stage") if res.get("final") else None
    stopped = final is None or final == "memory"  # killed, or out of memory: where, and why
    # where it got to: its final word, or else the last stage it entered
    stage = run.stage if stopped else final
    stage = stage if stage in STAGES or stage == "diverged" else "start"
    if stopped:
        where = STAGE_WORDS.get(stage, stage)
        if final == "memory":
            reason = f"ran out of its memory limit of {problem.limits.memory_mib} MiB"
        else:
            reason = _crash_reason(problem, run)
        v.set("runs within its limits", False, f"{reason}, during {where}")
        v.default = f"not checked: grading stopped during {where}"
    error = None if stopped else res.get("error")
    if stage in ("start", "load", "build"):
        if error:
            v.set("loads", False, error)
        return
    v.set("loads", True, f"{problem.entry}() returned a model")
    for key in ("parameters", "hidden_units", "hidden_layers"):
        if key in res:
            report[key] = res[key]
    found = res.get("violations")
    if stage == "rules" and error:
        v.set("rules", False, error)
        return
    if found is None:
        return
    if found:
        v.set("rules", False, "; ".join(found))
        return
    facts = [f"{res.get('parameters', 0):,} parameters"]
    if res.get("hidden_units") is not None:
        facts.append(f"{res['hidden_units']} hidden units in {res['hidden_layers']} hidden layer(s)")
    v.set("rules", True, f"{problem.rules.name}: " + ", ".join(facts))
    if stage == "shape":
        if error:
            v.set("outputs", False, error)
        return
    mode = problem.budget.mode
    if stage == "recipe":
        report["recipe"] = res.get("recipe")
        if error:
            v.set("budget", False, error)
        return
    if mode == "weights":
        if stage == "weights":
            if error:
                v.set("budget", False, error)
            return
        v.set("budget", True, "trained weights submitted and loaded (no training here)")
    else:
        try:
            recipe_d = dict(res.get("recipe") or {})
            recipe_d["milestones"] = tuple(recipe_d.get("milestones", ()))
            recipe = TrainConfig(**recipe_d)
        except (TypeError, ConfigError) as exc:
            v.set("budget", False, f"the recipe used cannot be read back ({exc})")
            return
        report["recipe"] = res.get("recipe")
        over = problem.budget.recipe_problems(recipe) if mode == "submitted" else []
        if mode == "fixed" and recipe != problem.budget.recipe:
            over = ["the recipe used is not the problem's"]
        if over:
            v.set("budget", False, "; ".join(over))
            return
        v.set("budget", True, ("the problem's recipe: " if mode == "fixed" else "its own recipe: ")
              + f"{recipe.epochs} epoch(s) at batch size {recipe.batch_size}, {recipe.optimizer} lr {recipe.lr:g}")
    if stage == "diverged":
        v.set("runs within its limits", False, res.get("error", "training diverged"))
        return
    if stage != "done":
        if res.get("final") and error:
            v.set("runs within its limits", False, error)
        return
    v.set("runs within its limits", True, "finished within its limits"
          if mode == "weights" else f"trained {len(problem.seeds)} seed(s) within its limits")
    seeds = problem.seeds if mode != "weights" else problem.seeds[:1]
    n, k = len(inputs.test_labels), inputs.num_classes
    accs, shape_problems, weight_problems = {}, [], []
    for seed in seeds:
        lp, wp = run.out / f"logits-seed{seed}.npy", run.out / f"weights-seed{seed}.safetensors"
        try:
            logits = np.load(lp, allow_pickle=False)
        except (OSError, ValueError) as exc:
            shape_problems.append(f"seed {seed}: no readable logits ({type(exc).__name__})")
            continue
        if logits.shape != (n, k):
            shape_problems.append(f"seed {seed}: output shape {tuple(logits.shape)}, expected ({n}, {k}): "
                                  f"one row of {k} class scores per test image")
            continue
        if not np.issubdtype(logits.dtype, np.floating) or not np.isfinite(logits).all():
            bad = int((~np.isfinite(logits)).any(axis=1).sum()) if np.issubdtype(logits.dtype, np.floating) else n
            shape_problems.append(f"seed {seed}: {bad:,} of {n:,} outputs are not finite (NaN or infinity)")
            continue
        accs[seed] = int((logits.argmax(axis=1) == inputs.test_labels).sum()) / n
        try:
            sizes = _tensor_sizes(wp)
            counted = sum(sizes[name] for name in res.get("parameter_names", []))
        except Exception as exc:  # noqa: BLE001
            weight_problems.append(f"seed {seed}: the returned weights cannot be read ({type(exc).__name__})")
            continue
        if counted != res.get("parameters"):
            weight_problems.append(f"seed {seed}: the weights hold {counted:,} parameters, the model "
                                   f"reported {res.get('parameters')}")
        elif problem.rules.max_parameters is not None and counted >= problem.rules.max_parameters:
            weight_problems.append(f"seed {seed}: the weights hold {counted:,} parameters, not fewer than "
                                   f"{problem.rules.max_parameters:,}")
    if shape_problems:
        v.set("outputs", False, "; ".join(shape_problems))
        return
    v.set("outputs", True, f"({n:,}, {k}) finite logits for every seed")
    if weight_problems:
        v.set("weights", False, "; ".join(weight_problems))
    else:
        v.set("weights", True, f"{res.get('parameters'):,} parameters counted again from the returned weights")
    mean = statistics.fmean(accs.values())
    report["accuracy"] = {"per_seed": {str(s): a for s, a in accs.items()}, "mean": mean,
                          "threshold": problem.threshold, "test_images": n}
    losses = {s: r.get("train_loss") for s, r in res.get("seeds", {}).items() if r.get("train_loss")}
    if losses:
        report["train_loss"] = losses
    per = ", ".join(f"{100 * a:.2f}% (seed {s})" for s, a in accs.items())
    verdict = "reaches" if mean >= problem.threshold else "is below"
    v.set("accuracy", mean >= problem.threshold,
          f"mean test accuracy {100 * mean:.2f}% {verdict} the threshold {100 * problem.threshold:.2f}%"
          + (f": {per}" if len(accs) > 1 else ""))


def grade_one(problem: Problem, path: Path, inputs: sandbox.Inputs, server: sandbox.Server,
              name: str | None = None) -> dict:
    """The report of one submission (a dict, as report.json holds it), graded by ``server``'s
    child on ``inputs`` (see :func:`grade`, which prepares both)."""
    path = Path(path)
    report: dict = {"submission": name or _name(path), "problem": problem.name,
                    "isolation": sandbox.isolation(problem), "parameters": None, "hidden_units": None,
                    "hidden_layers": None, "accuracy": None, TIMING_KEY: {}}
    v = _Verdicts()
    try:
        files = submission_files(path)
        stop = static_problems(problem, files)
    except (SubmissionError, OSError) as exc:
        files, stop = {}, str(exc)
    if stop:
        v.set("loads", False, stop)
    else:
        work = sandbox.scratch("nnlab-grade-")
        try:
            run = sandbox.run_child(problem, files, inputs, work, server)
            report[TIMING_KEY]["wall_seconds"] = round(run.seconds, 3)
            seconds = {s: r["seconds"] for s, r in ((run.result or {}).get("seeds") or {}).items() if "seconds" in r}
            if seconds:
                report[TIMING_KEY]["training_seconds"] = {s: round(x, 3) for s, x in seconds.items()}
            _judge(problem, inputs, run, v, report)
        except (OSError, ValueError) as exc:
            v.set("loads", False, f"the submission could not be prepared: {exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    rows = v.rows()
    report["requirements"] = rows
    report["passed"] = all(r["passed"] for r in rows)
    report["score"] = round(sum(r["passed"] for r in rows) / len(rows), 4)
    return report


def failures(report: dict) -> list[dict]:
    """The requirements a submission failed, leaving out those not checked because of another."""
    return [r for r in report["requirements"] if not r["passed"] and not r["reason"].startswith("not checked")]


def first_failure(report: dict) -> str:
    """The first requirement failed, with its reason, in plain words ("" when it passed)."""
    found = failures(report)
    return f"{found[0]['description']}: {found[0]['reason']}" if found else ""


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def report_markdown(report: dict) -> str:
    """A submission's report as Markdown."""
    acc = report.get("accuracy") or {}
    lines = [f"# {report['submission']}: problem {report['problem']}", "",
             f"**{'Passed' if report['passed'] else 'Not passed'}**, score {report['score']:.2f} "
             f"({sum(r['passed'] for r in report['requirements'])} of {len(report['requirements'])} requirements met)",
             "", "| requirement | result | reason |", "|---|---|---|"]
    for r in report["requirements"]:
        reason = r["reason"].replace("|", "\\|")
        result = "pass" if r["passed"] else "not checked" if r["reason"].startswith("not checked") else "FAIL"
        lines.append(f"| {r['description']} | {result} | {reason} |")
    lines += ["", "| measure | value |", "|---|---|",
              f"| parameters | {'–' if report['parameters'] is None else format(report['parameters'], ',')} |",
              f"| hidden units | {'–' if report['hidden_units'] is None else report['hidden_units']} |",
              f"| hidden layers | {'–' if report['hidden_layers'] is None else report['hidden_layers']} |"]
    for s, a in (acc.get("per_seed") or {}).items():
        lines.append(f"| test accuracy, seed {s} | {_pct(a)} |")
    if acc:
        lines.append(f"| mean test accuracy (threshold {_pct(acc['threshold'])}) | {_pct(acc['mean'])} |")
    t = report.get(TIMING_KEY) or {}
    for s, x in (t.get("training_seconds") or {}).items():
        lines.append(f"| training time, seed {s} | {x:.1f} s |")
    if "wall_seconds" in t:
        lines.append(f"| grading time | {t['wall_seconds']:.1f} s |")
    lines += ["", "Isolation in force:", ""] + [f"- {k}: {x}" for k, x in report["isolation"].items()]
    return "\n".join(lines) + "\n"


SUMMARY_COLUMNS = ("submission", "passed", "score", "mean_accuracy", "parameters", "hidden_units",
                   "first_failure")


def summary_rows(reports: list[dict]) -> list[dict]:
    return [{"submission": r["submission"], "passed": r["passed"], "score": r["score"],
             "mean_accuracy": (r.get("accuracy") or {}).get("mean"), "parameters": r["parameters"],
             "hidden_units": r["hidden_units"], "first_failure": first_failure(r)} for r in reports]


def summary_csv(reports: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in summary_rows(reports):
        w.writerow({k: ("" if v is None else (f"{v:.4f}" if k == "mean_accuracy" else v)) for k, v in row.items()})
    return buf.getvalue()


def summary_markdown(problem: Problem, reports: list[dict]) -> str:
    passed = sum(r["passed"] for r in reports)
    lines = [f"# Problem {problem.name}: class summary", "",
             f"{passed} of {len(reports)} submission(s) passed (threshold {_pct(problem.threshold)}).", "",
             "| submission | passed | score | mean accuracy | parameters | hidden units | first failure |",
             "|---|---|---|---|---|---|---|"]
    for row in summary_rows(reports):
        lines.append(f"| {row['submission']} | {'yes' if row['passed'] else 'no'} | {row['score']:.2f} | "
                     f"{_pct(row['mean_accuracy'])} | "
                     f"{'–' if row['parameters'] is None else format(row['parameters'], ',')} | "
                     f"{'–' if row['hidden_units'] is None else row['hidden_units']} | "
                     f"{row['first_failure'].replace('|', '/') or '–'} |")
    return "\n".join(lines) + "\n"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def grade(problem: Problem, submissions: list[str | Path], out: str | Path | None = None, *,
          jobs: int = 1, progress: bool | None = None, server: sandbox.Server | None = None) -> list[dict]:
    """Grade every submission (folders of a class are expanded, see :func:`expand`) and, when
    ``out`` is given, write ``out/<name>/report.json`` and ``report.md`` for each and
    ``out/summary.csv`` and ``out/summary.md``. A submission that fails in any way gets its
    report; nothing it does stops the others. Returns the reports in order.

    ``jobs`` submissions are graded at once. ``server`` (a :class:`~nnlab.grade.sandbox.Server`
    for the problem's thread count) can be shared by several calls, which then import torch
    once; by default each call starts and stops its own.
    """
    from tqdm.auto import tqdm

    from nnlab.train import show_progress

    paths = expand([Path(p) for p in submissions])
    names = _unique([_name(p) for p in paths])
    data = sandbox.scratch("nnlab-grade-inputs-")
    own = server is None
    if server is None:
        server = sandbox.Server(problem.threads)
    elif server.threads != problem.threads:
        raise ValueError(f"the server runs {server.threads} thread(s), problem {problem.name} needs {problem.threads}")
    try:
        inputs = sandbox.write_inputs(problem, data)
        bar = tqdm(total=len(paths), desc=f"grading {problem.name}", unit="submission",
                   disable=not (show_progress() if progress is None else progress))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(grade_one, problem, p, inputs, server, n) for p, n in zip(paths, names)]
            reports = []
            for f in futures:
                reports.append(f.result())
                bar.update(1)
        bar.close()
    finally:
        if own:
            server.close()
        shutil.rmtree(data, ignore_errors=True)
    if out is not None:
        write_reports(problem, reports, Path(out))
    return reports


def write_reports(problem: Problem, reports: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for r in reports:
        atomic_write_json(out / r["submission"] / "report.json", r)
        atomic_write_bytes(out / r["submission"] / "report.md", report_markdown(r).encode())
    atomic_write_bytes(out / "summary.csv", summary_csv(reports).encode())
    atomic_write_bytes(out / "summary.md", summary_markdown(problem, reports).encode())


def without_timing(report: dict) -> dict:
    """The report minus its timings: what two gradings of one submission share exactly."""
    return {k: v for k, v in report.items() if k != TIMING_KEY}


__all__ = ["grade", "grade_one", "failures", "first_failure", "expand", "submission_files", "static_problems", "report_markdown",
           "summary_csv", "summary_markdown", "without_timing", "write_reports", "SubmissionError"]

"""Grading submissions: the sandbox builds and exports, the grader certifies.

A submission is a folder holding ``model.py`` (and ``weights.safetensors`` when the problem
grades trained weights, plus any helper ``.py`` files), or a single ``.py`` file that serves
as ``model.py``. ``model.py`` defines the problem's entry function (``build()`` by default)
returning an ``nn.Module``, and, when the problem lets submissions choose their recipe,
``recipe()`` returning a dict of :class:`~nnlab.train.TrainConfig` fields.

The trust boundary: the submission's code runs only in its sandbox
(:mod:`nnlab.grade.sandbox`), which returns the model as exported graphs. Everything a
report certifies (layer types, hidden units, sizes, epochs, accuracy) is computed here, in a
process that never ran submission code, from those graphs (:mod:`nnlab.grade.graph`): the
grader initialises and trains the model itself (``fixed`` and ``submitted`` budgets) or
loads the submitted weights (``weights``), and computes the test scores on images the
sandbox never saw.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import hashlib
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import nnlab
from nnlab.grade import checks, sandbox
from nnlab.grade import graph as G
from nnlab.grade.problem import RECIPE_FIELDS, Problem
from nnlab.grade.reports import Verdicts
from nnlab.train import ConfigError, DivergedError, TrainConfig


class SubmissionError(ValueError):
    """A path given as a submission that is not one (no model.py, not a .py file)."""


class GradingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped grading; the finished reports are written."""


def submission_files(path: Path) -> dict[str, Path]:
    """The files of a submission: name inside it -> path. Raises :class:`SubmissionError`.
    A submission that is a symbolic link is refused: it would grade files that are not the
    student's own (another submission, or anything the grader may read)."""
    if path.is_symlink():
        raise SubmissionError(f"{path.name} is a symbolic link, which the grader does not follow; submit the "
                              "folder or .py file itself")
    if path.is_file():
        if path.suffix != ".py":
            raise SubmissionError(f"{path} is not a submission: give a folder holding model.py, or a .py file")
        return {"model.py": path}
    if not path.is_dir():
        raise SubmissionError(f"{path} does not exist; give a folder holding model.py, or a .py file")
    return {p.name: p for p in sorted(path.iterdir())
            if p.is_file() and not p.is_symlink() and (p.suffix == ".py" or p.name == "weights.safetensors")}


def expand(paths: list[Path]) -> list[Path]:
    """Submissions named on the command line: a folder without model.py is a class folder,
    and stands for its entries (folders and .py files), in name order."""
    found = []
    for p in map(Path, paths):
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


def submission_name(path: Path) -> str:
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
    missing weights. Nothing here executes the submission's code."""
    if "model.py" not in files:
        return "there is no model.py in the submission"
    for name, path in files.items():
        if not name.endswith(".py"):
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=name)
        except SyntaxError as exc:
            return f"syntax error in {name}, line {exc.lineno}: {exc.msg}"
        except (ValueError, RecursionError, MemoryError) as exc:
            return f"{name} cannot be read as Python source ({type(exc).__name__})"
        bad = sorted({m for m in _imports(tree) if m.split(".")[0] in problem.forbidden_imports
                      or m in problem.forbidden_imports})
        if bad:
            return f"{name} imports {', '.join(bad)}, which this problem forbids"
    if problem.budget.mode == "weights" and "weights.safetensors" not in files:
        return "this problem grades trained weights, but there is no weights.safetensors"
    return None


@dataclass
class Inputs:
    """The data the grader trains and tests on; never shown to a sandbox."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    input_shape: tuple[int, ...]
    num_classes: int
    fingerprints: dict[str, str]


_INPUTS: dict[str, Inputs] = {}


def problem_sha256(problem: Problem) -> str:
    """What identifies a problem: its definition, with a data source object by its fingerprint."""
    if isinstance(problem.data, str):
        d = problem.to_dict()
    else:
        d = dataclasses.replace(problem, data="mnist").to_dict()
        d["data"] = {"name": problem.data.name, "fingerprint": problem.data.fingerprint()}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def load_inputs(problem: Problem) -> Inputs:
    """The problem's training, validation and test splits (cached per process)."""
    key = problem_sha256(problem)
    if key not in _INPUTS:
        source, test_source = problem.source(), problem.test_source()
        x, y = source.load("train")
        if problem.train_size is not None:
            x, y = x[:problem.train_size], y[:problem.train_size]
        tx, ty = test_source.load("test")
        if problem.test_size is not None:
            tx, ty = tx[:problem.test_size], ty[:problem.test_size]
        prints = {"data": source.fingerprint()}
        if problem.private_test:
            prints["test data"] = test_source.fingerprint()
        _INPUTS[key] = Inputs((x, y), source.load("val"), (tx, ty), tuple(source.input_shape),
                              int(source.num_classes), prints)
    return _INPUTS[key]


def _files_sha256(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return h.hexdigest()


def _provenance(problem: Problem, inputs: Inputs) -> dict:
    return {"problem_sha256": problem_sha256(problem), **{f"{k} fingerprint": v for k, v in inputs.fingerprints.items()},
            "nnlab": nnlab.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": f"{platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'})"}


# -- the steps: each fills its requirements and says whether grading goes on -------------------

def _sandbox_task(problem: Problem, inputs: Inputs) -> dict:
    return {"entry": problem.entry, "seed": problem.seeds[0], "mode": problem.budget.mode,
            "threads": problem.threads, "memory_mib": problem.limits.memory_mib,
            "input_shape": list(inputs.input_shape)}


def _stage(stderr: str) -> str:
    stages = [line.split()[-1] for line in stderr.splitlines() if line.startswith("nnlab-sandbox: stage ")]
    return {"load": "the import of model.py", "build": "build()", "recipe": "recipe()",
            "export": "the export"}.get(stages[-1] if stages else "", "start-up")


def _stopped_reason(problem: Problem, run: sandbox.SandboxRun) -> str | None:
    lim, during = problem.limits, _stage(run.stderr)
    why = {"wall": f"stopped after its wall-clock limit of {lim.wall_seconds} s",
           "cpu": f"stopped after its CPU-time limit of {lim.cpu_seconds} s",
           "memory": f"ran out of its memory limit of {lim.memory_mib} MiB",
           "output": f"returned more than {sandbox.MAX_OUTPUT_BYTES >> 20} MiB"}.get(run.stopped)
    if why is None and run.returncode in (-24, 128 + 24):  # SIGXCPU: a process's own CPU limit
        why = f"stopped after its CPU-time limit of {lim.cpu_seconds} s"
    if why is None and any(s in run.stderr for s in ("MemoryError", "Cannot allocate memory", "bad_alloc")):
        why = f"ran out of its memory limit of {lim.memory_mib} MiB"
    if why is None and run.returncode not in (0, None):
        last = [ln for ln in run.stderr.strip().splitlines() if ln.strip() and not ln.startswith("nnlab-sandbox:")]
        why = f"the sandbox stopped unexpectedly (exit status {run.returncode})" + \
              (f": {_printable(last[-1].strip(), 200)}" if last else "")
    return f"{why}, during {during}" if why else None


def _printable(text, limit: int = 600) -> str:
    """Text the sandbox reported (and the submission could have written), made safe to show."""
    return "".join(c if c.isprintable() else " " for c in str(text))[:limit]


MAX_ANSWER_CONTAINERS = 200_000  # JSON objects and lists; a model's answer holds a few thousand


def _answer(raw: bytes) -> tuple[object, str]:
    """The sandbox's answer parsed (None if unreadable), or why it is refused unparsed: every
    JSON object or list costs the grader about a hundred bytes, so they are counted first
    (brackets inside strings count too, which only overestimates)."""
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > MAX_ANSWER_CONTAINERS:
        return None, (f"its sandbox returned an answer of {containers:,} JSON objects and lists, more than the "
                      f"{MAX_ANSWER_CONTAINERS:,} the grader reads; a model's answer needs a few thousand")
    try:
        return json.loads(raw), ""
    except (ValueError, RecursionError):
        return None, ""


def _sandbox_step(problem: Problem, files, inputs: Inputs, v: Verdicts, report: dict, stop) -> dict | None:
    """Run the submission in its sandbox; its (untrusted) answer, or None if it failed."""
    run = sandbox.run(files, _sandbox_task(problem, inputs), problem.limits, stop)
    report["timing"]["sandbox_seconds"] = round(run.seconds, 3)
    if run.stopped == "interrupted":
        raise GradingInterrupted("grading interrupted")
    stopped = _stopped_reason(problem, run)
    if stopped:
        v.set("runs within its limits", False, stopped)
        v.default = "not checked: its sandbox was stopped"
        return None
    doc, why = _answer(run.output)
    if why:
        v.set("runs within its limits", False, why)
        return None
    if not isinstance(doc, dict):
        v.set("runs within its limits", False, "its sandbox returned no readable answer (it wrote over the "
                                               "grader's answer pipe, or ended early)")
        return None
    limits_ok = "finished within its limits"
    failed = doc.get("failed")
    if isinstance(failed, dict):
        stage, reason = str(failed.get("stage"))[:20], _printable(failed.get("reason"))
        key = {"load": "loads", "build": "loads", "recipe": "budget", "export": "exports"}.get(stage,
                                                                                            "runs within its limits")
        if stage == "memory":
            reason = f"ran out of its memory limit of {problem.limits.memory_mib} MiB ({reason})"
        if key != "loads":
            v.set("loads", True, f"{problem.entry}() returned a model")
        if key != "runs within its limits":
            v.set("runs within its limits", True, limits_ok)
        v.set(key, False, reason)
        return None
    v.set("loads", True, f"{problem.entry}() returned a model")
    v.set("runs within its limits", True, limits_ok)
    return doc


def declared_mib(doc: dict) -> float:
    """The MiB the tensors an answer declares would take (dtype-aware), read before anything
    is allocated; malformed entries count nothing (:func:`nnlab.grade.graph.read_graph` refuses them)."""
    raw = doc.get("tensors")
    total = 0
    for d in (raw.values() if isinstance(raw, dict) else ()):
        shape = d.get("shape") if isinstance(d, dict) else None
        if isinstance(shape, list) and len(shape) <= 8 and d.get("dtype") in G.DTYPES \
                and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 1 << 31 for s in shape):
            total += math.prod(shape) * torch.empty((), dtype=G.DTYPES[d["dtype"]]).element_size()
    return total / 2**20


def _export_step(problem: Problem, doc: dict, inputs: Inputs, v: Verdicts):
    declared, limit = declared_mib(doc), problem.limits.memory_mib
    if declared > limit:
        v.set("exports", False, f"the model declares tensors of {declared:,.0f} MiB in all, more than the "
                                f"problem's memory limit of {limit} MiB; make the model smaller")
        return None
    try:
        net, facts = G.read_graph(doc, inputs.input_shape, inputs.num_classes)
    except G.GraphError as exc:
        v.set("exports", False, str(exc))
        return None
    v.set("exports", True, f"{len(facts.layers)} layer operation(s) in the training graph, all of kinds the "
                           "grader runs")
    return net, facts


def _rules_step(problem: Problem, facts: G.Facts, v: Verdicts, report: dict) -> bool:
    report.update(parameters=facts.parameters, stored=facts.stored, hidden_units=facts.hidden_units,
                  hidden_layers=facts.hidden_layers, layers=list(dict.fromkeys(facts.layers)))
    found = checks.violations(facts, problem.rules)
    if found:
        v.set("rules", False, "; ".join(found))
        return False
    v.set("rules", True, f"{problem.rules.name}: {facts.parameters:,} parameters, {facts.hidden_units} hidden "
                         f"units in {facts.hidden_layers} hidden layer(s)")
    return True


def _typed(key: str, value) -> bool:
    """Does ``value`` have the type ``TrainConfig.key`` takes (no bool for a number)?"""
    default = getattr(TrainConfig(), key)
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(default, str):
        return isinstance(value, str) and len(value) < 40
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and len(value) < 100 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in value)
    return False


def _submitted_recipe(problem: Problem, given) -> tuple[TrainConfig | None, str]:
    if given is None:
        return problem.budget.recipe, ""
    if not isinstance(given, dict) or len(given) > len(RECIPE_FIELDS):
        return None, "recipe() must return a dict of TrainConfig fields"
    # the task is the problem's: a submission naming one would import a module on the trusted side
    bad = [str(k)[:30] for k, x in given.items()
           if k not in RECIPE_FIELDS or k in ("threads", "task") or not _typed(k, x)]
    if bad:
        return None, f"recipe() gave unknown or wrongly typed fields: {', '.join(bad)}"
    fields = {**problem.budget.recipe.to_dict(), "threads": problem.threads, **given}
    fields["milestones"] = tuple(fields.get("milestones", ()))
    try:
        recipe = TrainConfig(**fields)
    except (ConfigError, TypeError) as exc:
        return None, f"recipe() gave no usable training recipe: {exc}"
    over = problem.budget.recipe_problems(recipe)
    return (None, "the recipe exceeds the budget: " + "; ".join(over)) if over else (recipe, "")


def _describe(recipe: TrainConfig) -> str:
    return f"{recipe.epochs} epoch(s) at batch size {recipe.batch_size}, {recipe.optimizer} lr {recipe.lr:g}"


KEPT_LIMIT = 64  # numbers a fixed or submitted budget lets a submission choose beyond the architecture


def _budget_step(problem: Problem, doc: dict, net, facts, files, v: Verdicts, report: dict):
    """The recipe the grader will train with (None for weights); False if the budget fails."""
    mode = problem.budget.mode
    if mode == "weights":
        try:
            checks.load_weights(net, files["weights.safetensors"])
        except G.GraphError as exc:
            v.set("budget", False, str(exc))
            return False
        v.set("budget", True, "its own trained weights (weights.safetensors, checked against the graph); "
                              "not trained here")
        return None
    recipe, problem_text = _submitted_recipe(problem, doc.get("recipe")) if mode == "submitted" \
        else (problem.budget.recipe, "")
    if recipe is None:
        v.set("budget", False, problem_text)
        return False
    if facts.products:  # weights could then be made of numbers the grader does not start afresh
        v.set("budget", False, f"not verified: the graph multiplies computed tensors or gives a layer a computed "
                               f"weight ({', '.join(facts.products[:3])}), so the weights it "
                               "applies could come from the submission instead of the grader's training; under "
                               "this budget only a layer's own parameters may weight its inputs")
        return False
    kept = checks.initialise(net, facts, problem.seeds[0])
    orphans = [n for n in kept if net.specs[n].kind == "parameter"]
    if orphans:
        v.set("budget", False, f"not verified: parameter(s) {', '.join(orphans[:4])} belong to no layer, so the "
                               "grader cannot start them afresh; make them part of a layer, or buffers")
        return False
    numbers = sum(net.specs[n].numel for n in kept)
    if numbers > KEPT_LIMIT:
        v.set("budget", False, f"not verified: {', '.join(kept[:4])} ({numbers:,} numbers) are no layer's own "
                               "tensors, so their values would come from the submission; make them layers' "
                               "parameters or remove them")
        return False
    report["recipe"] = {**recipe.to_dict(), "threads": recipe.threads}
    whose = "the problem's recipe" if mode == "fixed" else "its own recipe, within the limits"
    v.set("budget", True, f"{whose}, run by the grader from its own initialisation: {_describe(recipe)}")
    return recipe


def memory_needed_mib(facts: G.Facts, recipe: TrainConfig) -> float:
    """About what training takes: every activation of a batch kept for the backward pass and
    its gradient, and each parameter with its gradient and two optimiser moments."""
    return (facts.activations * recipe.batch_size * 2 * 4 + facts.size * 4 * 4) / 2**20


def _train_seed(problem: Problem, net, facts, recipe: TrainConfig, seed: int, inputs: Inputs) -> dict:
    from nnlab.train import train

    checks.initialise(net, facts, seed)
    t0 = time.monotonic()
    net.deadline = t0 + problem.limits.train_seconds
    try:
        res = train(net, recipe, seed, data={"train": inputs.train, "val": inputs.val}, device="cpu",
                    progress=False, stop_after_epoch=lambda epoch: time.monotonic() > net.deadline)
    except TimeoutError:
        raise TimeoutError(f"training with seed {seed} took longer than the problem's train_seconds "
                           f"({problem.limits.train_seconds} s)") from None
    finally:
        net.deadline = None
    epochs = len(res.history.get("train_loss", []))
    if epochs < recipe.epochs:
        raise TimeoutError(f"training with seed {seed} took longer than the problem's train_seconds "
                           f"({problem.limits.train_seconds} s) after {epochs} of {recipe.epochs} epoch(s)")
    return {"seconds": time.monotonic() - t0, "epochs": epochs,
            "train_loss": [float(x) for x in res.history.get("train_loss", [])]}


SCORE_CHUNK = 1000


def score_chunk(facts: G.Facts, memory_mib: int) -> int:
    """Test images scored at once: up to :data:`SCORE_CHUNK`, fewer where three of the eval
    graph's widest results (without gradients, little more is alive at a time) would not fit
    beside the model in ``memory_mib``."""
    room = memory_mib * 2**20 - facts.size * 4
    return int(min(SCORE_CHUNK, room // max(1, facts.widest * 4 * 3)))


def _scores(net, inputs: Inputs, seconds: float, chunk: int) -> torch.Tensor:
    """The test scores, in chunks; at most ``seconds`` of wall clock (checked every chunk)."""
    net.eval()
    x = inputs.test[0]
    net.deadline = time.monotonic() + seconds
    try:
        with torch.no_grad():
            return torch.cat([net(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    finally:
        net.deadline = None


def _train_and_score(problem: Problem, net, facts, recipe, inputs: Inputs, v: Verdicts, report: dict) -> None:
    torch.set_num_threads(problem.threads)
    chunk = score_chunk(facts, problem.limits.memory_mib)
    if chunk < 1:
        v.set("trains", False, f"scoring even one image would need more than the problem's memory limit of "
                               f"{problem.limits.memory_mib} MiB")
        return
    if recipe is not None and memory_needed_mib(facts, recipe) > problem.limits.memory_mib:
        v.set("trains", False, f"training it at batch size {recipe.batch_size} would need about "
                               f"{memory_needed_mib(facts, recipe):,.0f} MiB, more than the problem's memory limit "
                               f"of {problem.limits.memory_mib} MiB")
        return
    seeds = problem.seeds if recipe is not None else problem.seeds[:1]
    n, k = len(inputs.test[1]), inputs.num_classes
    accs, runs = {}, {}
    for seed in seeds:
        if recipe is not None:
            try:
                runs[str(seed)] = _train_seed(problem, net, facts, recipe, seed, inputs)
            except DivergedError as exc:
                why = str(exc).strip().removeprefix("training diverged: ").split(";")[0]
                v.set("trains", False, f"training with seed {seed} diverged: {why}")
                return
            except (TimeoutError, RuntimeError, ValueError) as exc:
                v.set("trains", False, f"training with seed {seed} failed: {str(exc).splitlines()[0][:300]}")
                return
        try:
            logits = _scores(net, inputs, problem.limits.train_seconds, chunk)
        except TimeoutError:
            v.set("outputs", False, f"seed {seed}: scoring the test images took longer than the problem's "
                                    f"train_seconds ({problem.limits.train_seconds} s)")
            return
        except RuntimeError as exc:
            v.set("outputs", False, f"seed {seed}: the graph fails on the test images: {str(exc).splitlines()[0][:200]}")
            return
        if tuple(logits.shape) != (n, k) or not torch.isfinite(logits).all():
            bad = int((~torch.isfinite(logits)).any(dim=1).sum()) if logits.dim() == 2 else n
            v.set("outputs", False, f"seed {seed}: {bad:,} of {n:,} rows of scores are not finite (NaN or infinity)")
            return
        accs[str(seed)] = int((logits.argmax(dim=1) == inputs.test[1]).sum()) / n
    if recipe is not None:
        report["epochs_trained"] = recipe.epochs
        report["train_loss"] = {s: r["train_loss"] for s, r in runs.items()}
        report["timing"]["training_seconds"] = {s: round(r["seconds"], 3) for s, r in runs.items()}
        v.set("trains", True, f"{len(seeds)} seed(s), {recipe.epochs} epoch(s) each, by the grader")
    else:
        v.set("trains", True, "nothing to train: the submitted weights are evaluated")
    v.set("outputs", True, f"({n:,}, {k}) finite scores for every seed, computed by the grader")
    _accuracy(problem, accs, n, v, report)
    if recipe is not None and report["accuracy"]["mean"] >= problem.threshold:
        _control(problem, net, facts, recipe, inputs, chunk, v, report)


def _accuracy(problem: Problem, accs: dict, n: int, v: Verdicts, report: dict) -> None:
    mean = float(np.mean(list(accs.values())))
    report["accuracy"] = {"per_seed": accs, "mean": mean, "threshold": problem.threshold, "test_images": n}
    per = ", ".join(f"{100 * a:.2f}% (seed {s})" for s, a in accs.items())
    verdict = "reaches" if mean >= problem.threshold else "is below"
    v.set("accuracy", mean >= problem.threshold, f"mean test accuracy {100 * mean:.2f}% {verdict} the threshold "
                                                 f"{100 * problem.threshold:.2f}%" + (f": {per}" if len(accs) > 1 else ""))


def control_bound(test_labels: torch.Tensor, classes: int) -> tuple[float, float]:
    """``(chance, bound)`` for the shuffled-label control: chance is the test share of the most
    common class (what predicting one class scores); a graph that learned nothing stays below
    ``bound``, chance plus four standard errors of an accuracy on these images plus 2 points."""
    n = len(test_labels)
    chance = float(torch.bincount(test_labels, minlength=classes).max()) / n
    return chance, chance + 4 * math.sqrt(chance * (1 - chance) / n) + 0.02


def _control(problem: Problem, net, facts, recipe: TrainConfig, inputs: Inputs, chunk: int, v: Verdicts,
             report: dict) -> None:
    """Train the same graph from the same start on the training labels shuffled by a fixed
    permutation, and score it on the true test labels. Labels never enter a graph, so what a
    graph scores without them (weights written into its structure, its constants or its
    statistics) scores as well here; a graph that learns from its labels falls to chance."""
    seed = problem.seeds[0]
    # a permutation fixed by the problem, so that grading again gives the same report; a graph
    # could not use it if it knew it: labels never enter a graph
    key = hashlib.sha256(f"{problem_sha256(problem)}:shuffled-label control".encode()).digest()
    secret = torch.Generator().manual_seed(int.from_bytes(key[:8], "little"))
    (xt, yt), (xv, yv) = inputs.train, inputs.val
    shuffled = dataclasses.replace(inputs, train=(xt, yt[torch.randperm(len(yt), generator=secret)]),
                       val=(xv, yv[torch.randperm(len(yv), generator=secret)]))
    try:
        _train_seed(problem, net, facts, recipe, seed, shuffled)
    except (DivergedError, TimeoutError, RuntimeError, ValueError):
        pass  # what it reached is scored: the real run trained in time, so a control that did not is no excuse
    try:
        logits = _scores(net, inputs, problem.limits.train_seconds, chunk)
        acc = int((logits.argmax(dim=1) == inputs.test[1]).sum()) / len(inputs.test[1])
    except (TimeoutError, RuntimeError):
        acc = 1.0  # the same graph scored the test images a moment ago: failing now is not chance
    chance, bound = control_bound(inputs.test[1], inputs.num_classes)
    report["accuracy"]["shuffled_label_control"] = {"accuracy": acc, "chance": chance, "bound": bound}
    passed, reason = v.items["accuracy"]
    if acc > bound:
        v.set("accuracy", False, f"{reason}, but trained from the same start on training labels shuffled at random "
                                 f"it still scores {100 * acc:.2f}% (chance {100 * chance:.2f}%): its accuracy "
                                 "does not come from learning the labels, so its graph carries weights of its own")
    else:
        v.set("accuracy", passed, f"{reason}; trained on shuffled labels it scores {100 * acc:.2f}%, at chance "
                                  f"({100 * chance:.2f}%)")


def grade_one(problem: Problem, path: str | Path, name: str | None = None, *, inputs: Inputs | None = None,
              stop=None) -> dict:
    """The report of one submission (a dict, as ``report.json`` holds it). Raises
    :class:`GradingInterrupted` if ``stop`` (a ``threading.Event``) is set while it runs."""
    path = Path(path)
    inputs = inputs or load_inputs(problem)
    report: dict = {"submission": name or submission_name(path), "problem": problem.name,
                    "isolation": sandbox.probe().describe(problem.limits), "parameters": None, "stored": None,
                    "hidden_units": None, "hidden_layers": None, "layers": None, "accuracy": None,
                    "provenance": _provenance(problem, inputs),
                    "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "timing": {}}
    v = Verdicts()
    try:
        files = submission_files(path)
        report["provenance"]["submission_sha256"] = _files_sha256(files)
        stop_reason = static_problems(problem, files)
    except (SubmissionError, OSError) as exc:
        files, stop_reason = {}, str(exc)
    if stop_reason:
        v.set("loads", False, stop_reason)
    else:
        _steps(problem, files, inputs, v, report, stop)
    rows = v.rows()
    report["requirements"] = rows
    report["passed"] = all(r["passed"] for r in rows)
    report["score"] = round(sum(r["passed"] for r in rows) / len(rows), 4)
    return report


def _private(inputs: Inputs) -> Inputs:
    """A copy of the splits for one submission: its graph is handed views of them (batches,
    chunks), and nothing it does to them may reach the cache other submissions read."""
    def copy(pair):
        return tuple(t.clone() for t in pair)
    return dataclasses.replace(inputs, train=copy(inputs.train), val=copy(inputs.val), test=copy(inputs.test))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a, b) or (a.is_floating_point() and a.shape == b.shape
                                 and bool(((a == b) | (a.isnan() & b.isnan())).all()))


def _unchanged(mine: Inputs, inputs: Inputs) -> bool:
    return all(_same(a, b) for split in ("train", "val", "test")
               for a, b in zip(getattr(mine, split), getattr(inputs, split)))


def _steps(problem: Problem, files, inputs: Inputs, v: Verdicts, report: dict, stop) -> None:
    doc = _sandbox_step(problem, files, inputs, v, report, stop)
    if doc is None:
        return
    mine = _private(inputs)
    _graded_steps(problem, doc, files, mine, v, report)
    if not _unchanged(mine, inputs):
        v.set("outputs", False, "its graph wrote into the images it was given (an in-place operation on its "
                                "input); a model may only read its input")


def _graded_steps(problem: Problem, doc: dict, files, inputs: Inputs, v: Verdicts, report: dict) -> None:
    exported = _export_step(problem, doc, inputs, v)
    if exported is None:
        return
    net, facts = exported
    if not _rules_step(problem, facts, v, report):
        return
    recipe = _budget_step(problem, doc, net, facts, files, v, report)
    if recipe is False:
        return
    _train_and_score(problem, net, facts, recipe, inputs, v, report)

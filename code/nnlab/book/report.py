"""Tables that summarise stored results for the book (the introduction and the appendix)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from torch import nn

from nnlab import experiments as E
from nnlab import results as store
from nnlab.book import experiments as _catalogue  # noqa: F401  (registers the book's experiments)
from nnlab.book.problems import TARGETS, Target  # noqa: F401  (chapters read them here)
from nnlab.models import build, count_parameters, describe

NBSP = "\u00a0"  # keeps "99.65 ± 0.03" on one line in a table cell


def pct(fraction: float, digits: int = 2) -> str:
    """An accuracy (a fraction) in percent with the book's two decimals: ``0.99654`` -> ``"99.65"``."""
    return f"{100 * fraction:.{digits}f}"


def fmt_pm(mean: float, std: float, digits: int = 2) -> str:
    """Mean ± standard deviation of an accuracy (fractions) in percent, two decimals as everywhere
    in the book: ``"99.65 ± 0.03"`` (the unit goes in the column header or after the number)."""
    return f"{100 * mean:.{digits}f}{NBSP}±{NBSP}{100 * std:.{digits}f}"


_NUMBER = re.compile(r"^[−+-]?[\d,]*\.?\d+(/\d+)?(%|\s*±\s*[\d.]+)?$")


def markdown_table(df: pd.DataFrame, index: bool | str = False,
                   align: str | None = None) -> "Markdown":  # noqa: F821
    """A table as MyST Markdown, for a numbered, captioned table in the book.

    The chapters glue it and paste it with myst-nb's ``glue:md`` directive inside a ``table``
    directive, which numbers it as a table ("Table 6.2") and puts its caption above it. Columns whose
    every cell is a number (or a ``mean ± std``) are right-aligned.

    Args:
        df: the table; its column names are the headers, its cells are shown as they print.
        index: ``False`` leaves the index out; ``True`` or a header text makes it the first
            column (headed by that text, or by the index's name).
        align: ``"right"`` right-aligns every column but the index, whatever its cells.
    """
    from IPython.display import Markdown

    if index is not False:
        label = index if isinstance(index, str) else (df.index.name or "")
        df = df.reset_index(names=label or " ")
    cells = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    numeric = [bool(cells) and all(_NUMBER.match(row[j].replace(NBSP, " ")) or row[j] in ("", "–")
                                   for row in cells) for j in range(df.shape[1])]
    if align == "right":
        numeric = [j >= (index is not False) for j in range(df.shape[1])]
    lines = ["| " + " | ".join(_cell(c) for c in df.columns) + " |",
             "|" + "|".join("--:" if r else ":--" for r in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return Markdown("\n".join(lines) + "\n")


def _cell(value) -> str:
    if isinstance(value, float) and value != value:  # NaN
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _shape(shape) -> str:
    return "×".join(map(str, shape))


def _layer_settings(layer: nn.Module) -> str:
    """A layer's settings in readers' words: ``784 → 100`` rather than its ``extra_repr``."""
    if isinstance(layer, nn.Linear):
        return f"{layer.in_features} → {layer.out_features}" + ("" if layer.bias is not None else ", no bias")
    if isinstance(layer, nn.Conv2d):
        parts = [f"{layer.in_channels} → {layer.out_channels} channels", f"{_shape(layer.kernel_size)} kernel"]
        if any(s != 1 for s in layer.stride):
            parts.append(f"stride {layer.stride[0]}")
        if layer.padding not in ((0, 0), "valid"):
            parts.append(f"padding {layer.padding if isinstance(layer.padding, str) else layer.padding[0]}")
        if layer.bias is None:
            parts.append("no bias")
        return ", ".join(parts)
    if isinstance(layer, nn.BatchNorm2d):
        return f"{layer.num_features} channels"
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        s = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
        return f"{k}×{k} window, stride {s}"
    if isinstance(layer, nn.Dropout):
        return f"p = {layer.p:g}"
    return ""


def layer_table(name: str) -> pd.DataFrame:
    """The layers of an experiment's reported model: layer, settings (``784 → 100``), output
    shape and parameters."""
    exp = E.get(name)
    model = build(exp.variant(store.chosen_variant(name)).spec, exp.data.input_shape)
    leaves = [m for m in model.modules() if not list(m.children())]
    return pd.DataFrame([{"layer": r["type"], "settings": _layer_settings(m), "output shape": _shape(r["output"]),
                          "parameters": r["parameters"]}
                         for r, m in zip(describe(model, exp.data.input_shape), leaves, strict=True)])


_SCHEDULES = {"none": "constant", "onecycle": "one-cycle (warm-up, then cosine decay to zero)",
              "cosine": "cosine decay to zero", "step": "halved at given epochs"}


def recipe_table(recipes: dict) -> pd.DataFrame:
    """Training recipes (:class:`nnlab.train.TrainConfig`) side by side in readers' words, one
    column per named recipe; settings that apply to none of them (momentum without SGD or
    RMSprop, milestones without a step schedule) are left out."""
    configs = list(recipes.values())
    rows = {"optimiser": [c.optimizer.replace("adamw", "AdamW").replace("adam", "Adam") for c in configs],
            "learning rate" + (" (peak)" if any(c.schedule == "onecycle" for c in configs) else ""):
                [f"{c.lr:g}" for c in configs],
            "schedule": [_SCHEDULES.get(c.schedule, c.schedule) for c in configs]}
    if any(c.schedule == "onecycle" for c in configs):
        rows["warm-up (share of the steps)"] = [f"{c.warmup:g}" if c.schedule == "onecycle" else "" for c in configs]
    if any(c.schedule == "step" for c in configs):
        rows["halved after epochs"] = [", ".join(map(str, c.milestones)) for c in configs]
    if any(c.optimizer in ("sgd", "rmsprop") for c in configs):
        rows["momentum"] = [f"{c.momentum:g}" if c.optimizer in ("sgd", "rmsprop") else "" for c in configs]
    rows |= {"weight decay": [f"{c.weight_decay:g}" for c in configs],
             "batch size": [str(c.batch_size) for c in configs],
             "epochs": [str(c.epochs) for c in configs],
             "augmentation": [c.augment for c in configs],
             "largest shift (pixels)": [f"{c.max_shift:g}" if c.augment != "none" else "" for c in configs],
             "label smoothing": [f"{c.label_smoothing:g}" for c in configs],
             "images fitted": ["training and validation splits" if c.fit_on != "train" else "training split"
                               for c in configs],
             "CPU threads per run": [str(c.threads) for c in configs]}
    return pd.DataFrame(rows, index=list(recipes)).T


def candidate_rows(name: str, label: str = "candidate") -> list[dict]:
    """One row per candidate variant of an experiment: validation accuracy (which decides),
    whether it was chosen, and its test accuracy (shown only after the choice), in %."""
    exp = E.get(name)
    chosen = store.chosen_variant(name)
    rows = []
    for v in exp.variants:
        val = store.summary(name, "val_acc", v.name)
        test = store.summary(name, "test_acc", v.name)
        rows.append({"experiment": name, label: v.name, "parameters": count_parameters(build(v.spec, exp.data.input_shape)),
                     "epochs": exp.train_config(v).epochs, "validation accuracy (%)": fmt_pm(val["mean"], val["std"]),
                     "chosen": "yes" if v.name == chosen else "",
                     "test accuracy (%)": fmt_pm(test["mean"], test["std"])})
    return rows


def summary_table() -> pd.DataFrame:
    """One row per MNIST problem: the problem's threshold, the student's best single run, and
    the book's mean ± std test accuracy over seeds (from the stored results), all in %."""
    rows = []
    for t in TARGETS:
        s = store.summary(t.experiment)
        rows.append({"problem": t.problem, "task": t.task, "required (%)": pct(t.required),
                     "student's best run (%)": pct(t.student),
                     f"this book (%), mean ± std over {s['n']} seeds": fmt_pm(s["mean"], s["std"]),
                     "worst seed (%)": pct(s["min"]), "seeds": ", ".join(map(str, s["seeds"]))})
    return pd.DataFrame(rows)


_AUGMENTATIONS = {"none": "no augmentation", "shift": "random shifts", "affine": "affine distortions",
                  "elastic": "mild elastic field (4×4 bicubic, ≤ 2 px at the nodes) with affine distortions"}
_SCHEDULE_NAMES = {"none": "constant rate", "onecycle": "one-cycle schedule", "cosine": "cosine schedule",
                   "step": "step schedule"}


def registry_table() -> pd.DataFrame:
    """Every registered experiment: purpose, recipe, runs, stored state, training time and test
    accuracy (%, mean ± std over seeds, or the one seed's)."""
    rows = []
    for name in E.names():
        exp = E.get(name)
        st = store.status(name)
        t = exp.train
        optimiser = t.optimizer.replace("adamw", "AdamW").replace("adam", "Adam").replace("sgd", "SGD")
        recipe = (f"{optimiser}, learning rate {t.lr:g}, {_SCHEDULE_NAMES.get(t.schedule, t.schedule)}, "
                  f"batch {t.batch_size}, {t.epochs} epochs, {_AUGMENTATIONS.get(t.augment, t.augment)}"
                  + (", fit on training and validation images" if t.fit_on != "train" else "")
                  + (" (some variants differ)" if any(v.train for v in exp.variants) else ""))
        row = {"experiment": name, "purpose": exp.purpose, "training recipe": recipe,
               "runs": f"{len(exp.variants)} × {len(exp.seeds)} seed{'s' if len(exp.seeds) > 1 else ''}",
               "config hash": exp.config_hash(), "stored result": st.state, "training time (min)": "",
               "test accuracy (%)": ""}
        if st.state == "ok":
            rs = store.runs(name)
            row["training time (min)"] = f"{sum(r['seconds'] for r in rs) / 60:.1f}"
            s = store.summary(name)  # of the chosen variant
            row["test accuracy (%)"] = (fmt_pm(s["mean"], s["std"]) if s["n"] > 1 else pct(s["mean"])) + (
                f" ({store.chosen_variant(name)}, best on validation)" if len(exp.variants) > 1 else "")
        rows.append(row)
    return pd.DataFrame(rows)


def late_additions() -> list[dict]:
    """The experiments added after the first round of stored results: those with a run trained
    by a later ``nnlab`` version than the earliest stored run, each with ``name``, its
    ``versions`` and the day its first run finished (``first``), earliest first. Their design
    could see the first round's test accuracies."""
    found = {name: store.runs(name) for name in E.names() if store.status(name).state == "ok"}
    first = min(r["nnlab_version"] for rs in found.values() for r in rs)
    late = [{"name": name, "versions": ", ".join(sorted({r["nnlab_version"] for r in rs})),
             "first": min(r["finished"] for r in rs)[:10]}
            for name, rs in found.items() if any(r["nnlab_version"] != first for r in rs)]
    return sorted(late, key=lambda d: (d["first"], d["name"]))


def unrecorded_thread_experiments() -> int:
    """How many stored experiments have runs that do not record the CPU threads and kernel
    level they trained with (runs stored before ``nnlab`` recorded them)."""
    return sum(any("threads" not in r or "cpu_capability" not in r for r in store.runs(name))
               for name in E.names() if store.status(name).state == "ok")


def stored_analysis_chapters() -> list[str]:
    """Titles of the chapters that read a stored analysis (:mod:`nnlab.analyses`: each
    registered analysis names its ``chapter``), in the order of the table of contents; outside
    the repository, where the chapters' sources are absent, their file names."""
    from nnlab import analyses, project

    root = project.current().root
    chapters = {analyses.get(name).chapter for name in analyses.names()}
    toc_file = root / "_toc.yml"
    toc = re.findall(r"file:\s*(\S+)", toc_file.read_text(encoding="utf-8")) if toc_file.is_file() else []
    order = [c for c in toc if c in chapters] + sorted(chapters - set(toc))
    return [_chapter_title(root, c) for c in order]


def _chapter_title(root, chapter: str) -> str:
    path = root / f"{chapter}.md"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return next((line[2:].strip() for line in lines if line.startswith("# ")), chapter.rsplit("/", 1)[-1])

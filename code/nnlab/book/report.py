"""Tables that summarise stored results for the book (the introduction and the appendix)."""

from __future__ import annotations

import pandas as pd

from nnlab import experiments as E
from nnlab import results as store
from nnlab.book import experiments as _catalogue  # noqa: F401  (registers the book's experiments)
from nnlab.book.problems import TARGETS, Target  # noqa: F401  (chapters read them here)
from nnlab.models import build, count_parameters, describe


def layer_table(name: str) -> pd.DataFrame:
    """The layers of an experiment's reported model: type, settings, output shape, parameters."""
    spec = E.get(name).variant(store.chosen_variant(name)).spec
    return pd.DataFrame([{"layer": r["type"], "settings": r["settings"],
                          "output shape": "×".join(map(str, r["output"])), "parameters": r["parameters"]}
                         for r in describe(build(spec))])


def fmt_pm(mean: float, std: float, digits: int = 4) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def candidate_rows(name: str, label: str = "candidate") -> list[dict]:
    """One row per candidate variant of an experiment: validation accuracy (which decides),
    whether it was chosen, and its test accuracy (shown only after the choice)."""
    exp = E.get(name)
    chosen = store.chosen_variant(name)
    rows = []
    for v in exp.variants:
        val = store.summary(name, "val_acc", v.name)
        test = store.summary(name, "test_acc", v.name)
        rows.append({"experiment": name, label: v.name, "parameters": f"{count_parameters(build(v.spec)):,}",
                     "epochs": exp.train_config(v).epochs, "val accuracy": fmt_pm(val["mean"], val["std"]),
                     "chosen": "yes" if v.name == chosen else "", "test accuracy": fmt_pm(test["mean"], test["std"])})
    return rows


def summary_table() -> pd.DataFrame:
    """One row per MNIST problem: the problem's threshold, the student's best single run, and
    the book's mean ± std test accuracy over seeds (from the stored results)."""
    rows = []
    for t in TARGETS:
        s = store.summary(t.experiment)
        rows.append({"problem": t.problem, "task": t.task, "required": f"{t.required:.3f}",
                     "student (best run)": f"{t.student:.4f}",
                     "this book (mean ± std)": fmt_pm(s["mean"], s["std"]),
                     "worst seed": f"{s['min']:.4f}", "seeds": ", ".join(map(str, s["seeds"]))})
    return pd.DataFrame(rows).set_index("problem")


def registry_table() -> pd.DataFrame:
    """Every registered experiment: purpose, size, command, stored metric and training time."""
    rows = []
    for name in E.names():
        exp = E.get(name)
        st = store.status(name)
        t = exp.train
        recipe = (f"{t.optimizer} lr={t.lr:g}, {t.schedule} schedule, batch {t.batch_size}, {t.epochs} epochs, "
                  f"augment={t.augment}" + (", fit on train+val" if t.fit_on != "train" else "") + (" (some variants override)" if any(v.train for v in exp.variants) else ""))
        row = {"experiment": name, "purpose": exp.purpose, "config": recipe,
               "runs": f"{len(exp.variants)} × {len(exp.seeds)} seeds", "config hash": exp.config_hash(),
               "command": f"nnlab train {name}", "state": st.state}
        if st.state == "ok":
            rs = store.runs(name)
            row["train time (min)"] = f"{sum(r['seconds'] for r in rs) / 60:.1f}"
            s = store.summary(name)  # of the chosen variant
            row["test accuracy"] = fmt_pm(s["mean"], s["std"]) + (
                f" (best by validation: {store.chosen_variant(name)})" if len(exp.variants) > 1 else "")
        rows.append(row)
    return pd.DataFrame(rows).set_index("experiment")

"""An experiment's stored results as one table: what ``nnlab results show`` prints.

One row per variant: the number of stored seeds, the mean and standard deviation (n-1) over
seeds of every metric of the variant's task (:mod:`nnlab.tasks`) on the validation and test
splits, the mean training time of a run, and whether the variant is the one chosen on
validation (:func:`nnlab.results.chosen_variant`). :func:`text` lays it out for a terminal,
:func:`write_csv` for a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import math
import statistics

from nnlab import experiments as E
from nnlab import results as store
from nnlab import tasks


def _spread(values: list) -> tuple[float | None, float | None]:
    """Mean and standard deviation (n-1; None for one value) of the values that exist."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _chosen(exp: E.Experiment) -> str | None:
    try:
        return store.chosen_variant(exp, allow_incomplete=True)
    except (store.ResultError, ValueError, KeyError):  # incomplete, or fit on validation: none chosen
        return None


def metric_columns(exp: E.Experiment) -> list[str]:
    """The stored metrics of every variant's task, validation first: ``val_loss``, ``val_acc``,
    ``test_loss``, ... (in the tasks' order, each once)."""
    names: list[str] = []
    for v in exp.variants:
        for m in tasks.get(exp.train_config(v).task).metric_names:
            if m not in names:
                names.append(m)
    return [f"{split}_{m}" for split in ("val", "test") for m in names]


def rows(name: str | E.Experiment) -> tuple[list[dict], str]:
    """The table's rows (one dict per variant with stored runs) and the experiment's state
    (``ok`` or ``incomplete``).

    Raises:
        nnlab.results.ResultError: the result is missing, stale or damaged (by name, with
            the command that retrains it).
    """
    exp = E.get(name)
    state = store.status(exp).state
    data = store.load(exp, allow_incomplete=True)
    chosen = _chosen(exp)
    out = []
    for v in exp.variants:
        runs = [r for r in data["runs"].values() if r["variant"] == v.name]
        if not runs:
            continue
        row = {"variant": v.name, "chosen": v.name == chosen, "seeds": len(runs)}
        for key in metric_columns(exp):
            row[key] = _spread([r.get(key) for r in runs])
        row["seconds"] = _spread([r.get("seconds") for r in runs])
        out.append(row)
    return out, state


def _cell(pair: tuple[float | None, float | None]) -> str:
    """``mean ± std`` with four significant digits of the mean, the std to the same decimals."""
    mean, std = pair
    if mean is None:
        return "-"
    decimals = max(0, 3 - math.floor(math.log10(abs(mean)))) if mean and math.isfinite(mean) else 4
    return f"{mean:.{decimals}f}" + ("" if std is None else f" ± {std:.{decimals}f}")


def text(name: str | E.Experiment) -> str:
    """The table laid out in columns for a terminal, with a line on the chosen variant."""
    exp = E.get(name)
    table, state = rows(exp)
    metrics = metric_columns(exp)
    header = ["variant", "seeds", *(m.replace("_", " ") for m in metrics), "seconds/run"]
    body = [[r["variant"] + (" *" if r["chosen"] else ""), str(r["seeds"]), *(_cell(r[m]) for m in metrics),
             _cell(r["seconds"])] for r in table]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in [header, *body]]
    chosen = next((r["variant"] for r in table if r["chosen"]), None)
    lines.append(f"mean ± std over seeds; * the variant chosen on validation ({chosen})" if chosen else
                 "mean ± std over seeds; no variant chosen on validation (runs missing, or trained on it)")
    if state == "incomplete":
        lines.append(f"some runs are missing (the choice is made on those stored): "
                     f"`{store.retrain_command(exp)}` trains them")
    return "\n".join(lines)


def write_csv(name: str | E.Experiment, out: io.TextIOBase) -> None:
    """The table as CSV, one row per variant: ``variant``, ``chosen`` (1 or 0), ``seeds``,
    then ``<metric>_mean`` and ``<metric>_std`` for each stored metric and for ``seconds``
    (empty where there is no value: no test split, one seed)."""
    exp = E.get(name)
    table, _ = rows(exp)
    columns = [*metric_columns(exp), "seconds"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["variant", "chosen", "seeds", *(f"{c}_{s}" for c in columns for s in ("mean", "std"))])
    for r in table:
        writer.writerow([r["variant"], int(r["chosen"]), r["seeds"],
                         *("" if x is None else repr(x) for c in columns for x in r[c])])

"""A graded submission's report, and the class summary: Markdown, CSV and files on disk."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nnlab.fileio import atomic_write_bytes, atomic_write_json

REQUIREMENTS = ("loads", "runs within its limits", "exports", "rules", "budget", "trains", "outputs", "accuracy")
LABELS = {
    "loads": "model.py loads and builds a model",
    "runs within its limits": "its code ran within the sandbox's limits",
    "exports": "the model exports as a graph the grader can run",
    "rules": "follows the problem's rules, on the exported graph",
    "budget": "is trained within the budget",
    "trains": "the grader trains it without divergence, in time",
    "outputs": "returns finite scores of the right shape",
    "accuracy": "reaches the accuracy threshold",
}
NOT_CHECKED = "not checked: an earlier requirement failed"
VOLATILE = ("timing", "graded_at")


class Verdicts:
    """Each requirement's pass or fail with its reason; unset ones are "not checked"."""

    def __init__(self):
        self.items: dict[str, tuple[bool, str]] = {}
        self.default = NOT_CHECKED

    def set(self, key: str, passed: bool, reason: str) -> None:
        self.items[key] = (bool(passed), reason)

    def failed(self) -> bool:
        return any(not ok for ok, _ in self.items.values())

    def rows(self) -> list[dict]:
        rows = []
        for key in REQUIREMENTS:
            passed, reason = self.items.get(key, (False, self.default))
            rows.append({"requirement": key, "description": LABELS[key], "passed": passed, "reason": reason})
        return rows


def failures(report: dict) -> list[dict]:
    """The requirements a submission failed, leaving out those not checked because of another."""
    return [r for r in report["requirements"] if not r["passed"] and not r["reason"].startswith("not checked")]


def first_failure(report: dict) -> str:
    """The first requirement failed, with its reason, in plain words ("" when it passed)."""
    found = failures(report)
    return f"{found[0]['description']}: {found[0]['reason']}" if found else ""


def without_timing(report: dict) -> dict:
    """The report minus its timings and date: what two gradings of one submission share."""
    return {k: v for k, v in report.items() if k not in VOLATILE}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _count(x) -> str:
    return "–" if x is None else format(x, ",")


def report_markdown(report: dict) -> str:
    """A submission's report as Markdown."""
    acc = report.get("accuracy") or {}
    met = sum(r["passed"] for r in report["requirements"])
    lines = [f"# {report['submission']}: problem {report['problem']}", "",
             f"**{'Passed' if report['passed'] else 'Not passed'}**, score {report['score']:.2f} "
             f"({met} of {len(report['requirements'])} requirements met)",
             "", "| requirement | result | reason |", "|---|---|---|"]
    for r in report["requirements"]:
        result = "pass" if r["passed"] else "not checked" if r["reason"].startswith("not checked") else "FAIL"
        lines.append(f"| {r['description']} | {result} | {r['reason'].replace('|', '/')} |")
    lines += ["", "Certified by the grader, from the exported graph (and its own training, where it trained):", "",
              "| measure | value |", "|---|---|",
              f"| parameters | {_count(report['parameters'])} |",
              f"| numbers in buffers and constants | {_count(report.get('stored'))} |",
              f"| hidden units | {_count(report['hidden_units'])} |",
              f"| hidden layers | {_count(report['hidden_layers'])} |",
              f"| layers run | {', '.join(report.get('layers') or []) or '–'} |"]
    if report.get("epochs_trained") is not None:
        lines.append(f"| epochs trained by the grader | {report['epochs_trained']} |")
    for s, a in (acc.get("per_seed") or {}).items():
        lines.append(f"| test accuracy, seed {s} | {_pct(a)} |")
    if acc:
        lines.append(f"| mean test accuracy over {acc['test_images']:,} images (threshold {_pct(acc['threshold'])}) "
                     f"| {_pct(acc['mean'])} |")
    t = report.get("timing") or {}
    if "sandbox_seconds" in t:
        lines.append(f"| time in the sandbox | {t['sandbox_seconds']:.1f} s |")
    for s, x in (t.get("training_seconds") or {}).items():
        lines.append(f"| training time, seed {s} | {x:.1f} s |")
    lines += ["", "Isolation in force:", ""] + [f"- {k}: {x}" for k, x in report["isolation"].items()]
    prov = report.get("provenance") or {}
    if prov:
        lines += ["", "Provenance:", ""] + [f"- {k}: {x}" for k, x in prov.items()]
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


def summary_markdown(problem, reports: list[dict], missing: int = 0) -> str:
    passed = sum(r["passed"] for r in reports)
    lines = [f"# Problem {problem.name}: class summary", "",
             f"{passed} of {len(reports)} submission(s) passed (threshold {_pct(problem.threshold)})."]
    if missing:
        lines[-1] += f" Grading was interrupted: {missing} submission(s) not graded yet (continue with --resume)."
    lines += ["", "| submission | passed | score | mean accuracy | parameters | hidden units | first failure |",
              "|---|---|---|---|---|---|---|"]
    for row in summary_rows(reports):
        lines.append(f"| {row['submission']} | {'yes' if row['passed'] else 'no'} | {row['score']:.2f} | "
                     f"{_pct(row['mean_accuracy'])} | {_count(row['parameters'])} | {_count(row['hidden_units'])} | "
                     f"{row['first_failure'].replace('|', '/') or '–'} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> None:
    atomic_write_json(out / report["submission"] / "report.json", report)
    atomic_write_bytes(out / report["submission"] / "report.md", report_markdown(report).encode())


def write_summary(problem, reports: list[dict], out: Path, missing: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "summary.csv", summary_csv(reports).encode())
    atomic_write_bytes(out / "summary.md", summary_markdown(problem, reports, missing).encode())


def write_reports(problem, reports: list[dict], out: Path) -> None:
    """Every report and the class summary."""
    for r in reports:
        write_report(r, out)
    write_summary(problem, reports, out)

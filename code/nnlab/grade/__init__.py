"""Grading students' submissions for a problem, behind a real wall: ``nnlab grade PROBLEM SUBMISSION...``.

A :class:`~nnlab.grade.problem.Problem` (Python, or TOML read by
:func:`~nnlab.grade.problem.load_problem`) names the data, the rules, the training budget,
the accuracy threshold, the seeds and the resource limits. Each submission's code runs only
in its own bubblewrap sandbox (:mod:`nnlab.grade.sandbox`), which builds the model and
exports it as graphs of ATen operations; nothing else comes out. The grader reads those
graphs as untrusted data (:mod:`nnlab.grade.graph`), checks the rules on them, trains the
model itself (or loads the submitted weights) and computes the test accuracy on images the
sandbox never saw. See :func:`~nnlab.grade.session.grade`; the names below are importable
from ``nnlab.grade`` itself.
"""

from nnlab.grade.grader import (
    GradingInterrupted,
    SubmissionError,
    expand,
    grade_one,
    load_inputs,
    static_problems,
    submission_files,
)
from nnlab.grade.graph import GraphError
from nnlab.grade.problem import (
    Budget,
    Limits,
    Problem,
    ProblemError,
    load_problem,
    problem_from_dict,
)
from nnlab.grade.reports import (
    REQUIREMENTS,
    failures,
    first_failure,
    report_markdown,
    summary_csv,
    summary_markdown,
    without_timing,
    write_reports,
)
from nnlab.grade.sandbox import SandboxUnavailable, probe
from nnlab.grade.session import grade

__all__ = ["Budget", "GradingInterrupted", "GraphError", "Limits", "Problem", "ProblemError", "REQUIREMENTS",
           "SandboxUnavailable", "SubmissionError", "expand", "failures", "first_failure", "grade", "grade_one",
           "load_inputs", "load_problem", "probe", "problem_from_dict", "report_markdown", "static_problems",
           "submission_files", "summary_csv", "summary_markdown", "without_timing", "write_reports"]

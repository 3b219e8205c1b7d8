"""Grading students' submissions for a problem, safely: ``nnlab grade PROBLEM SUBMISSION...``.

A :class:`~nnlab.grade.problem.Problem` (Python, or TOML read by
:func:`~nnlab.grade.problem.load_problem`) names the data, the rules,
the training budget, the accuracy threshold, the seeds and the resource limits. Each
submission's code runs only in a child process with CPU, memory and wall-clock limits, its
own temporary folder, a minimal environment and no network where Linux allows; the child
gets no test labels and returns logits and safetensors weights, from which the grader
computes accuracy and checks the parameter count. See :func:`~nnlab.grade.grader.grade`;
the names below are importable from ``nnlab.grade`` itself.
"""

from nnlab.grade.grader import (
    SubmissionError,
    expand,
    failures,
    first_failure,
    grade,
    grade_one,
    report_markdown,
    summary_csv,
    summary_markdown,
    without_timing,
    write_reports,
)
from nnlab.grade.problem import (
    Budget,
    Limits,
    Problem,
    ProblemError,
    load_problem,
    problem_from_dict,
)

__all__ = ["Budget", "Limits", "Problem", "ProblemError", "SubmissionError", "expand", "failures", "first_failure", "grade", "grade_one",
           "load_problem", "problem_from_dict", "report_markdown", "summary_csv", "summary_markdown",
           "without_timing", "write_reports"]

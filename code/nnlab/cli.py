"""The ``nnlab`` command: list, train and check a course's experiments; grade submissions.

The experiments are those registered by the modules named in ``[tool.nnlab] experiments``
of the nearest ``pyproject.toml`` (or ``--experiments``/``$NNLAB_EXPERIMENTS``); results go
to ``$NNLAB_RESULTS``, else the table's ``results``, else ``./results`` (see
:mod:`nnlab.project`).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

import nnlab
from nnlab import analyses, project, reproduction
from nnlab import experiments as E
from nnlab import results as store
from nnlab.fileio import NoSpace
from nnlab.runner import default_jobs, reproduce, run_experiment


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not a usage dump
        self.exit(2, f"nnlab: error: {message} (see `{self.prog} --help`)\n")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers like 0,1,2, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seed(s) given twice in {text!r}; give each seed once")
    return seeds


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _modules(text: str) -> list[str]:
    modules = [m.strip() for m in text.split(",") if m.strip()]
    if not modules:
        raise argparse.ArgumentTypeError("give a module name, e.g. --experiments mycourse.experiments")
    return modules


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nnlab", description="Train and check a course's networks (experiments registered "
                                          "by the modules named in [tool.nnlab] of pyproject.toml).")
    p.add_argument("--version", action="version", version=f"nnlab {nnlab.__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--experiments", type=_modules, metavar="MODULE[,MODULE]",
                        help="modules (or .py files) that register the experiments, instead of "
                             "$NNLAB_EXPERIMENTS or [tool.nnlab] experiments")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", parents=[common],
                   help="list the experiments, the state of their results, and where they are read and written")
    t = sub.add_parser("train", parents=[common], help="train an experiment's missing runs and store them, "
                                                       "or compute a stored analysis of runs (then the "
                                                       "experiment's analyses that are not current)")
    t.add_argument("name", nargs="?", help="experiment or analysis name (see `nnlab list`)")
    t.add_argument("--all", action="store_true", help="train every registered experiment, then compute every analysis")
    t.add_argument("--seeds", type=_seeds, help="comma-separated subset of the experiment's seeds")
    t.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    t.add_argument("--resume", action="store_true", help="continue interrupted runs from their checkpoints")
    t.add_argument("--fresh", action="store_true", help="retrain runs that are already stored")
    t.add_argument("--jobs", type=_positive, default=None,
                   help="independent runs trained in parallel processes, one thread each (CPU; "
                        "default: $NNLAB_JOBS, else one per core)")
    t.add_argument("--cluster", metavar="ADDRESS", default=None,
                   help="train each run as a task on the Ray cluster whose head is at ADDRESS (host:port, or "
                        "auto for the cluster this node joined; default: $NNLAB_CLUSTER); this command "
                        'still stores the results. Needs pip install "nnlab-course[cluster]"')
    r = sub.add_parser("results", help="inspect the results store")
    rsub = r.add_subparsers(dest="action", required=True, parser_class=_Parser)
    c = rsub.add_parser("check", parents=[common],
                        help="list missing, stale or damaged results and weights (exit 1 if any), and leftover files")
    c.add_argument("names", nargs="*", metavar="NAME", help="experiments to check (default: all)")
    v = rsub.add_parser("reproduce", parents=[common],
                        help="train stored runs again, alone, in a scratch store, and judge each against "
                             "its stored metrics: identical, equal to rounding, within seed noise or different; "
                             "exit 1 if any is worse than --tolerance")
    v.add_argument("name", help="experiment name")
    v.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default: every stored seed)")
    v.add_argument("--variants", type=_modules, metavar="VARIANT[,VARIANT]", help="variants (default: all)")
    v.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    v.add_argument("--tolerance", choices=reproduction.LEVELS[:-1], default="rounding",
                   help="the worst verdict that counts as reproduced for the exit status: identical (every "
                        "bit), rounding (default: accuracies equal, losses within "
                        f"{reproduction.ROUNDING:g} relative) or noise (within {reproduction.NOISE_STDS:g} "
                        "std of the variant's stored seeds)")
    s = rsub.add_parser("show", parents=[common],
                        help="print an experiment's table: per variant, the mean ± std over seeds of each "
                             "metric on validation and test, the seeds, the training time, and the variant "
                             "chosen on validation")
    s.add_argument("name", help="experiment name (see `nnlab list`)")
    s.add_argument("--csv", nargs="?", const="-", metavar="FILE",
                   help="write the table as CSV for a spreadsheet instead: to FILE if given, else to "
                        "standard output (columns variant, chosen, seeds, then <metric>_mean and "
                        "<metric>_std for each metric and for seconds)")
    k = rsub.add_parser("clean", parents=[common],
                        help="remove leftover temporary files and weights that no stored run points at")
    k.add_argument("names", nargs="*", metavar="NAME", help="experiments to clean (default: all)")
    g = sub.add_parser("grade", help="grade students' submissions for a problem, each in its own bubblewrap "
                                     "sandbox, and write per-submission and class reports")
    g.add_argument("problem", metavar="PROBLEM", help="the problem: a .toml definition, or module:attr naming an nnlab.grade.Problem")
    g.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                   help="a folder holding model.py (and weights.safetensors), a .py file, or a class "
                        "folder of such submissions")
    g.add_argument("--out", default="grades", help="folder for the reports (default: ./grades)")
    g.add_argument("--jobs", type=_positive, default=1, help="submissions graded at once (default: 1)")
    g.add_argument("--resume", action="store_true",
                   help="keep the reports in --out whose submission and problem are unchanged; grade the rest")
    g.add_argument("--cluster", metavar="ADDRESS",
                   help="grade on a Ray cluster (as `nnlab train --cluster`); each node needs bubblewrap and the data")
    g.add_argument("--require-isolation", action="store_true",
                   help="refuse to grade unless every protection (bubblewrap and a cgroup) is in force here")
    return p


def _grade(args) -> int:
    """Grade every submission; failing students are not an error, bad arguments are (exit 2)."""
    from nnlab import grade as G

    try:
        problem = G.load_problem(args.problem)
        reports = G.grade(problem, args.submissions, args.out, jobs=args.jobs, resume=args.resume,
                          require_isolation=args.require_isolation, cluster=args.cluster)
    except (G.ProblemError, G.SubmissionError) as exc:
        print(f"nnlab: error: {exc}", file=sys.stderr)
        return 2
    except G.SandboxUnavailable as exc:
        print(f"nnlab: error: {exc}", file=sys.stderr)
        return 1
    except G.GradingInterrupted as exc:
        again = " ".join(["nnlab grade", args.problem, *args.submissions, "--out", args.out, "--resume"])
        print(f"nnlab: grading interrupted: {exc}; their reports and the summary are in {args.out}. "
              f"Continue with: {again}", file=sys.stderr)
        return 130
    for r in reports:
        acc = (r.get("accuracy") or {}).get("mean")
        shown = "" if acc is None else f", accuracy {100 * acc:.2f}%"
        print(f"{r['submission']}: {'passed' if r['passed'] else 'not passed'} (score {r['score']:.2f}{shown})"
              + ("" if r["passed"] else f"; {G.first_failure(r)}"))
    passed = sum(r["passed"] for r in reports)
    print(f"{passed} of {len(reports)} submission(s) passed problem {problem.name}; reports in {args.out}")
    return 0


def _where(proj: project.Project) -> list[str]:
    source = {"nowhere": "none declared", "--experiments": "from --experiments",
              "NNLAB_EXPERIMENTS": "from $NNLAB_EXPERIMENTS"}.get(proj.experiments_from,
                                                                  f"from {proj.experiments_from}")
    rsource = {"NNLAB_RESULTS": "from $NNLAB_RESULTS", "default": "default: ./results"}.get(
        proj.results_from, f"from {proj.results_from}")
    return [f"experiments: {', '.join(proj.experiments) or '(none)'} ({source})",
            f"results:     {proj.results} ({rsource}{'' if proj.results.is_dir() else '; does not exist yet'})"]


def _list() -> int:
    proj = project.current()
    names = E.names()
    for line in _where(proj):
        print(line)
    if not names:
        print('no experiments registered: name the module that registers yours in pyproject.toml '
              '([tool.nnlab] experiments = ["mycourse.experiments"]) or pass --experiments MODULE')
        return 0
    print()
    for name in names:
        exp = E.get(name)
        st = store.status(name)
        # the weights' sha256, as `results check` verifies them (a quarter of a second for the book's)
        state = "damaged" if st.state in ("ok", "incomplete") and store.verify_weights(name) else st.state
        print(f"{name:22s} {state:10s} {len(exp.variants):3d} variant(s) x {len(exp.seeds)} seed(s)"
              f"  {exp.purpose}")
    for name in analyses.names():
        a = analyses.get(name)
        print(f"{name:22s} {analyses.status(name).state:10s} analysis of {', '.join(a.experiments)}  {a.purpose}")
    return 0


def _names(names: list[str]) -> list[str]:
    """The experiments and analyses named (all of them by default)."""
    if not names:
        return E.names() + analyses.names()
    return [n if analyses.is_analysis(n) else E.get(n).name for n in names]


def _problems(name: str) -> list[str]:
    """What is wrong with one stored result or analysis (empty when it is current and intact)."""
    if analyses.is_analysis(name):
        st = analyses.status(name)
        return [f"{st.state}: {st.detail}"] if st.state != "ok" else []
    st = store.status(name)
    problems = [f"{st.state}: {st.detail}"] if st.state != "ok" else []
    if st.state in ("ok", "incomplete"):
        problems += [f"damaged weights: {p}" for p in store.verify_weights(name)]
    return problems


def _check(names: list[str]) -> int:
    """Every stored result's state, the sha256 of every weights file, and leftover files."""
    names = _names(names)
    if not names:
        print("no experiments registered; nothing to check (see `nnlab list`)")
        return 0
    root = store.results_root()
    if not root.is_dir():
        print(f"the results folder {root} does not exist; train with `{project.cli_hint('nnlab train NAME')}` "
              "or point NNLAB_RESULTS at your results")
        return 1
    bad = 0
    for name in names:
        problems = _problems(name)
        for p in problems:
            print(f"{name}: {p}")
        bad += bool(problems)
        leftovers = store.debris(name)
        if leftovers:
            shown = ", ".join(str(p.relative_to(root)) for p in leftovers[:3])
            print(f"{name}: {len(leftovers)} leftover file(s) no stored run needs ({shown}"
                  f"{', ...' if len(leftovers) > 3 else ''}); remove them with "
                  f"`{project.cli_hint('nnlab results clean')}`")
    if not bad:
        print(f"all {len(names)} results present and current in {root}, every weights file intact")
    return 1 if bad else 0


def _verdict(r: dict) -> str:
    """One run's verdict in words: the level, and the numbers that decided it."""
    seeds = f"{r['spread_seeds']} stored seed{'s' if r['spread_seeds'] != 1 else ''}"

    def differences() -> str:
        return ", ".join(f"{m} stored {a!r}, now {b!r}"
                         + ("" if r["in_stds"][m] is None else f" ({r['in_stds'][m]:.2g} std of the {seeds})")
                         for m, (a, b) in r["differences"].items())

    if r["verdict"] == "identical":
        return "identical"
    if r["verdict"] == "rounding":
        metric, rel = r["largest_relative"]
        return f"equal to floating-point rounding (largest relative difference {rel:.1e}, {metric})"
    if r["verdict"] == "noise":
        return f"within seed noise: {differences()}"
    no_spread = "" if r["spread_seeds"] > 1 else "; one stored seed, so no seed spread to compare with"
    return f"DIFFERENT: {differences()}{no_spread}"


def _reproduce(args) -> int:
    rows = reproduce(args.name, seeds=args.seeds, variants=args.variants, device=args.device)
    for r in rows:
        cpu = r["cpu_capability"]
        was = r["stored_cpu_capability"] or "not recorded"
        note = "" if r["same"] or was == cpu else f" (stored run trained with CPU kernels {was}, this one {cpu})"
        print(f"{args.name} {r['variant']} seed={r['seed']} ({r['threads']} thread(s), {cpu}): {_verdict(r)}{note}")
    ok = sum(reproduction.reproduced(r["verdict"], args.tolerance) for r in rows)
    counts = ", ".join(f"{sum(r['verdict'] == level for r in rows)} {words}" for level, words in zip(
        reproduction.LEVELS, ("identical", "equal to rounding", "within seed noise", "different")))
    print(f"{ok} of {len(rows)} run(s) reproduced at tolerance {args.tolerance} ({counts})")
    return 0 if ok == len(rows) else 1


def _show(args) -> int:
    """An experiment's table, on the terminal or as CSV (to stdout, or atomically to a file)."""
    from nnlab import table
    from nnlab.fileio import atomic_write_bytes

    name = E.get(args.name).name
    if args.csv is None:
        print(table.text(name))
    elif args.csv == "-":
        table.write_csv(name, sys.stdout)
    else:
        buf = io.StringIO()
        table.write_csv(name, buf)
        atomic_write_bytes(Path(args.csv), buf.getvalue().encode("utf-8"))
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0


def _clean(names: list[str]) -> int:
    removed = [p for name in _names(names) for p in store.clean(name)]
    for p in removed:
        print(f"removed {p}")
    print(f"{len(removed)} leftover file(s) removed")
    return 0


def _writable(folder) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".nnlab-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write results to {folder} ({exc.strerror or exc}); point NNLAB_RESULTS or "
                         "[tool.nnlab] results at a folder you can write") from None


def _train(args) -> int:
    if bool(args.name) == bool(args.all):
        raise SystemExit("nnlab: error: give one experiment NAME or --all (see `nnlab train --help`)")
    if args.name and analyses.is_analysis(args.name):
        _writable(store.results_root())
        analyses.compute(args.name, fresh=args.fresh, log=lambda msg: print(msg, file=sys.stderr))
        return 0
    names = E.names() if args.all else [E.get(args.name).name]
    if not names:
        raise SystemExit("nnlab: error: no experiments registered (see `nnlab list`)")
    _writable(store.results_root())  # before any training: a run that cannot be stored is wasted
    cluster = (args.cluster if args.cluster is not None else os.environ.get("NNLAB_CLUSTER", "")).strip() or None
    if cluster:  # before anything trains: Ray is there, the address is reachable
        from nnlab.cluster import connect

        connect(cluster)
    jobs = 1 if cluster else args.jobs or default_jobs(args.device)
    times = {}
    t0 = time.perf_counter()
    for i, name in enumerate(names, 1):
        if args.all:
            print(f"== {i}/{len(names)} {name}", file=sys.stderr, flush=True)
        times[name] = run_experiment(name, seeds=args.seeds, device=args.device,
                                     resume=args.resume, fresh=args.fresh, jobs=jobs, cluster=cluster)
    _refresh_analyses(names, everything=args.all, fresh=args.fresh and args.all)
    if len(names) > 1:
        print("wall time per experiment:")
        for name, s in times.items():
            print(f"  {name:22s} {s / 60:6.1f} min")
        print(f"  {'total':22s} {(time.perf_counter() - t0) / 60:6.1f} min")
    return 0


def _refresh_analyses(trained: list[str], *, everything: bool, fresh: bool) -> None:
    """Compute the analyses of the experiments just trained that are not current (every
    analysis with ``everything``), once the results they read are all current."""
    for name in analyses.names() if everything else analyses.dependants(trained):
        if all(store.status(e).state == "ok" for e in analyses.get(name).experiments):
            analyses.compute(name, fresh=fresh, log=lambda msg: print(msg, file=sys.stderr))


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    project.set_experiment_modules(getattr(args, "experiments", None))
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (from `timeout`, a job scheduler, `kill`) stops training as Ctrl-C does:
        # queued runs are cancelled, workers are killed, finished runs stay stored
        previous = signal.signal(signal.SIGTERM, _interrupt)
    else:
        previous = None
    try:
        if args.command == "list":
            return _list()
        if args.command == "grade":
            return _grade(args)
        if args.command == "results":
            return {"check": lambda: _check(args.names), "clean": lambda: _clean(args.names),
                    "reproduce": lambda: _reproduce(args), "show": lambda: _show(args)}[args.action]()
        return _train(args)
    except E.UnknownVariant as exc:  # a misspelt --variants: a usage error
        print(f"nnlab: error: {exc}", file=sys.stderr)
        return 2
    except (store.ResultError, E.UnknownExperiment, project.ProjectError, ValueError, RuntimeError,
            NoSpace) as exc:
        print(f"nnlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnlab: interrupted; finished runs are stored, continue with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `nnlab list | head`: the reader has gone, nothing is wrong
        sys.stderr.close()
        return 0
    finally:
        project.set_experiment_modules(None)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

"""The ``nnlab`` command: list, train and check the registered experiments."""

from __future__ import annotations

import argparse
import sys
import time

from nnlab import experiments as E
from nnlab import results as store
from nnlab.runner import default_jobs, run_experiment


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
    return seeds


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nnlab", description="Train and check the networks of the deep-learning book.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list registered experiments and the state of their stored results")
    t = sub.add_parser("train", help="train an experiment's missing runs and store them")
    t.add_argument("name", nargs="?", help="experiment name (see `nnlab list`)")
    t.add_argument("--all", action="store_true", help="train every registered experiment")
    t.add_argument("--seeds", type=_seeds, help="comma-separated subset of the experiment's seeds")
    t.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    t.add_argument("--resume", action="store_true", help="continue interrupted runs from their checkpoints")
    t.add_argument("--fresh", action="store_true", help="retrain runs that are already stored")
    t.add_argument("--jobs", type=_positive, default=None,
                   help="independent runs trained in parallel processes, one thread each (CPU; "
                        "default: $NNLAB_JOBS, else one per core)")
    r = sub.add_parser("results", help="inspect the results store")
    rsub = r.add_subparsers(dest="action", required=True, parser_class=_Parser)
    rsub.add_parser("check", help="list missing, stale or damaged results; exit 1 if any")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            for name in E.names():
                exp = E.get(name)
                st = store.status(name)
                print(f"{name:22s} {st.state:10s} {len(exp.variants):3d} variant(s) x {len(exp.seeds)} seed(s)"
                      f"  {exp.purpose}")
            return 0
        if args.command == "results":
            bad = [st for st in (store.status(n) for n in E.names()) if st.state != "ok"]
            for st in bad:
                print(f"{st.name}: {st.state}: {st.detail}")
            if not bad:
                print(f"all {len(E.names())} results present and current")
            return 1 if bad else 0
        if args.command == "train":
            if bool(args.name) == bool(args.all):
                raise SystemExit("nnlab: error: give one experiment NAME or --all (see `nnlab train --help`)")
            names = E.names() if args.all else [E.get(args.name).name]
            jobs = args.jobs or default_jobs(args.device)
            times = {}
            t0 = time.perf_counter()
            for i, name in enumerate(names, 1):
                if args.all:
                    print(f"== {i}/{len(names)} {name}", file=sys.stderr, flush=True)
                times[name] = run_experiment(name, seeds=args.seeds, device=args.device,
                                             resume=args.resume, fresh=args.fresh, jobs=jobs)
            if len(names) > 1:
                print("wall time per experiment:")
                for name, s in times.items():
                    print(f"  {name:22s} {s / 60:6.1f} min")
                print(f"  {'total':22s} {(time.perf_counter() - t0) / 60:6.1f} min")
            return 0
    except (store.ResultError, E.UnknownExperiment, ValueError, RuntimeError) as exc:
        print(f"nnlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnlab: interrupted; finished runs are stored, continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

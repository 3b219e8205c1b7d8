"""The grading child: runs ONE submission's code, in its own folder, and nothing else.

:mod:`nnlab.grade.sandbox` starts ``python -m nnlab.grade._child --serve`` once per grading
session, with a minimal environment (and its own network namespace where Linux allows): a
server that imports torch once, then forks one child per submission (:func:`serve`), so a
submission does not pay for importing torch. Each child reads ``FOLDER/task.json``, sets
its own resource limits (CPU seconds, address space, file size) and installs an audit hook
*before* the submission's code is imported, then builds the model, checks its rules,
trains it (or loads its weights) and writes ``FOLDER/out/``: ``result.json``, test logits
per seed (``logits-seed<S>.npy``) and weights per seed (``weights-seed<S>.safetensors``);
``FOLDER/out/stage`` says how far it got, should it be killed. It never receives the test
labels, so accuracy is the parent's to compute.

The audit hook refuses, and records, opening files outside the folder (reading the Python
installation, the ``nnlab`` package and the data folder is allowed), listing or changing
such folders, sockets, subprocesses and loading native libraries. An audit hook is not a
security boundary on its own: the resource limits, the separate process without the test
labels, and (where the system allows) a network namespace are.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from pathlib import Path

PREFIX = "nnlab-sandbox: refused"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {"os.listdir": (0,), "os.scandir": (0,), "os.remove": (0,), "os.rmdir": (0,),
                "os.mkdir": (0,), "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (0, 1),
                "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,),
                "shutil.rmtree": (0,), "shutil.copyfile": (0, 1)}
_CHANGE_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.link", "os.symlink",
                  "os.chmod", "os.chown", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile"}
_REFUSED_EVENTS = {
    "socket.__new__": "opening a network socket", "socket.connect": "a network connection",
    "socket.getaddrinfo": "a network name lookup", "urllib.Request": "a web request",
    "subprocess.Popen": "starting a subprocess", "os.system": "running a shell command",
    "os.exec": "replacing the process", "os.posix_spawn": "starting a process",
    "os.spawn": "starting a process", "os.fork": "forking the process", "os.forkpty": "forking the process",
    "ctypes.dlopen": "loading a native library", "os.kill": "signalling another process",
    "os.killpg": "signalling a process group", "signal.pthread_kill": "signalling a thread",
}


class Guard:
    """The audit hook: what the submission may touch."""

    def __init__(self, folder: Path, readable: list[Path]):
        self.folder = str(folder.resolve())
        self.readable = sorted({str(Path(p).resolve()) for p in readable} | {self.folder})
        self.refused: list[str] = []
        self.active = False

    @staticmethod
    def _inside(path: str, roots) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def refuse(self, what: str) -> None:
        msg = f"{PREFIX} {what}"
        if len(self.refused) < 20:
            self.refused.append(what)
        try:
            os.write(2, (msg + "\n").encode(errors="replace"))
        except OSError:
            pass
        raise PermissionError(f"{msg} (the grader allows only the submission's own folder)")

    def _path(self, value) -> str | None:
        if isinstance(value, int) or value is None:
            return None
        try:
            raw = os.fsdecode(value)
        except TypeError:
            return None
        return os.path.realpath(os.path.join(self.folder, raw))

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            path = self._path(args[0])
            if path is None:
                return
            mode, flags = args[1] or "r", args[2] or 0
            writing = any(c in str(mode) for c in "wax+") or bool(flags & _WRITE_FLAGS)
            if writing and not self._inside(path, [self.folder]):
                self.refuse(f"writing {path}, outside the submission's folder")
            if not self._inside(path, self.readable) and path not in ("/dev/null", "/dev/urandom"):
                self.refuse(f"reading {path}, outside the submission's folder")
        elif event in _PATH_EVENTS:
            roots = [self.folder] if event in _CHANGE_EVENTS else self.readable
            for i in _PATH_EVENTS[event]:
                path = self._path(args[i]) if i < len(args) else None
                if path is not None and not self._inside(path, roots):
                    verb = "changing" if event in _CHANGE_EVENTS else "listing"
                    self.refuse(f"{verb} {path} ({event}), outside the submission's folder")
        elif event in _REFUSED_EVENTS or event.startswith("os.exec") or event.startswith("os.spawn"):
            self.refuse(f"{_REFUSED_EVENTS.get(event, 'starting a process')} ({event})")


def _limits(task: dict) -> None:
    lim = task["limits"]
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime) + lim["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    cap = vm + (lim["memory_mib"] << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 << 20, 512 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where_in_submission(exc: BaseException, sub: Path) -> str:
    """``model.py, line N`` of the deepest frame in the submission's own files."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(str(sub)):
            where = f" ({Path(frame.filename).name}, line {frame.lineno})"
    return where


def _stage(out: Path, stage: str, result: dict) -> None:
    """Say how far the child got, with what it found so far (read by the grader if the child
    is killed before it finishes)."""
    result["stage"] = stage
    with open(out / "stage", "w") as f:
        f.write(stage)
    with open(out / "result.json", "w") as f:
        f.write(json.dumps(result, sort_keys=True))


def main(folder: Path) -> int:
    """Grade the submission in ``folder`` (in this process: call it in a forked child)."""
    import importlib.metadata
    import importlib.util

    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    import nnlab
    from nnlab import rules as R
    from nnlab.grade.problem import Budget
    from nnlab.models import count_parameters
    from nnlab.train import DivergedError, TrainConfig, train

    task = json.loads((folder / "task.json").read_text())
    out = folder / "out"
    out.mkdir(exist_ok=True)
    result: dict = {"stage": "start", "refused": []}
    sub = folder / "submission"
    data = Path(task["data"])
    readable = [Path(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}]
    readable += [Path(p) for p in sys.path if p and Path(p).is_dir() and "site-packages" in p]
    readable += [Path(nnlab.__file__).parent, data]
    # installed distributions' metadata (dist-info / egg-info folders, wherever an editable
    # install keeps them): libraries read their entry points at import time
    readable += [Path(d._path) for d in importlib.metadata.distributions() if getattr(d, "_path", None)]
    guard = Guard(folder, readable)

    def finish(stage: str, error: str | None = None) -> int:
        result["stage"] = stage
        if error:
            result["error"] = error
        result["refused"] = list(guard.refused)
        result["final"] = True
        guard.active = False
        (out / "result.json").write_text(json.dumps(result, sort_keys=True))
        return 0

    torch.set_num_threads(task["threads"])
    arrays = {name: torch.from_numpy(np.load(data / f"{name}.npy"))
              for name in ("train_x", "train_y", "val_x", "val_y", "test_x") if (data / f"{name}.npy").exists()}
    rules = R.Rules(**{**task["rules"], "allowed": frozenset(task["rules"]["allowed"]),
                       "required": frozenset(task["rules"]["required"])})
    shape, classes = tuple(task["input_shape"]), task["num_classes"]
    os.environ.update(HOME=str(folder), TMPDIR=str(folder))
    os.chdir(folder)
    _stage(out, "load", result)
    _limits(task)
    sys.addaudithook(guard)
    sys.path.insert(0, str(sub))
    guard.active = True

    # 1. load model.py
    try:
        spec = importlib.util.spec_from_file_location("model", sub / "model.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["model"] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        return finish("load", f"syntax error in {Path(exc.filename or 'model.py').name}, line {exc.lineno}: {exc.msg}")
    except ImportError as exc:
        what = f"imports {exc.name}, which is not installed" if exc.name else f"could not import: {_line(exc)}"
        return finish("load", f"model.py {what} where submissions are graded")
    except MemoryError:
        return finish("memory", "loading model.py ran out of memory (MemoryError)")
    except BaseException as exc:  # noqa: BLE001  (anything the student's code raises is reported)
        return finish("load", f"model.py failed when imported{_where_in_submission(exc, sub)}: {_line(exc)}")
    entry = getattr(module, task["entry"], None)
    if not callable(entry):
        return finish("load", f"model.py has no function {task['entry']}() that returns the model")

    def built(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = entry()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{task['entry']}() returned a {type(model).__name__}, not a torch.nn.Module")
        return model.float()

    # 2. build and check the rules, on what the model runs
    seeds = task["seeds"] if task["mode"] != "weights" else task["seeds"][:1]
    stage = "build"
    _stage(out, stage, result)
    try:
        model = built(seeds[0])
        stage = "rules"
        _stage(out, stage, result)
        found = R.violations(model, rules, input_shape=shape)
        result.update(violations=found, parameters=count_parameters(model),
                      parameter_names=sorted(n for n, _ in model.named_parameters()))
        try:
            result["hidden_units"] = R.hidden_units(model, input_shape=shape)
            result["hidden_layers"] = R.hidden_layers(model, input_shape=shape)
        except R.RuleViolation:
            result["hidden_units"] = result["hidden_layers"] = None
        if found:
            return finish("rules")
        stage = "shape"
        _stage(out, stage, result)
        model.eval()
        with torch.no_grad():
            probe = model(arrays["test_x"][:2])
        if not isinstance(probe, torch.Tensor) or tuple(probe.shape) != (2, classes):
            got = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
            return finish("shape", f"for 2 images the model outputs {got}, not (2, {classes}): one row of "
                                   f"{classes} class scores per image")
    except MemoryError:
        return finish("memory", f"MemoryError during {stage}")
    except BaseException as exc:  # noqa: BLE001
        return finish(stage, f"{stage} failed{_where_in_submission(exc, sub)}: {_line(exc)}")

    # 3. the recipe
    recipe = None
    if task["mode"] != "weights":
        base = dict(task["recipe"], milestones=tuple(task["recipe"].get("milestones", ())))
        recipe_d = dict(base)
        if task["mode"] == "submitted" and callable(getattr(module, "recipe", None)):
            _stage(out, "recipe", result)
            try:
                given = module.recipe()
                if not isinstance(given, dict):
                    raise TypeError(f"recipe() must return a dict of TrainConfig fields, got {type(given).__name__}")
                recipe_d.update(given)
                recipe_d["milestones"] = tuple(recipe_d.get("milestones", ()))
                recipe = TrainConfig(**recipe_d)
            except BaseException as exc:  # noqa: BLE001
                return finish("recipe", f"recipe() gave no usable training recipe: {_line(exc)}")
            over = Budget("submitted", TrainConfig(**base), **task["budget_limits"]).recipe_problems(recipe)
            result["recipe"] = {**recipe.to_dict(), "threads": recipe.threads}
            if over:  # refused before any training: the grader checks again
                return finish("recipe", "the recipe exceeds the budget: " + "; ".join(over))
        else:
            recipe = TrainConfig(**recipe_d)
        result["recipe"] = {**recipe.to_dict(), "threads": recipe.threads}

    # 4. per seed: train (or load the weights), then the test logits and the weights
    result["seeds"] = {}
    for i, seed in enumerate(seeds):
        try:
            stage = "build"
            if i > 0:
                model = built(seed)
            run: dict = {}
            if task["mode"] == "weights":
                stage = "weights"
                _stage(out, stage, result)
                try:
                    model.load_state_dict(load_file(str(sub / "weights.safetensors")))
                except BaseException as exc:  # noqa: BLE001
                    return finish("weights", f"weights.safetensors does not fit the model: {_line(exc)}")
            else:
                stage = "train"
                _stage(out, stage, result)
                t0 = time.perf_counter()
                res = train(model, recipe, seed, data={"train": (arrays["train_x"], arrays["train_y"]),
                                                       "val": (arrays["val_x"], arrays["val_y"])},
                            device="cpu", progress=False)
                run["seconds"] = time.perf_counter() - t0
                run["train_loss"] = [float(v) for v in res.history.get("train_loss", [])]
            stage = "evaluate"
            _stage(out, stage, result)
            model.eval()
            x = arrays["test_x"]
            with torch.no_grad():
                logits = torch.cat([model(x[j:j + 1000]) for j in range(0, len(x), 1000)])
            np.save(out / f"logits-seed{seed}.npy", logits.detach().float().numpy())
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(out / f"weights-seed{seed}.safetensors"))
            result["seeds"][str(seed)] = run
        except DivergedError as exc:
            why = str(exc).strip().removeprefix("training diverged: ").split(";")[0]
            return finish("diverged", f"training with seed {seed} diverged: {why}")
        except MemoryError:
            return finish("memory", f"MemoryError during {stage}")
        except RuntimeError as exc:
            if "can't allocate memory" in str(exc) or "not enough memory" in str(exc):
                return finish("memory", f"could not allocate memory during {stage}")
            return finish(stage, f"{stage} failed{_where_in_submission(exc, sub)}: {_line(exc)}")
        except BaseException as exc:  # noqa: BLE001
            return finish(stage, f"{stage} failed{_where_in_submission(exc, sub)}: {_line(exc)}")
    return finish("done")


def _child(folder: Path) -> None:
    """In a forked child: own stdio, then grade; never returns."""
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDWR)
        err = os.open(folder / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(err, 2)
        os.close(null)
        os.close(err)
        # fresh stream objects: a lock held by a server thread at fork time stays held in its copy
        sys.stdin = open(os.devnull)  # noqa: SIM115
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        os.setsid()
        code = main(folder)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """Read ``{"id", "folder"}`` lines on stdin; fork a child per line; answer
    ``{"id", "pid"}`` at once and ``{"id", "status"}`` when the child ends."""
    import numpy  # noqa: F401  (imported once, here, for every child)
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import nnlab.grade.problem  # noqa: F401
    import nnlab.models  # noqa: F401
    import nnlab.rules  # noqa: F401
    import nnlab.train  # noqa: F401

    lock = threading.Lock()

    def reply(obj: dict) -> None:
        with lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def wait(ident, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        reply({"id": ident, "status": os.waitstatus_to_exitcode(status)})

    reply({"ready": True})
    for line in sys.stdin:
        req = json.loads(line)
        with lock:  # never fork while a reply is half written
            pid = os.fork()
        if pid == 0:
            _child(Path(req["folder"]))
        reply({"id": req["id"], "pid": pid})
        threading.Thread(target=wait, args=(req["id"], pid), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        sys.exit("usage: python -m nnlab.grade._child --serve (started by nnlab.grade)")

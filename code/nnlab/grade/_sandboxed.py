"""What runs inside a grading sandbox: one submission's code, and nothing the grader trusts.

:mod:`nnlab.grade.sandbox` starts ``python -I -B -m nnlab.grade._sandboxed TASK`` inside
bubblewrap, with the submission read-only at ``/submission`` and no data at all. This
program gives up root first when it was started as root (the sandbox's own uid), lowers
its address-space limit once torch is imported, then imports ``model.py``, calls its entry
function under the problem's seed, reads ``recipe()`` when the problem lets submissions
choose one, and exports the model twice with ``torch.export.export`` (training and
evaluation mode). It writes one JSON document to its original standard output: the two
graphs of ATen operations, the model's tensors (names, shapes, dtypes; values only of
buffers and constants) and the recipe. Everything else (training, rules, test logits)
happens outside, on what this document says, which the grader checks as hostile input.
"""

from __future__ import annotations

import base64
import json
import math
import os
import resource
import sys
import traceback

FORMAT = "nnlab-graph/1"
EXAMPLE_BATCH = 4


def _drop_root(uid: int | None) -> None:
    if uid is None:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("nnlab sandbox: could not give up root")


def _limit_memory(memory_mib: int) -> None:
    """Address space: what the interpreter and torch already map, plus the problem's limit."""
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    cap = mapped + (memory_mib << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    """`` (model.py, line N)`` for the deepest frame in the submission's own files."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("/submission/"):
            where = f" ({os.path.basename(frame.filename)}, line {frame.lineno})"
    return where


class Failed(Exception):
    """A stage failed; ``stage`` and a one-line reason go into the output."""

    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def _load(entry: str):
    import importlib.util

    sys.path.insert(0, "/submission")
    try:
        spec = importlib.util.spec_from_file_location("model", "/submission/model.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["model"] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise Failed("load", f"syntax error in {os.path.basename(exc.filename or 'model.py')}, "
                             f"line {exc.lineno}: {exc.msg}") from None
    except ImportError as exc:
        what = f"imports {exc.name}, which is not installed" if exc.name else f"could not import: {_line(exc)}"
        raise Failed("load", f"model.py {what} where submissions are graded") from None
    except MemoryError:
        raise Failed("memory", "importing model.py ran out of memory (MemoryError)") from None
    except BaseException as exc:  # noqa: BLE001  (anything the student's code raises is reported)
        raise Failed("load", f"model.py failed when imported{_where(exc)}: {_line(exc)}") from None
    if not callable(getattr(module, entry, None)):
        raise Failed("load", f"model.py has no function {entry}() that returns the model")
    return module


def _build(module, entry: str, seed: int):
    import torch

    torch.manual_seed(seed)
    try:
        model = getattr(module, entry)()
    except MemoryError:
        raise Failed("memory", f"{entry}() ran out of memory (MemoryError)") from None
    except BaseException as exc:  # noqa: BLE001
        raise Failed("build", f"{entry}() failed{_where(exc)}: {_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise Failed("build", f"{entry}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model.float()


def _recipe(module) -> dict | None:
    given = getattr(module, "recipe", None)
    if not callable(given):
        return None
    try:
        recipe = given()
    except BaseException as exc:  # noqa: BLE001
        raise Failed("recipe", f"recipe() failed{_where(exc)}: {_line(exc)}") from None
    if not isinstance(recipe, dict):
        raise Failed("recipe", f"recipe() must return a dict of TrainConfig fields, got {type(recipe).__name__}")
    return recipe


def _value(v):
    """A node argument as JSON (nodes by name; dtypes and devices by name)."""
    import torch
    from torch import fx

    if isinstance(v, fx.Node):
        return {"node": v.name}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    for kind in (torch.dtype, torch.memory_format, torch.layout):
        if isinstance(v, kind):
            return {kind.__name__: str(v).removeprefix("torch.")}
    if isinstance(v, torch.device):
        return {"device": v.type}
    raise TypeError(f"an argument of type {type(v).__name__} cannot be written down")


def _target(node) -> str:
    t = node.target
    if hasattr(t, "_schema") or type(t).__name__ == "OpOverload":
        return str(t)
    return f"{getattr(t, '__module__', '') or ''}.{getattr(t, '__name__', str(t))}"


def _graph(gm) -> list[dict]:
    nodes = []
    for n in gm.graph.nodes:
        if n.op == "call_module" and not n.users and str(n.target) == "_guards_fn":
            continue  # export's own input check; the grader checks shapes itself
        if n.op == "placeholder":
            nodes.append({"name": n.name, "op": "input"})
        elif n.op == "get_attr":
            nodes.append({"name": n.name, "op": "tensor", "target": str(n.target)})
        elif n.op == "call_function":
            nodes.append({"name": n.name, "op": "call", "target": _target(n),
                          "args": _value(list(n.args)), "kwargs": {k: _value(v) for k, v in n.kwargs.items()}})
        elif n.op == "output":
            nodes.append({"name": n.name, "op": "output", "args": _value(list(n.args))})
        else:
            raise TypeError(f"the exported graph calls {n.op} {n.target}")
    return nodes


def _tensor(t, kind: str, with_data: bool) -> dict:
    d = {"kind": kind, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
    if with_data:
        d["data"] = base64.b64encode(t.detach().contiguous().cpu().numpy().tobytes()).decode()
    return d


def _export(model, shape: list[int]) -> dict:
    """Both graphs and the tensors they read."""
    import torch

    example = torch.randn(EXAMPLE_BATCH, *shape)
    batch = torch.export.Dim("batch", min=2, max=1 << 16)
    graphs, tensors = {}, {}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        try:
            gm = torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=False).module()
        except MemoryError:
            raise Failed("memory", "exporting the model ran out of memory (MemoryError)") from None
        except BaseException as exc:  # noqa: BLE001
            raise Failed("export", f"torch.export could not trace the model in {mode} mode{_where(exc)}: "
                                   f"{_line(exc)}") from None
        graphs[mode] = _graph(gm)
        params = dict(gm.named_parameters(remove_duplicate=False))
        buffers = dict(gm.named_buffers(remove_duplicate=False))
        saved = set(gm.state_dict(keep_vars=True))
        for node in gm.graph.nodes:
            name = str(node.target)
            if node.op != "get_attr" or name in tensors:
                continue
            if name in params:
                tensors[name] = _tensor(params[name], "parameter", False)
            elif name in buffers:
                kind = "buffer" if name in saved else "constant"
                tensors[name] = _tensor(buffers[name], kind, True)
            else:
                tensors[name] = _tensor(_attr(gm, name), "constant", True)
    return {"graphs": graphs, "tensors": tensors}


def _attr(gm, name: str):
    obj = gm
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _stage(name: str) -> None:
    """Say how far it got (read by the grader only to word a message, should it be stopped)."""
    os.write(2, f"nnlab-sandbox: stage {name}\n".encode())


def run(task: dict) -> dict:
    """Everything the sandbox does for one submission; raises :class:`Failed`."""
    import torch

    torch.set_num_threads(task["threads"])
    _limit_memory(task["memory_mib"])
    _stage("load")
    module = _load(task["entry"])
    _stage("build")
    model = _build(module, task["entry"], task["seed"])
    out: dict = {"format": FORMAT, "input_shape": task["input_shape"]}
    if task["mode"] == "submitted":
        _stage("recipe")
        out["recipe"] = _recipe(module)
    _stage("export")
    out.update(_export(model, task["input_shape"]))
    return out


def main() -> int:
    task = json.loads(sys.argv[1])
    _drop_root(task.get("uid"))
    out_fd = os.dup(1)
    os.dup2(2, 1)  # the submission's prints go to the log, not into the result
    try:
        doc = run(task)
    except Failed as exc:
        doc = {"format": FORMAT, "failed": {"stage": exc.stage, "reason": exc.reason}}
    except MemoryError:
        doc = {"format": FORMAT, "failed": {"stage": "memory", "reason": "ran out of memory (MemoryError)"}}
    data = json.dumps(doc).encode()
    with os.fdopen(out_fd, "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())

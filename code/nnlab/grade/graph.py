"""A submitted model as data: the exported graph a sandbox returns, read without trusting it.

The sandbox (``nnlab.grade._sandboxed``) writes a JSON document: two graphs of ATen
operations (training and evaluation mode), as ``torch.export.export`` traced them, and
the model's tensors. :func:`read_graph` turns it back into an :class:`ExportedNet`, an
``nn.Module`` the grader can train and evaluate, without importing or unpickling anything
the student wrote: every operation must be one of :data:`OPS`, every argument plain data,
every tensor a declared shape and dtype, and a dry run on the ``meta`` device bounds each
intermediate result. It also returns the model's :class:`Facts`, what it runs (layer types,
hidden units, sizes), read from the graphs; :mod:`nnlab.grade.checks` checks a problem's
rules on them.
"""

from __future__ import annotations

import base64
import math
import re
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx, nn

from nnlab.grade import ops as O
from nnlab.grade.ops import LAYER_OPS, LAYER_TENSORS, LINEAR_MAPS, OPS, OTHER_OPS

FORMAT = "nnlab-graph/1"
MAX_NODES = 4000
MAX_TENSORS = 2000
MAX_ELEMENTS = 1 << 28          # any one tensor, parameters included
MAX_DATA_ELEMENTS = 1 << 20     # values carried in the document (buffers and constants)
MAX_NUMBERS = 16                # numbers written into one graph's operations (see _numbers)
_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*\Z")
DTYPES = {n: getattr(torch, n) for n in ("float32", "float64", "float16", "bfloat16", "int64", "int32",
                                        "int16", "int8", "uint8", "bool")}


class GraphError(ValueError):
    """What a sandbox returned cannot be used as a model; the message is for the student."""


@dataclass
class TensorSpec:
    """One tensor of the model: a parameter, a buffer (saved with the weights) or a constant."""

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    data: np.ndarray | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _want(cond: bool, message: str) -> None:
    if not cond:
        raise GraphError(message)


def _int(value, what: str, low: int = 0, high: int = 1 << 31) -> int:
    _want(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
          f"the exported model is malformed: {what} is not an integer in [{low}, {high}]")
    return value


def _tensor_spec(name: str, d) -> TensorSpec:
    _want(isinstance(name, str) and bool(_NAME.match(name)) and len(name) < 200,
          f"the exported model names a tensor {str(name)[:60]!r}, which is not a valid attribute path")
    _want(isinstance(d, dict) and d.get("kind") in ("parameter", "buffer", "constant"),
          f"the exported model's tensor {name} has no valid kind")
    shape = d.get("shape")
    _want(isinstance(shape, list) and len(shape) <= 8, f"the exported model's tensor {name} has no valid shape")
    shape = tuple(_int(s, f"a dimension of {name}") for s in shape)
    _want(math.prod(shape) <= MAX_ELEMENTS, f"tensor {name} has {math.prod(shape):,} elements, more than the "
                                            f"grader accepts ({MAX_ELEMENTS:,})")
    _want(d.get("dtype") in DTYPES, f"tensor {name} has dtype {str(d.get('dtype'))[:20]!r}, which the grader "
                                    f"does not accept ({', '.join(DTYPES)})")
    spec = TensorSpec(name, d["kind"], shape, DTYPES[d["dtype"]])
    if spec.kind == "parameter":
        _want(spec.dtype.is_floating_point, f"parameter {name} is not floating point")
        return spec
    _want(isinstance(d.get("data"), str), f"the exported model carries no values for {spec.kind} {name}")
    try:
        raw = base64.b64decode(d["data"], validate=True)
    except ValueError:
        raise GraphError(f"the values of {spec.kind} {name} are not valid base64") from None
    itemsize = torch.empty((), dtype=spec.dtype).element_size()
    _want(len(raw) == spec.numel * itemsize, f"the values of {spec.kind} {name} do not match its shape")
    np_dtype = torch.empty((), dtype=spec.dtype).numpy().dtype if spec.dtype != torch.bfloat16 else np.uint16
    spec.data = np.frombuffer(raw, dtype=np_dtype).reshape(shape).copy()
    return spec


def _arg(value, env: dict, depth: int = 0):
    """A JSON argument back as a Python value, nodes looked up in ``env`` (earlier nodes only)."""
    _want(depth < 6, "the exported model's arguments are nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str):
            _want(len(value) <= 40, "the exported model has a string argument that is too long")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        _want(len(value) <= 64, "the exported model has an argument list that is too long")
        return [_arg(v, env, depth + 1) for v in value]
    _want(isinstance(value, dict) and len(value) == 1, "the exported model has an argument the grader cannot read")
    (key, v), = value.items()
    if key == "node":
        _want(v in env, f"the exported model refers to {str(v)[:40]!r} before it is computed")
        return env[v]
    if key == "float":
        _want(v in ("inf", "-inf", "nan"), "the exported model has a malformed number")
        return float(v)
    if key == "dtype":
        _want(v in DTYPES, f"the exported model converts to dtype {str(v)[:20]!r}")
        return DTYPES[v]
    if key == "device":
        _want(v == "cpu", f"the exported model moves a tensor to {str(v)[:20]!r}; the grader runs it on the CPU")
        return torch.device("cpu")
    if key == "memory_format":
        _want(v in ("contiguous_format", "preserve_format", "channels_last"), "unknown memory format")
        return getattr(torch, v)
    if key == "layout":
        _want(v == "strided", "unknown tensor layout")
        return torch.strided
    raise GraphError(f"the exported model has an argument of unknown kind {str(key)[:20]!r}")


def _build_graph(nodes, tensors: dict[str, TensorSpec], mode: str) -> tuple[fx.Graph, dict, list[tuple]]:
    """The fx graph of one mode, with placeholders ``x, *tensors``; also its tensor
    placeholders (name -> node) and its calls as ``(target, node, args)`` for the rule check."""
    _want(isinstance(nodes, list) and 2 <= len(nodes) <= MAX_NODES,
          f"the exported {mode} graph is missing or has more than {MAX_NODES} operations")
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    reads = [n.get("target") for n in nodes if isinstance(n, dict) and n.get("op") == "tensor"]
    _want(all(r in tensors for r in reads), f"the exported {mode} graph reads a tensor it does not declare")
    x = graph.placeholder("x")
    placeholders = {name: graph.placeholder(f"t{i}") for i, name in enumerate(dict.fromkeys(reads))}
    calls, inputs, done = [], 0, False
    for n in nodes:
        _want(isinstance(n, dict) and isinstance(n.get("name"), str) and len(n["name"]) < 100
              and n["name"] not in env and not done, f"the exported {mode} graph is malformed")
        op = n.get("op")
        if op == "input":
            inputs += 1
            env[n["name"]] = x
        elif op == "tensor":
            env[n["name"]] = placeholders[n["target"]]
        elif op == "call":
            target = n.get("target")
            _want(target in OPS, f"the model runs {str(target)[:60]}, an operation the grader does not run "
                                 "(see nnlab.grade.ops)")
            args, kwargs = _arg(n.get("args"), env), n.get("kwargs")
            _want(isinstance(args, list) and isinstance(kwargs, dict) and len(kwargs) <= 16,
                  f"the exported {mode} graph is malformed")
            kwargs = {str(k): _arg(v, env) for k, v in kwargs.items()}
            _by_position(target, kwargs, mode)
            node = graph.call_function(OPS[target], tuple(args), kwargs)
            env[n["name"]] = node
            calls.append((target, node, args))
        elif op == "output":
            out = _arg(n.get("args"), env)
            while isinstance(out, list) and len(out) == 1:
                out = out[0]
            _want(isinstance(out, fx.Node), f"the model's {mode} forward must return one tensor of class scores")
            graph.output(out)
            done = True
        else:
            raise GraphError(f"the exported {mode} graph has a node of unknown kind")
    _want(inputs == 1 and done, f"the exported {mode} graph must take one input and return one tensor")
    return graph, placeholders, calls


def _checked(target: str) -> bool:
    """Does the rule check read this operation's arguments (tensor slots, modes, rates)?"""
    kind = LAYER_OPS.get(target, "")
    return target in O.DROPOUTS or kind in LAYER_TENSORS or kind == "BatchNorm"


def _by_position(target: str, kwargs: dict, mode: str) -> None:
    """The rule check reads a layer's arguments by position: refuse them passed by keyword
    (torch.export passes them by position)."""
    if not kwargs or not _checked(target):
        return
    named = {a.name for a in OPS[target]._schema.arguments if not a.kwarg_only}
    for key in kwargs:
        _want(key not in named, f"the model's {mode} graph passes {target}'s argument {key[:20]!r} by keyword; "
                                "export layers as torch.nn modules, which pass them by position")


def _mode_of(target: str, node: fx.Node, args: list, mode: str) -> None:
    """A dropout or BatchNorm runs in the graph's own mode, as its torch.nn module exports it:
    no noise in the evaluation graph, batch statistics only while training (or where the layer
    keeps no running statistics), and a BatchNorm's momentum and eps plain numbers."""
    train = mode == "train"
    if target in O.DROPOUTS:
        flag = args[2] if len(args) > 2 else None
        _want(flag is train, f"the model's {mode} graph runs {target} with train={flag}: dropout must be active "
                             f"in the train graph only (use nn.Dropout, or F.dropout(x, p, self.training))")
    elif target == "aten.batch_norm.default":
        _want(len(args) >= 8, f"the model's {mode} graph calls {target} without its mode, momentum and eps")
        flag, momentum, eps = args[5:8]
        stateless = args[3] is None and args[4] is None
        _want(flag is (train or stateless), f"the model's {mode} graph runs {target} with training={flag}: "
              "a BatchNorm normalises with batch statistics in the train graph and with its own running "
              "statistics in the eval graph (use nn.BatchNorm, whose mode the grader sets)")
        _want(all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (momentum, eps))
              and 0 <= momentum <= 1 and 0 < eps <= 1,
              f"the model's {mode} graph runs {target} with momentum {str(momentum)[:20]} and eps "
              f"{str(eps)[:20]}: nn.BatchNorm takes a momentum in [0, 1] and an eps in (0, 1]")


def _literals(value, ints: bool):
    """The numbers written in one (already validated) JSON argument: floats, and integers
    where ``ints`` (in arithmetic, where an integer is a value rather than a shape)."""
    if isinstance(value, float) or (ints and isinstance(value, int) and not isinstance(value, bool)):
        yield float(value)
    elif isinstance(value, list):
        for v in value:
            yield from _literals(v, ints)
    elif isinstance(value, dict) and "float" in value:
        yield float(value["float"])


def _plain(target: str, pos, value: float) -> bool:
    if value in O.PLAIN_NUMBERS or value in O.LAYER_NUMBERS.get((target, pos), ()):
        return True
    return target in O.DROPOUTS and pos in (1, "p") and value in O.DROPOUT_RATES


def _numbers(nodes: list, mode: str) -> None:
    """Refuse a graph that writes more than ``MAX_NUMBERS`` numbers into its operations,
    besides 0, ±1, 0.5, 2, common dropout rates and the layers' default constants: numbers in a
    graph are neither counted nor set by the grader, so they could carry trained weights (any
    other dropout rate counts once, however many layers use it)."""
    found, rates = [], set()
    for n in nodes:
        if n.get("op") != "call":
            continue
        target = n["target"]
        for pos, value in [*enumerate(n["args"]), *n["kwargs"].items()]:
            new = [v for v in _literals(value, target in O.VALUE_OPS) if not _plain(target, pos, v)]
            if target in O.DROPOUTS and pos in (1, "p"):
                new = [v for v in new if v not in rates]
                rates.update(new)
            found += new
    _want(len(found) <= MAX_NUMBERS,
          f"the model's {mode} graph writes {len(found):,} numbers into its operations "
          f"({', '.join(format(v, '.6g') for v in found[:3])}, ...), more than the {MAX_NUMBERS} the grader "
          "accepts besides 0, ±1, 0.5, 2, common dropout rates and the layers' defaults: numbers the model computes with must be "
          "parameters or buffers, which the rules count and the grader sets")


class ExportedNet(nn.Module):
    """A submitted model rebuilt from its graphs: its tensors are this module's own, under
    the names the submission gave them (so ``state_dict`` matches its ``weights.safetensors``);
    ``forward`` runs the training graph in training mode and the evaluation graph otherwise."""

    def __init__(self, tensors: dict[str, TensorSpec], graphs: dict[str, tuple[fx.Graph, list[str]]]):
        super().__init__()
        self.specs = tensors
        for spec in tensors.values():
            try:
                self._declare(spec)
            except (KeyError, TypeError, AttributeError) as exc:
                raise GraphError(f"the exported model's tensor {spec.name!r} cannot be declared ({exc})") from None
        self.__dict__["_graphs"] = {mode: (fx.GraphModule(nn.Module(), g), names) for mode, (g, names) in graphs.items()}

    def _declare(self, spec: TensorSpec) -> None:
        *path, leaf = spec.name.split(".")
        owner = self
        for part in path:
            child = owner._modules.get(part)
            if child is None:
                _want(part not in owner._parameters and part not in owner._buffers,
                      f"the exported model uses {spec.name!r} both as a tensor and as a module")
                child = nn.Module()
                owner.add_module(part, child)
            owner = child
        _want(leaf not in owner._modules and leaf not in owner._parameters and leaf not in owner._buffers,
              f"the exported model declares {spec.name!r} twice")
        empty = torch.empty(spec.shape, dtype=spec.dtype, device="meta")
        if spec.kind == "parameter":
            owner.register_parameter(leaf, nn.Parameter(empty))
        else:
            owner.register_buffer(leaf, empty, persistent=spec.kind == "buffer")

    def _owner(self, name: str) -> tuple[nn.Module, str]:
        *path, leaf = name.split(".")
        owner = self
        for part in path:
            owner = owner._modules[part]
        return owner, leaf

    def tensor(self, name: str) -> torch.Tensor:
        owner, leaf = self._owner(name)
        return owner._parameters[leaf] if leaf in owner._parameters else owner._buffers[leaf]

    deadline: float | None = None  # time.monotonic() past which forward refuses to run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError("the time allowed for training has run out")
        gm, names = self._graphs["train" if self.training else "eval"]
        return gm(x, *[self.tensor(n) for n in names])

    def materialise(self) -> None:
        """Real (CPU) storage for every tensor; buffers and constants get their carried values."""
        self.to_empty(device="cpu")
        with torch.no_grad():
            for spec in self.specs.values():
                if spec.data is not None:
                    value = torch.from_numpy(spec.data)
                    self.tensor(spec.name).copy_(value.view(spec.dtype) if spec.dtype == torch.bfloat16 else value)


@dataclass
class Facts:
    """What the model runs, read from its graphs: the numbers a report certifies."""

    layers: list[str]                      # layer types, in the order the training graph runs them
    other_ops: list[str]                   # operations that name no layer
    hidden: list[int]                      # width of each hidden linear layer
    parameters: int                        # elements of the parameters
    stored: int                            # elements of buffers and constants
    loose: list[str] = field(default_factory=list)   # tensors read outside a layer
    linear_maps: list[str] = field(default_factory=list)  # matrix products outside nn.Linear
    products: list[str] = field(default_factory=list)     # computed tensors multiplied, or as a layer's weight
    roles: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)  # tensor -> (layer, role, weight)
    unused: set[str] = field(default_factory=set)    # tensors no operation reads
    activations: int = 0                             # elements the training graph computes per example
    widest: int = 0                                  # elements of the largest result of the eval graph, per example

    @property
    def hidden_units(self) -> int:
        return sum(self.hidden)

    @property
    def hidden_layers(self) -> int:
        return len(self.hidden)

    @property
    def size(self) -> int:
        return self.parameters + self.stored


def _shapes(net: ExportedNet, mode: str, batch: int, shape: tuple[int, ...]) -> dict[fx.Node, torch.Tensor]:
    """Run one graph on the meta device (no data, no arithmetic): every node's result."""
    gm, names = net._graphs[mode]
    seen: dict[fx.Node, torch.Tensor] = {}

    class Record(fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if isinstance(result, torch.Tensor):
                _want(result.numel() <= MAX_ELEMENTS, f"the model's {mode} graph makes a tensor of "
                                                      f"{result.numel():,} elements at batch size {batch}")
                seen[n] = result
            return result

    args = [torch.empty((batch, *shape), device="meta")] + [net.tensor(n) for n in names]
    try:
        out = Record(gm).run(*args)
    except GraphError as exc:  # raised in Record, with fx's note on the node appended: one line
        raise GraphError(str(exc).splitlines()[0]) from None
    except Exception as exc:  # noqa: BLE001  (a graph that does not run is the student's problem)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise GraphError(f"the exported {mode} graph does not run on a batch of {batch}: {first}") from None
    seen[None] = out
    return seen


def read_graph(doc, input_shape: tuple[int, ...], classes: int) -> tuple[ExportedNet, Facts]:
    """The model a sandbox described, rebuilt and checked: it takes a batch of ``input_shape``
    and returns ``(batch, classes)`` scores in both modes. Raises :class:`GraphError`."""
    _want(isinstance(doc, dict) and doc.get("format") == FORMAT, "the sandbox returned no exported model")
    raw = doc.get("tensors")
    _want(isinstance(raw, dict) and len(raw) <= MAX_TENSORS, "the exported model's tensor list is malformed")
    tensors = {name: _tensor_spec(name, d) for name, d in raw.items()}
    carried = sum(t.numel for t in tensors.values() if t.data is not None)
    _want(carried <= MAX_DATA_ELEMENTS, f"the model carries {carried:,} numbers in buffers or constants, "
                                        f"more than the {MAX_DATA_ELEMENTS:,} the grader accepts")
    graphs = doc.get("graphs")
    _want(isinstance(graphs, dict) and set(graphs) == {"train", "eval"}, "the exported model lacks its graphs")
    built = {mode: _build_graph(graphs[mode], tensors, mode) for mode in ("train", "eval")}
    for mode in ("train", "eval"):
        _numbers(graphs[mode], mode)
        for target, node, args in built[mode][2]:
            _mode_of(target, node, args, mode)
    net = ExportedNet(tensors, {m: (g, list(names)) for m, (g, names, _) in built.items()})
    seen = {}
    for mode in ("train", "eval"):
        seen[mode] = _shapes(net, mode, 3, tuple(input_shape))
        out = seen[mode][None]
        _want(isinstance(out, torch.Tensor) and tuple(out.shape) == (3, classes) and out.dtype.is_floating_point,
              f"for 3 images the model's {mode} graph returns "
              f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}, not (3, {classes}): "
              f"one row of {classes} class scores per image")
    facts = _facts(tensors, built, seen, classes)
    net.materialise()
    return net, facts


def _facts(tensors: dict[str, TensorSpec], built: dict, seen: dict, classes: int) -> Facts:
    layers, other, loose, maps, products, hidden_all = [], [], [], [], [], []
    roles: dict[str, tuple[str, str, str | None]] = {}
    for mode in ("train", "eval"):
        _, placeholders, graph_calls = built[mode]
        names = {node: name for name, node in placeholders.items()}
        linear_nodes = []
        targets = {node: target for target, node, _ in graph_calls}
        finals = {node for target, node, _ in graph_calls
                  if target in O.NORMALISERS and _final(node, targets, seen[mode], classes)}
        for target, node, args in graph_calls:
            kind = LAYER_OPS.get(target)
            if kind == "BatchNorm":
                rank = seen[mode][node].dim() if node in seen[mode] else 4
                kind = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}.get(rank, "BatchNorm2d")
            if target in O.NORMALISERS and node not in finals:
                other.append(f"{target} before the class scores")
            if kind is None:
                if target in OTHER_OPS:
                    other.append(target)
                if target in LINEAR_MAPS:
                    maps.append(target)
            elif mode == "train" or kind not in layers:
                layers.append(kind)
            if kind == "Linear":
                linear_nodes.append(node)
            products += _products(kind, target, args, names, seen[mode])
            _tensor_roles(kind, target, args, names, roles, loose)
        hidden_all.append(_hidden(linear_nodes, targets, seen[mode], finals))
    hidden = max(hidden_all, key=sum)
    read = {name for mode in ("train", "eval") for name, node in built[mode][1].items() if node.users}
    per_example = sum(t.numel() for n, t in seen["train"].items() if n is not None and n.op == "call_function") // 3
    widest = max((t.numel() for n, t in seen["eval"].items() if n is not None), default=0) // 3
    return Facts(unused=set(tensors) - read, activations=per_example, widest=widest, layers=layers, other_ops=sorted(set(other)), hidden=hidden,
                 parameters=sum(t.numel for t in tensors.values() if t.kind == "parameter"),
                 stored=sum(t.numel for t in tensors.values() if t.kind != "parameter"),
                 loose=sorted(set(loose)), linear_maps=sorted(set(maps)), products=sorted(set(products)), roles=roles)


def _tensor_roles(kind, target, args, names, roles, loose) -> None:
    """Record which layer reads each tensor, and every tensor read outside one."""
    slots = LAYER_TENSORS["BatchNorm" if kind and kind.startswith("BatchNorm") else kind] \
        if kind and (kind.startswith("BatchNorm") or kind in LAYER_TENSORS) else {}
    weight = names.get(args[1]) if kind in ("Linear", "Conv1d", "Conv2d", "Conv3d") and len(args) > 1 else None
    for i, a in enumerate(args):
        for item in (a if isinstance(a, list) else [a]):
            name = names.get(item) if isinstance(item, fx.Node) else None
            if name is None:
                continue
            if i in slots:
                roles.setdefault(name, (kind, slots[i], weight))
            elif target not in ("aten.add_.Tensor",) or not name.endswith("num_batches_tracked"):
                loose.append(name)


def _products(kind, target: str, args: list, names: dict, seen: dict) -> list[str]:
    """Weights no layer owns: two tensors multiplied (a layer's weights made as an activation,
    or from numbers written into the graph), or a layer given a computed tensor (weight, bias or
    running statistic: a computed running_var divides the input by it), not its own."""
    if target in O.PRODUCTS and len(args) > 1 and all(isinstance(a, fx.Node) and a in seen for a in args[:2]):
        return [f"{target} of two tensors"]
    slots = LAYER_TENSORS.get("BatchNorm" if kind and kind.startswith("BatchNorm") else kind, {})
    return [f"{target} with a computed {role}" for i, role in slots.items()
            if i < len(args) and isinstance(args[i], fx.Node) and args[i] not in names]


def _many(arg, seen: dict) -> bool:
    return isinstance(arg, fx.Node) and arg in seen and seen[arg].numel() > 1


def _final(node: fx.Node, targets: dict, seen: dict, classes: int) -> bool:
    """Is ``node`` (a softmax) the output layer's: over the class scores, its result the model's
    output through linear plumbing of it alone? Anywhere else a softmax computes exponentials,
    with which weights added to an input would act as factors."""
    if node not in seen or _width(seen[node]) != classes:
        return False
    while True:
        users = list(node.users)
        if len(users) != 1:
            return False
        user = users[0]
        if user.op == "output":
            return True
        if targets.get(user) not in O.LINEAR_FLOW or any(
                a is not node and a in seen for a in user.all_input_nodes):
            return False
        node = user


def _bends(node: fx.Node, targets: dict, seen: dict, finals: set) -> bool:
    """Is ``node`` a nonlinearity (or another layer) between a linear layer and the output?"""
    if node.op != "call_function":
        return False
    target = targets.get(node, "")
    if target == "aten.sym_size.int" or (target.startswith("_operator.") and node not in seen):
        return False  # the batch size, or arithmetic on sizes: no values of the layer
    if target in O.NORMALISERS:  # a softmax of the class scores alone ends the output layer
        return node not in finals
    if target in O.PRODUCTS:
        return all(_many(a, seen) for a in node.args[:2])
    return target not in O.LINEAR_FLOW


def _width(t: torch.Tensor) -> int:
    """Elements of a result per example (the graphs are measured at a batch of 3)."""
    return t.numel() // 3 if t.dim() > 1 and t.shape[0] == 3 else t.numel()


def _hidden(linear_nodes: list[fx.Node], targets: dict, seen: dict, finals: set) -> list[int]:
    """Widths (elements per example) of the hidden linear layers: those from which another
    linear layer or any nonlinearity (all but linear plumbing and a final softmax) is reachable."""
    hidden = []
    for node in linear_nodes:
        frontier, reached, feeds = list(node.users), set(), False
        while frontier and not feeds:
            n = frontier.pop()
            if n in reached:
                continue
            reached.add(n)
            feeds = n in linear_nodes or _bends(n, targets, seen, finals)
            frontier.extend(n.users)
        if feeds:
            hidden.append(_width(seen[node]) if node in seen else 0)
    return hidden

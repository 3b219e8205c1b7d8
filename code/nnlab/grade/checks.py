"""What the grader does with a submitted graph: check the rules on its facts, start it
afresh, or load the submission's own weights into it."""

from __future__ import annotations

import math

import torch
from torch import nn

from nnlab.grade.graph import ExportedNet, Facts, GraphError, _want
from nnlab.rules import Rules


def violations(facts: Facts, rules: Rules) -> list[str]:
    """Every way the model's graphs break ``rules``, in the words of :mod:`nnlab.rules`."""
    found = []
    if rules.allowed:
        for kind in dict.fromkeys(facts.layers):
            if kind not in rules.allowed:
                found.append(f"runs {kind}, which the rules ({rules.name}) do not allow "
                             f"(allowed: {', '.join(sorted(rules.allowed))})")
        found += [f"runs {op}, which names no allowed layer" + (" (a softmax is allowed on the class scores at "
                  "the end only)" if op.endswith("before the class scores") else "") for op in facts.other_ops]
        found += [f"reads {name} outside the layer that owns it" for name in facts.loose]
    counts = rules.max_hidden_units is not None or rules.min_hidden_layers > 0
    if counts and facts.linear_maps:
        found.append(f"computes a linear map outside nn.Linear ({', '.join(facts.linear_maps)}), "
                     "whose hidden units cannot be counted")
    if (counts or rules.allowed) and facts.products:
        found.append(f"multiplies computed tensors ({', '.join(facts.products)}), which no layer does: only a "
                     "layer's own parameters may weight its inputs, so what it computes cannot be checked")
    if rules.max_hidden_units is not None and facts.hidden_units > rules.max_hidden_units:
        found.append(f"{facts.hidden_units} hidden units, more than the {rules.max_hidden_units} allowed")
    if facts.hidden_layers < rules.min_hidden_layers:
        found.append(f"{facts.hidden_layers} hidden layer(s), fewer than the {rules.min_hidden_layers} required")
    if rules.max_parameters is not None and facts.size >= rules.max_parameters:
        extra = f" ({facts.parameters:,} parameters and {facts.stored:,} in buffers and constants)" \
            if facts.stored else ""
        found.append(f"{facts.size:,} numbers stored{extra}, not fewer than {rules.max_parameters:,}")
    for kind in sorted(rules.required - set(facts.layers)):
        found.append(f"never runs {kind}, which {rules.name} requires")
    return found


def _default_init(tensor: torch.Tensor, layer: str, role: str, weight: torch.Tensor | None) -> bool:
    """PyTorch's own initialisation of ``layer``'s ``role`` tensor; False if there is none."""
    if layer in ("Linear", "Conv1d", "Conv2d", "Conv3d"):
        if role == "weight":
            nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
        else:
            fan_in = nn.init._calculate_fan_in_and_fan_out(weight)[0] if weight is not None else 0
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(tensor, -bound, bound)
        return True
    if layer.startswith("BatchNorm") or layer in ("LayerNorm", "GroupNorm"):
        {"weight": nn.init.ones_, "bias": nn.init.zeros_, "running_mean": nn.init.zeros_,
         "running_var": nn.init.ones_}[role](tensor)
        return True
    if layer == "Embedding":
        nn.init.normal_(tensor)
        return True
    return False


def initialise(net: ExportedNet, facts: Facts, seed: int) -> list[str]:
    """Start ``net`` afresh, as its layers' constructors would under ``torch.manual_seed(seed)``:
    nothing the submission computed survives in a parameter or a running statistic. Returns
    the tensors it cannot start afresh, because they belong to no layer: parameters (whose
    values never leave the sandbox, so the grader has none to give them) and buffers or
    constants (which keep the values the sandbox reported)."""
    torch.manual_seed(seed)
    kept = []
    with torch.no_grad():
        for name, spec in net.specs.items():
            tensor = net.tensor(name)
            layer, role, weight = facts.roles.get(name, ("", "", None))
            if name in facts.unused:
                continue  # never read: its values cannot matter
            if name.endswith("num_batches_tracked") and spec.kind == "buffer":
                tensor.zero_()
            elif not _default_init(tensor, layer, role, net.tensor(weight) if weight else None):
                kept.append(name)
    return kept


def load_weights(net: ExportedNet, path) -> None:
    """The submission's ``weights.safetensors`` (safetensors only, never pickle) into ``net``:
    exactly the parameters and saved buffers of its graph, with their shapes and dtypes."""
    from safetensors import safe_open

    wanted = {n: s for n, s in net.specs.items() if s.kind in ("parameter", "buffer")}
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            missing, extra = sorted(set(wanted) - names), sorted(names - set(wanted))
            _want(not missing and not extra, "weights.safetensors does not fit the model: "
                  + "; ".join(p for p in (f"missing {', '.join(missing[:5])}" if missing else "",
                                          f"unexpected {', '.join(extra[:5])}" if extra else "") if p))
            with torch.no_grad():
                for name, spec in wanted.items():
                    value = f.get_tensor(name)
                    _want(tuple(value.shape) == spec.shape, f"weights.safetensors: {name} has shape "
                                                            f"{tuple(value.shape)}, the model's is {spec.shape}")
                    net.tensor(name).copy_(value.to(spec.dtype))
    except GraphError:
        raise
    except Exception as exc:  # noqa: BLE001  (any malformed file)
        raise GraphError(f"weights.safetensors cannot be read ({type(exc).__name__})") from None

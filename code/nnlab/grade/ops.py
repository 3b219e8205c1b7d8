"""The operations a submitted graph may run, and what each one is to the rules.

Every ATen operation the grader will execute on a student's behalf is named here; anything
else is refused before it runs (:func:`nnlab.grade.graph.read_graph`). Layers map to the
``torch.nn`` names :class:`~nnlab.rules.Rules` uses; shape plumbing and arithmetic are always
allowed (the policy of :mod:`nnlab.rules`); other functions only where a problem allows any
layer type.
"""

from __future__ import annotations

import operator

import torch

# operation -> the torch.nn layer it is (names as Rules.allowed spells them)
LAYER_OPS = {
    "aten.linear.default": "Linear",
    "aten.conv1d.default": "Conv1d", "aten.conv1d.padding": "Conv1d",
    "aten.conv2d.default": "Conv2d", "aten.conv2d.padding": "Conv2d",
    "aten.conv3d.default": "Conv3d", "aten.conv3d.padding": "Conv3d",
    "aten.batch_norm.default": "BatchNorm", "aten.layer_norm.default": "LayerNorm",
    "aten.group_norm.default": "GroupNorm", "aten.embedding.default": "Embedding",
    "aten.relu.default": "ReLU", "aten.relu_.default": "ReLU", "aten.sigmoid.default": "Sigmoid",
    "aten.sigmoid_.default": "Sigmoid", "aten.tanh.default": "Tanh", "aten.tanh_.default": "Tanh",
    "aten.gelu.default": "GELU", "aten.silu.default": "SiLU", "aten.silu_.default": "SiLU",
    "aten.elu.default": "ELU", "aten.leaky_relu.default": "LeakyReLU", "aten.leaky_relu_.default": "LeakyReLU",
    "aten.hardtanh.default": "Hardtanh", "aten.hardtanh_.default": "Hardtanh", "aten.softplus.default": "Softplus",
    "aten.dropout.default": "Dropout", "aten.dropout_.default": "Dropout",
    "aten.feature_dropout.default": "Dropout2d", "aten.feature_dropout_.default": "Dropout2d",
    "aten.max_pool1d.default": "MaxPool1d", "aten.max_pool2d.default": "MaxPool2d",
    "aten.max_pool2d_with_indices.default": "MaxPool2d", "aten.avg_pool1d.default": "AvgPool1d",
    "aten.avg_pool2d.default": "AvgPool2d", "aten.adaptive_avg_pool1d.default": "AdaptiveAvgPool1d",
    "aten.adaptive_avg_pool2d.default": "AdaptiveAvgPool2d",
    "aten.adaptive_max_pool2d.default": "AdaptiveMaxPool2d",
    "aten.softmax.int": "Softmax", "aten._softmax.default": "Softmax",
    "aten.log_softmax.int": "LogSoftmax", "aten._log_softmax.default": "LogSoftmax",
    "aten.flatten.using_ints": "Flatten", "aten.view.default": "Flatten", "aten.reshape.default": "Flatten",
    "aten._unsafe_view.default": "Flatten",
}
# where a layer reads its own tensors: argument position -> role
LAYER_TENSORS = {
    "Linear": {1: "weight", 2: "bias"}, "Conv1d": {1: "weight", 2: "bias"}, "Conv2d": {1: "weight", 2: "bias"},
    "Conv3d": {1: "weight", 2: "bias"}, "BatchNorm": {1: "weight", 2: "bias", 3: "running_mean", 4: "running_var"},
    "LayerNorm": {2: "weight", 3: "bias"}, "GroupNorm": {2: "weight", 3: "bias"}, "Embedding": {0: "weight"},
}
# shape plumbing and arithmetic: always allowed (the policy of nnlab.rules)
PLUMBING = {
    "aten.sym_size.int", "aten.detach.default", "aten.detach_.default", "aten.alias.default",
    "aten.clone.default", "aten.contiguous.default", "aten.lift_fresh_copy.default", "aten._to_copy.default",
    "aten.to.dtype", "aten.type_as.default", "aten.squeeze.dim", "aten.squeeze.default", "aten.squeeze.dims",
    "aten.unsqueeze.default", "aten.transpose.int", "aten.permute.default", "aten.expand.default",
    "aten.select.int", "aten.slice.Tensor", "aten.cat.default", "aten.stack.default", "aten.split.Tensor",
    "aten.chunk.default", "aten.unflatten.int",
    "aten.add.Tensor", "aten.add.Scalar", "aten.sub.Tensor", "aten.sub.Scalar", "aten.mul.Tensor",
    "aten.mul.Scalar", "aten.div.Tensor", "aten.div.Scalar", "aten.neg.default", "aten.rsub.Scalar",
    "aten.add_.Tensor",
    "_operator.getitem", "_operator.add", "_operator.sub", "_operator.mul", "_operator.floordiv",
    "_operator.truediv", "_operator.neg",
}
# functions that name no layer: run only when a problem allows any layer type
OTHER_OPS = {
    "aten.exp.default", "aten.log.default", "aten.sqrt.default", "aten.rsqrt.default", "aten.abs.default",
    "aten.pow.Tensor_Scalar", "aten.clamp.default", "aten.clamp_min.default", "aten.clamp_max.default",
    "aten.mean.dim", "aten.mean.default", "aten.sum.dim_IntList", "aten.sum.default", "aten.amax.default",
    "aten.maximum.default", "aten.minimum.default", "aten.where.self", "aten.matmul.default",
    "aten.mm.default", "aten.bmm.default", "aten.addmm.default", "aten.t.default", "aten.zeros_like.default",
    "aten.ones_like.default", "aten.cumsum.default", "aten.sign.default", "aten.square.default",
}
LINEAR_MAPS = {"aten.matmul.default", "aten.mm.default", "aten.bmm.default", "aten.addmm.default"}
# products: linear in each operand only while the other is a number (or holds one element)
PRODUCTS = {"aten.mul.Tensor", "aten.div.Tensor", "_operator.mul", "_operator.truediv"}
# what a layer's result may pass through and still be the output layer's (linear in it)
LINEAR_FLOW = (PLUMBING - {"aten.sym_size.int", "_operator.floordiv"}) | {
    "aten.view.default", "aten.reshape.default", "aten._unsafe_view.default", "aten.flatten.using_ints",
    "aten.dropout.default", "aten.dropout_.default", "aten.feature_dropout.default",
    "aten.feature_dropout_.default", "aten.sum.dim_IntList", "aten.sum.default", "aten.mean.dim",
    "aten.mean.default"}
# a softmax of the class scores themselves is the output layer's, not a hidden nonlinearity
NORMALISERS = {"aten.softmax.int", "aten._softmax.default", "aten.log_softmax.int", "aten._log_softmax.default"}
# where a number in a graph is a value the model computes with (integers elsewhere are shapes)
VALUE_OPS = {"aten.add.Tensor", "aten.add.Scalar", "aten.sub.Tensor", "aten.sub.Scalar", "aten.mul.Tensor",
             "aten.mul.Scalar", "aten.div.Tensor", "aten.div.Scalar", "aten.rsub.Scalar",
             "aten.pow.Tensor_Scalar", "aten.clamp.default", "aten.clamp_min.default",
             "aten.clamp_max.default", "aten.where.self", "_operator.add", "_operator.sub",
             "_operator.mul", "_operator.floordiv", "_operator.truediv"}
# numbers that carry nothing: everywhere, and a layer's defaults where the layer reads them
PLAIN_NUMBERS = {0.0, 1.0, -1.0, 0.5, 2.0}
LAYER_NUMBERS = {("aten.batch_norm.default", 6): {0.1}, ("aten.batch_norm.default", 7): {1e-5},
                 ("aten.layer_norm.default", 4): {1e-5}, ("aten.group_norm.default", 4): {1e-5},
                 ("aten.leaky_relu.default", 1): {0.01}, ("aten.leaky_relu_.default", 1): {0.01},
                 ("aten.softplus.default", 2): {20.0}}
DROPOUTS = {"aten.dropout.default", "aten.dropout_.default", "aten.feature_dropout.default",
            "aten.feature_dropout_.default"}
# dropout rates that carry nothing; any other rate is a number the model could compute with
# (the largest of many samples of dropout(1, p) is 1 / (1 - p)), counted once per graph
DROPOUT_RATES = {0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9}


def _resolve(name: str):
    if name.startswith("_operator."):
        return getattr(operator, name.split(".", 1)[1])
    _, op, overload = name.split(".")
    return getattr(getattr(torch.ops.aten, op), overload)


OPS = {name: _resolve(name) for name in (*LAYER_OPS, *PLUMBING, *OTHER_OPS)}

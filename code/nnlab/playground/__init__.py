"""TensorFlow Playground's semantics, re-created for the book (Smilkov et al., 2017).

Playground trains a small fully connected network on two-dimensional toy data in the
browser. This package reproduces what it does, so that the book can measure what the
Playground only shows:

* data: the four classification generators (``circle``, ``xor``, ``gauss``, ``spiral``),
  500 points labelled +1/-1, the noise parameter (Playground's percent / 100), shuffled once
  when generated and split 50/50 into training and test points;
* the network: inputs ``x1, x2``; hidden layers of any width (default ``[4, 2]``) with a
  ``relu``, ``tanh``, ``sigmoid`` or ``linear`` activation; a ``tanh`` output unit;
  weights drawn uniformly from ``[-0.5, 0.5)`` and biases 0.1, or everything zero
  (Playground's hidden ``initZero`` option);
* the loss ``0.5 * (out - y)**2`` per point (Playground's ``Errors.SQUARE``), averaged over
  a set of points when reported;
* training: plain SGD with learning rate 0.03 on batches of 10, the gradient averaged over
  the batch; one *iteration* is one pass over the training points, in the same order every
  pass. As in Playground, a batch that a pass leaves unfinished is completed by the first
  points of the next pass.

The forward and backward passes are written out by hand (explicit chain rule, float64), so
that the book can print every factor of a gradient; the tests check them against torch
autograd. Everything is vectorised over *runs*: parameters carry a leading run axis, so
several seeds (or several initialisations) train in one loop at the cost of one.

Shapes: a parameter list ``params`` holds one ``(W, b)`` pair per layer, with
``W`` of shape ``(R, n_in, n_out)`` and ``b`` of shape ``(R, n_out)`` for ``R`` runs.

The package is split by job, each module importing only those above it:

* ``nnlab.playground.data``: the generators and :class:`Dataset`;
* ``nnlab.playground.network``: initialisation, forward and backward passes, parameter
  helpers, :func:`to_torch`;
* ``nnlab.playground.training``: :class:`PlaygroundConfig`, the SGD loop (:func:`train`,
  :func:`train_many`) and its :class:`History`;
* ``nnlab.playground.studies``: the measurements of Part I (dead units and the
  data-order experiment, gradient norms, symmetric networks);
* ``nnlab.playground.figures``: every plot and the boundary slider.

Everything public is re-exported here, so ``from nnlab import playground as pg`` and
``pg.train(...)``, ``pg.plot_boundaries(...)`` work without naming the modules.
"""

from nnlab.playground.data import DATASETS, DOMAIN, Dataset, generate, make_dataset
from nnlab.playground.figures import (
    LABEL_CMAP,
    boundary_frames,
    boundary_slider,
    plot_activation_derivatives,
    plot_boundaries,
    plot_dying_grid,
    plot_dying_relu,
    plot_grad_norms,
    plot_losses,
    plot_neurons,
)
from nnlab.playground.network import (
    ACTIVATIONS,
    INITS,
    Params,
    accuracy,
    activate,
    activation_derivative,
    backward,
    copy_params,
    forward,
    init_params,
    layer_sizes,
    loss,
    max_abs_weights,
    predict,
    select_run,
    stack_runs,
    to_torch,
    unit_spread,
)
from nnlab.playground.studies import (
    ORDERS,
    DyingReluResult,
    collapse_identical_units,
    dead_units,
    dying_relu_data,
    dying_relu_experiment,
    dying_relu_grid,
    gradient_report,
    iterations_to_loss,
    mean_activation_derivative,
)
from nnlab.playground.training import History, PlaygroundConfig, sgd_step, train, train_many

__all__ = [
    # data
    "DATASETS", "DOMAIN", "Dataset", "generate", "make_dataset",
    # network
    "ACTIVATIONS", "INITS", "Params", "layer_sizes", "init_params", "activate",
    "activation_derivative", "forward", "backward", "predict", "loss", "accuracy",
    "select_run", "copy_params", "stack_runs", "unit_spread", "max_abs_weights", "to_torch",
    # training
    "PlaygroundConfig", "History", "sgd_step", "train", "train_many",
    # studies
    "ORDERS", "dead_units", "DyingReluResult", "dying_relu_data", "dying_relu_experiment",
    "dying_relu_grid", "gradient_report", "iterations_to_loss", "mean_activation_derivative",
    "collapse_identical_units",
    # figures
    "LABEL_CMAP", "plot_activation_derivatives", "plot_boundaries", "plot_neurons",
    "plot_losses", "plot_grad_norms", "boundary_frames", "boundary_slider", "plot_dying_relu",
    "plot_dying_grid",
]

"""TensorFlow Playground's semantics, re-created for the book (Smilkov et al., 2017).

Playground trains a small fully connected network on two-dimensional toy data in the
browser. This package reproduces what it does, so that the book can measure what the
Playground only shows:

* data: the four classification generators (``circle``, ``xor``, ``gauss``, ``spiral``),
  500 points labelled +1/-1, the noise parameter (Playground's percent / 100), shuffled once
  when generated and split 50/50 into training and test points; or two-dimensional points
  of your own, through ``Dataset.from_arrays(x, y)``. Labels are -1 and +1, the range of
  the ``tanh`` output: other labels are refused with a ``ValueError`` that says how to map
  them (``from_arrays`` maps two classes of any kind, 0/1 say, for you);
* the network: inputs ``x1, x2``; hidden layers of any width (default ``[4, 2]``) with a
  ``relu``, ``tanh``, ``sigmoid`` or ``linear`` activation (and, beyond Playground, ``leaky_relu``
  and the rescaled sigmoids ``centred_sigmoid``, ``scaled_sigmoid`` and ``half_centred_sigmoid``);
  a ``tanh`` output unit;
  weights drawn uniformly from ``[-0.5, 0.5)`` and biases 0.1, or everything zero
  (Playground's hidden ``initZero`` option);
* the loss ``0.5 * (out - y)**2`` per point (Playground's ``Errors.SQUARE``), averaged over
  a set of points when reported (``sgd_step`` also takes ``loss="logistic"``, the
  cross-entropy of the output's linear pre-activation);
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

* ``nnlab.playground.data``: the generators and :class:`~nnlab.playground.data.Dataset`
  (with :meth:`~nnlab.playground.data.Dataset.from_arrays` for points of your own);
* ``nnlab.playground.network``: initialisation, forward and backward passes, parameter
  helpers, :func:`~nnlab.playground.network.to_torch`;
* ``nnlab.playground.training``: :class:`~nnlab.playground.training.PlaygroundConfig`, the
  SGD loop (:func:`~nnlab.playground.training.train`,
  :func:`~nnlab.playground.training.train_many`) and its
  :class:`~nnlab.playground.training.History`;
* ``nnlab.playground.studies``: the measurements of Part I (dead units and the
  data-order experiment, gradient norms, symmetric networks);
* ``nnlab.playground.figures``: every plot and the boundary slider; plots of the plane
  show the data's ``extent`` (Playground's ``[-6, 6]`` square for generated data, a square
  around the points for your own).

For points of your own, say scikit-learn's moons::

    from sklearn.datasets import make_moons
    from nnlab import playground as pg

    x, y = make_moons(400, noise=0.1, random_state=0)      # labels 0 and 1
    data = pg.Dataset.from_arrays(x, y, seed=0)             # 0 -> -1, 1 -> +1; shuffled, split
    hist = pg.train(pg.PlaygroundConfig(hidden=(8, 8), activation="tanh"), data)
    pg.plot_boundaries([("moons", hist.params)], data, "tanh")

Everything public is re-exported here, so ``from nnlab import playground as pg`` and
``pg.train(...)``, ``pg.plot_boundaries(...)`` work without naming the modules.
"""

from nnlab.playground.data import (
    DATASETS,
    DOMAIN,
    PLAYGROUND_EXTENT,
    Dataset,
    Extent,
    as_extent,
    check_labels,
    extent_around,
    generate,
    make_dataset,
)
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
    LEAKY_SLOPE,
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
from nnlab.playground.training import LOSSES, History, PlaygroundConfig, sgd_step, train, train_many

__all__ = [
    # data
    "DATASETS", "DOMAIN", "PLAYGROUND_EXTENT", "Extent", "Dataset", "generate", "make_dataset",
    "check_labels", "as_extent", "extent_around",
    # network
    "ACTIVATIONS", "INITS", "LEAKY_SLOPE", "Params", "layer_sizes", "init_params", "activate",
    "activation_derivative", "forward", "backward", "predict", "loss", "accuracy",
    "select_run", "copy_params", "stack_runs", "unit_spread", "max_abs_weights", "to_torch",
    # training
    "LOSSES", "PlaygroundConfig", "History", "sgd_step", "train", "train_many",
    # studies
    "ORDERS", "dead_units", "DyingReluResult", "dying_relu_data", "dying_relu_experiment",
    "dying_relu_grid", "gradient_report", "iterations_to_loss", "mean_activation_derivative",
    "collapse_identical_units",
    # figures
    "LABEL_CMAP", "plot_activation_derivatives", "plot_boundaries", "plot_neurons",
    "plot_losses", "plot_grad_norms", "boundary_frames", "boundary_slider", "plot_dying_relu",
    "plot_dying_grid",
]

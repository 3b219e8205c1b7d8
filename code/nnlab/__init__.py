"""nnlab: train, check and store the networks of a deep-learning course.

The core (this package) registers nothing on import: a course brings its data
(:mod:`nnlab.data`), its rules (:mod:`nnlab.rules`) and its experiments
(:mod:`nnlab.experiments`), and trains them with the ``nnlab`` command. The executable
textbook built on it keeps its own material in :mod:`nnlab.book`.
"""

__version__ = "0.2.0"

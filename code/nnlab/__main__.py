"""``python -m nnlab``: the ``nnlab`` command."""

import sys

from nnlab.cli import main

sys.exit(main())

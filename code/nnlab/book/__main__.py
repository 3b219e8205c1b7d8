"""``python -m nnlab.book prepare``: see :mod:`nnlab.book.build`."""

import sys

from nnlab.book.build import main

sys.exit(main(sys.argv[1:]))

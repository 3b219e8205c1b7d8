"""``python -m nnlab`` and the ``nnlab`` console script.

Ctrl-C while torch is still being imported (a few seconds) ends quietly, as it does later.
"""

import sys


def run() -> int:
    try:
        from nnlab.cli import main
    except KeyboardInterrupt:
        print("nnlab: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())

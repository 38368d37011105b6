"""The `comp` command line: parse, call one plain function, print. No ML logic lives here.

`app.py` holds the Typer app and how errors print; the commands live by what they do:
`training.py` (train, distill, tune, lr-find, factors, demo), `results.py` (predict, evaluate,
compare, submit, lb, package, export, runs) and `data.py` (data check).
"""

import sys

# Each module registers its commands on `app` when imported; --help lists them in this order.
from comp.cli import training  # noqa: F401  isort: skip
from comp.cli import results  # noqa: F401  isort: skip
from comp.cli import data  # noqa: F401  isort: skip
from comp.cli.app import app, run

__all__ = ["app", "run"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())

"""`python -m comp ...` (and `torchrun -m comp ...`) runs the same Typer app as the `comp` script."""

from comp.cli import app

if __name__ == "__main__":
    app(prog_name="comp")

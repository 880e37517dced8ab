"""`python -m thacam ...`: the same as the `thacam` command."""

from .cli import run

run()

"""`python -m thacam.cli ...`: the same as the `thacam` command."""

from . import run

run()

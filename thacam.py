#!/usr/bin/env python3
"""Run thacam from a checkout without installing it: `python thacam.py --character img.png`."""

from thacam.cli import run

if __name__ == "__main__":
    run()

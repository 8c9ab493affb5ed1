"""`python -m bench`: every part of the bench (see `bench/__init__.py`, `python -m bench --help`)."""

from bench.cli import app

app()

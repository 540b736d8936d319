"""`python -m taskgate` is the `taskgate` console script."""

from taskgate.cli import app

app()

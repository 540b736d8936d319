"""`python -m taskgate` is the `taskgate` console script."""

from taskgate.cli.main import app

app()

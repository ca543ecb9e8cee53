"""``python -m gateway.historian run --config FILE``: the bridge without the gateway's CLI around it."""

from gateway.historian.cli import app

app()

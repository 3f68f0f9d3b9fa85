"""The load test's ceiling: a bare Flask hello-world, served like the service (gthread 4x2)."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    """Hello."""
    return "hello"

"""The HTTP ingress: authenticated commands in, confirmed publishes to `hisho.commands` out."""

from producers.ingress.app import create_app
from producers.ingress.serve import run

__all__ = ["create_app", "run"]

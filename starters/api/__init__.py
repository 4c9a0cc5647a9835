"""The HTTP API and webhooks (FastAPI): ``create_app(settings)``."""

from starters.api.app import create_app

__all__ = ["create_app"]

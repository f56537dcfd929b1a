"""The vault server's HTTP surface (FastAPI): agent routes, owner routes, the web page."""

from keysafe.api.app import create_app

__all__ = ["create_app"]

"""keysafe: a vault that lets AI agents use keys and credentials without ever holding them."""

__version__ = "0.1.0"

__all__ = ["__version__"]

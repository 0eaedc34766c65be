"""The raftlog release version (single source: setup.cfg reads it)."""

__all__ = ["__version__"]

__version__ = "0.1.0"

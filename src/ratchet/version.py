"""The installed Ratchet's version (one place; `ratchet.__version__` re-exports it)."""

__version__ = "0.1.0"

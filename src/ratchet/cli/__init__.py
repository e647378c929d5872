"""The ``ratchet`` command-line interface (Typer + Rich)."""

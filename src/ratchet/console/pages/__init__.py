"""The console's pages: each module adds its routes (``add_routes(app)``); ``PAGES`` lists them in menu order."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from ratchet.console.pages import alerts, annotate, datasets, experiments, overview, programs, triage

__all__ = ["PAGES"]

PAGES: list[Callable[[FastAPI], None]] = [overview.add_routes, experiments.add_routes, programs.add_routes,
                                          datasets.add_routes, annotate.add_routes, triage.add_routes,
                                          alerts.add_routes]

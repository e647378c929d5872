"""Driving the console like a browser in unit tests: a form's CSRF token, logging in with a key."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient


def csrf(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def login(client: TestClient, key: str) -> Any:
    """Post the login form with ``key`` (its answer: a 303 to the console when the key is good)."""
    form = client.get("/ui/login")
    return client.post("/ui/login", data={"key": key, "csrf_token": csrf(form.text), "next": "/ui"},
                       follow_redirects=False)

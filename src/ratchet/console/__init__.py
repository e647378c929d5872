"""The web console: server-rendered pages under ``/ui`` for the people who run Ratchet — operators watching and acting
on rollouts, engineers comparing program and dataset versions, annotators working the queue.

It ships inside the package (templates, CSS and a small script; no CDN, no network fetch), runs from the same
functions the CLI uses, and sits behind the API's keys and roles: log in with a key, then a session cookie
(HttpOnly, SameSite=Strict) with a CSRF token on every form. ``ratchet serve`` mounts it next to the API
(:func:`create_server`); ``ratchet ui`` runs it alone (:func:`create_console_app`).
"""

from ratchet.console.routes import CONSOLE_ROLE, add_console
from ratchet.console.server import create_console_app, create_server, server_from_env

__all__ = ["CONSOLE_ROLE", "add_console", "create_console_app", "create_server", "server_from_env"]

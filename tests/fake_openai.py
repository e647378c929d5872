"""An OpenAI-compatible chat endpoint that answers every request with one fixed DSPy chat answer.

For tests and benchmarks that need a remote model without a network or a key (several serving
hosts, replica memory, scaling): ``start_chat_server()`` runs it on a thread and returns the server
(``base_url(server)`` is the ``api_base``); ``chat_handler(answer, delay_s)`` is the handler class, for a
server run in a child process.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["INTENT_ANSWER", "ChatServer", "base_url", "chat_handler", "start_chat_server"]

INTENT_ANSWER = "[[ ## intent ## ]]\ncard_arrival\n\n[[ ## completed ## ]]"
"""``classify_intent``'s answer ``card_arrival`` in DSPy's chat format."""


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets connections under 16 concurrent clients


def chat_handler(answer: str = INTENT_ANSWER, delay_s: float = 0.0) -> type[BaseHTTPRequestHandler]:
    """A handler answering ``POST …/chat/completions`` with ``answer`` after ``delay_s`` (a model's latency)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if delay_s:
                time.sleep(delay_s)
            body = json.dumps({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": "fake",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer}}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132},
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def start_chat_server(answer: str = INTENT_ANSWER, delay_s: float = 0.0, port: int = 0) -> ChatServer:
    """The server, serving on a daemon thread; ``shutdown()`` it when done."""
    server = ChatServer(("127.0.0.1", port), chat_handler(answer, delay_s))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def base_url(server: ChatServer) -> str:
    """The ``api_base`` of a running server (``http://127.0.0.1:<port>/v1``)."""
    return f"http://127.0.0.1:{server.server_address[1]}/v1"

"""The standard library's threading HTTP server as the test servers (fake LLM, fake API, webhook
receiver) use it."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class LoopbackServer(ThreadingHTTPServer):
    """One thread per request, none kept alive at exit; a real server's listen backlog, not the
    standard library's 5 (a burst of connections beyond it is dropped by the kernel and retried
    by the client's TCP a second later, or not at all within its connect timeout on a busy
    machine); and a client that hangs up mid-request (a sender's timeout against a receiver slow
    on purpose) is not reported as a server error."""

    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

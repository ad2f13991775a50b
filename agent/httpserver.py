"""The agent's local HTTP endpoint: ``/metrics`` and ``/healthz``.

A stdlib `ThreadingHTTPServer` in a daemon thread -- the agent stays light, no
web framework. ``/metrics`` is the Prometheus text exposition (format 0.0.4,
which every Prometheus reads) of the agent's own registry (agent.metrics);
``/healthz`` answers 200 with a small JSON document while the agent's health
check passes and 503 with the same document when it does not. Anything else
is 404.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AgentHttpServer", "HealthCheck", "HttpSettings"]

log = logging.getLogger(__name__)

#: A health check: (healthy, details shown in the /healthz document).
HealthCheck = Callable[[], tuple[bool, Mapping[str, Any]]]


class HttpSettings(BaseModel):
    """Where the agent serves /metrics and /healthz. Keep it local (a Prometheus on the
    same host or network scrapes it); port 0 picks a free port."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9817


def _always_healthy() -> tuple[bool, Mapping[str, Any]]:
    return True, {}


class AgentHttpServer:
    """Serves the registry's metrics and the health check until `stop`."""

    def __init__(
        self,
        settings: HttpSettings,
        registry: CollectorRegistry,
        health: HealthCheck = _always_healthy,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.health = health
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked when the settings said 0)."""
        if self._server is None:
            raise RuntimeError("The agent's HTTP server is not started; call start() first.")
        return int(self._server.server_address[1])

    def start(self) -> None:
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((self.settings.host, self.settings.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="esup-agent-http", daemon=True
        )
        self._thread.start()
        log.info("Serving /metrics and /healthz on %s:%d.", self.settings.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_PLAIN_0_0_4, generate_latest(self.registry)
        if path == "/healthz":
            try:
                healthy, details = self.health()
            except Exception as exc:  # a failing check is an unhealthy agent, not a 500
                log.exception("The health check failed.")
                healthy, details = False, {"error": str(exc)}
            document = {"status": "ok" if healthy else "failing", **details}
            body = json.dumps(document, ensure_ascii=False, default=str).encode()
            return (200 if healthy else 503), "application/json", body
        return 404, "text/plain; charset=utf-8", b"Not found: try /metrics or /healthz.\n"


def _handler_for(server: AgentHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            status, ctype, body = server.respond(self.path)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler

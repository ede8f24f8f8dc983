"""Local stand-ins for the HTTP services research-arm calls, and the part they share.

`fake_arxiv.FakeArxivServer` speaks the arXiv Atom API and
`fake_openai.FakeOpenAIServer` the OpenAI API. Each is a real HTTP server on a
free loopback port, served by a background thread, so the code under test goes
through its real HTTP client, timeouts and retries. This module holds what they
share: the server thread, request recording, injected faults and latency.

Faults are served one per request, in the order injected::

    with FakeArxivServer() as arxiv:
        arxiv.inject(Fault.status(503, retry_after=2), Fault.reset())
        # 1st request: 503 with Retry-After: 2; 2nd: connection reset; 3rd: a feed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, Self
from urllib.parse import parse_qsl, urlsplit

FaultKind = Literal[
    "status",
    "hang",
    "reset",
    "truncated",
    "malformed",
    "entity_bomb",
    "error_feed",
    "content",
]

# Faults the base server serves itself; the others are service-specific.
_TRANSPORT_FAULTS: frozenset[FaultKind] = frozenset({"hang", "reset", "truncated"})


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, served to one request instead of the normal answer.

    Build one with the class methods below; each fake lists the kinds it supports
    in `supported_faults` and refuses the others when they are injected.
    """

    kind: FaultKind
    status_code: int = 200
    retry_after: float | None = None
    """Seconds sent as Retry-After (the OpenAI fake adds retry-after-ms)."""
    seconds: float = 0.0
    """How long a hang lasts before the normal answer."""
    text: str = ""
    """The error message of an error feed, or the content of a `content` fault."""
    endpoint: str | None = None
    """Serve this fault only to a request whose path ends with it, e.g. "embeddings"."""

    @classmethod
    def status(
        cls, status_code: int, *, retry_after: float | None = None, endpoint: str | None = None
    ) -> Fault:
        """An HTTP error status (e.g. 500, 503), optionally with a Retry-After header."""
        return cls("status", status_code=status_code, retry_after=retry_after, endpoint=endpoint)

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0, *, endpoint: str | None = None) -> Fault:
        """HTTP 429 asking the client to wait `retry_after` seconds."""
        return cls.status(429, retry_after=retry_after, endpoint=endpoint)

    @classmethod
    def hang(cls, seconds: float, *, endpoint: str | None = None) -> Fault:
        """Say nothing for `seconds`, then answer normally: a client timeout, usually."""
        return cls("hang", seconds=seconds, endpoint=endpoint)

    @classmethod
    def reset(cls, *, endpoint: str | None = None) -> Fault:
        """Read the request, then reset the connection without any response."""
        return cls("reset", endpoint=endpoint)

    @classmethod
    def truncated(cls, *, endpoint: str | None = None) -> Fault:
        """The normal status and headers, then half the body and a closed connection."""
        return cls("truncated", endpoint=endpoint)

    @classmethod
    def malformed(cls, *, endpoint: str | None = None) -> Fault:
        """Status 200 with a body that is not what the content type promises."""
        return cls("malformed", endpoint=endpoint)

    @classmethod
    def entity_bomb(cls) -> Fault:
        """arXiv only: status 200 with a billion-laughs DTD (an XML entity expansion attack)."""
        return cls("entity_bomb")

    @classmethod
    def error_feed(cls, message: str = "malformed query") -> Fault:
        """arXiv only: HTTP 400 with arXiv's error feed carrying `message`."""
        return cls("error_feed", status_code=400, text=message)

    @classmethod
    def empty_content(cls) -> Fault:
        """OpenAI only: a well-formed chat completion whose content is ""."""
        return cls("content", text="", endpoint="chat/completions")

    @classmethod
    def content(cls, text: str) -> Fault:
        """OpenAI only: a well-formed chat completion whose content is `text`."""
        return cls("content", text=text, endpoint="chat/completions")

    def applies_to(self, path: str) -> bool:
        """Whether this fault may be served to a request for `path`."""
        if self.endpoint is None:
            return True
        return path.rstrip("/").endswith("/" + self.endpoint.strip("/"))


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the fake received it."""

    time: float
    """`time.monotonic()` when the request had been read."""
    method: str
    path: str
    """The path without the query string, e.g. "/api/query"."""
    params: dict[str, str]
    """Query-string parameters, decoded; the last value of a repeated one."""
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not JSON)."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """What a fake answers to one request."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def retry_after_header(seconds: float) -> str:
    """Retry-After in whole seconds, as HTTP defines it; rounded up, so no client retries early."""
    return str(math.ceil(seconds))


class FakeHTTPServer(ABC):
    """A threaded HTTP server on a loopback port that records requests and serves faults.

    Subclasses implement `respond`; this class reads and records each request,
    applies the latency, and serves the transport faults (hang, reset,
    truncated) itself. Use it as a context manager, or call start() and stop().
    """

    supported_faults: ClassVar[frozenset[FaultKind]] = _TRANSPORT_FAULTS | {"status"}

    def __init__(
        self, *, latency_seconds: float = 0.0, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """`latency_seconds` delays every answer (change it at will); port 0 picks a free port."""
        self.latency_seconds = latency_seconds
        self._address = (host, port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        # Set by stop(): hangs and latencies wake up and drop their connection.
        self._stopping = threading.Event()
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL the client under test is pointed at (ARXIV_API_URL, OPENAI_BASE_URL)."""

    @abstractmethod
    def respond(self, request: RecordedRequest, fault: Fault | None) -> Reply:
        """The answer to `request`, shaped by `fault` when it is a service-specific one."""

    def start(self) -> None:
        """Bind the port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        self._server = _ThreadingServer(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # A short poll keeps stop() quick.
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, drop open connections and wait for handler threads. Idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        # Keep-alive connections would hold their handler threads until the
        # client hangs up; server_close() waits for those threads.
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def port(self) -> int:
        """The bound port (only known once started, when the fake was asked for port 0)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the recorded requests and any fault not served yet."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()

    def inject(self, *faults: Fault) -> None:
        """Queue `faults`; each later request takes the first queued fault that applies to it."""
        unsupported = [f.kind for f in faults if f.kind not in self.supported_faults]
        if unsupported:
            raise ValueError(f"{type(self).__name__} does not serve faults {unsupported}")
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> list[Fault]:
        """Faults injected and not served yet."""
        with self._lock:
            return list(self._faults)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Serve one request read by `handler` (called from the handler's thread)."""
        request = _read_request(handler)
        with self._lock:
            self._requests.append(request)
            fault = next((f for f in self._faults if f.applies_to(request.path)), None)
            if fault is not None:
                self._faults.remove(fault)

        if self._sleep(self.latency_seconds):
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "hang":
            if self._sleep(fault.seconds):
                handler.close_connection = True
                return
            fault = None
        if fault is not None and fault.kind == "reset":
            _reset_connection(handler)
            return

        truncate = fault is not None and fault.kind == "truncated"
        reply = self.respond(request, None if truncate else fault)
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if truncate:
            handler.wfile.write(reply.body[: len(reply.body) // 2])
            handler.close_connection = True
        else:
            handler.wfile.write(reply.body)

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` unless the server stops first; True if it is stopping."""
        if seconds > 0:
            return self._stopping.wait(seconds)
        return self._stopping.is_set()


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as httpx and the openai SDK expect.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle's algorithm the second
    # waits for the client's delayed ACK, 40 ms on every response.
    disable_nagle_algorithm = True
    server_version = "research-arm-fake/1"
    server: _ThreadingServer

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    def do_POST(self) -> None:
        self.server.owner.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the recorded requests say what happened."""


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    # Listen backlog: bursts of hundreds of concurrent connections must queue,
    # not be refused.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], owner: FakeHTTPServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that can
        # stall for seconds on a machine without network; we never need it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every handler thread blocked on an idle keep-alive connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up, or a connection dropped by stop(),
        # is expected here; anything else is a bug in the fake and is printed.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError) or self.owner._stopping.is_set():
            return
        super().handle_error(request, client_address)


def _read_request(handler: BaseHTTPRequestHandler) -> RecordedRequest:
    parts = urlsplit(handler.path)
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length > 0 else b""
    return RecordedRequest(
        time=time.monotonic(),
        method=handler.command,
        path=parts.path,
        params=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={name.lower(): value for name, value in handler.headers.items()},
        body=body,
    )


def _reset_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection with a TCP RST instead of an orderly FIN and no response."""
    # A zero linger time makes close() send RST. The descriptor really closes
    # when the handler releases its file objects, right after this returns.
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    handler.connection.close()


def serve_command_line(
    server_class: Callable[..., FakeHTTPServer], description: str, argv: Sequence[str] | None
) -> None:
    """A fake's command line: `--host`, `--port` and `--latency`, then serve until signalled.

    Prints the server's URL first, and serves until SIGINT or SIGTERM.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    server = server_class(latency_seconds=args.latency, host=args.host, port=args.port)
    signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before the server's threads start, so they inherit the mask and
    # only the main thread takes the signal, in sigwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    with server:
        print(server.url, flush=True)
        signal.sigwait(signals)

"""A file server on 127.0.0.1 for tests: HTTP Range support, a log of requests, and faults to inject.

    with FileServer(root) as server:          # serves root/<path> at server.url + "/<path>"
        server.add_fault(Fault("status", status=500))          # the next request gets a 500
        server.add_fault(Fault("drop", after=1000))             # send 1000 bytes of the body, then hang up
        ...
        server.requests                                         # [Request(method, path, range), ...]

Faults apply to the next matching request(s) in the order added (`times`, -1 for every request;
`path` limits one to a URL path). Kinds:
    status        answer `status` with a short text body
    drop          send the headers and `after` bytes of the body, then close the connection (a short body)
    reset         the same but end with a TCP reset (the client sees ECONNRESET)
    ignore_range  answer 200 with the whole file whatever Range asked for
    body          serve `body` (200, its own Content-Length) instead of the file: wrong content
Only the standard library; other tests may import it (tests/ is on sys.path under pytest).
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Fault:
    kind: str  # "status" | "drop" | "reset" | "ignore_range" | "body"
    status: int = 500
    after: int = 0
    body: bytes = b""
    times: int = 1  # how many requests it applies to; -1: all
    path: str | None = None  # only requests for this (unquoted) URL path, e.g. "/numpy_bitmap/hot dog.npy"

    def __post_init__(self):
        if self.kind not in {"status", "drop", "reset", "ignore_range", "body"}:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # unquoted
    range: str | None  # the Range header as sent


@dataclass
class FileServer:
    root: Path
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times != 0 and fault.path in (None, path):
                    fault.times -= fault.times > 0
                    return fault
        return None

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """'bytes=a-b' / 'bytes=a-' / 'bytes=-n' -> (start, end inclusive); None: no usable Range; 'bad': 416."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].partition("-")
    try:
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return "bad" if start >= size or start > end else (start, end)


def _make_handler(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_HEAD(self):
            self._serve(head=True)

        def do_GET(self):
            self._serve(head=False)

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False):
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head: bool):
            path = unquote(urlsplit(self.path).path)
            requested = self.headers.get("Range")
            server.requests.append(Request(self.command, path, requested))
            fault = server._take_fault(path)
            if fault and fault.kind == "status":
                return self._send(fault.status, f"fault: HTTP {fault.status}\n".encode(), head=head)
            if fault and fault.kind == "body":
                return self._send(200, fault.body, {"Content-Type": "application/octet-stream"}, head)
            file = (server.root / path.lstrip("/")).resolve()
            if not file.is_file() or server.root.resolve() not in file.parents:
                return self._send(404, b"not found\n", head=head)
            data = file.read_bytes()
            span = None if fault and fault.kind == "ignore_range" else _parse_range(requested, len(data))
            headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if span == "bad":
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
            if span is None:
                status, body = 200, data
            else:
                start, end = span
                status, body = 206, data[start:end + 1]
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            if fault and fault.kind in ("drop", "reset"):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:fault.after])
                self.wfile.flush()
                if fault.kind == "reset":  # SO_LINGER 0: closing sends RST instead of FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.rfile.close()  # close now (rfile holds a reference), before socketserver's FIN
                    self.connection.close()
                else:
                    self.connection.shutdown(socket.SHUT_WR)
                self.close_connection = True
                return
            self._send(status, body, headers, head)

    return Handler

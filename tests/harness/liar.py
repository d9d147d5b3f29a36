"""A registry that lies: the distribution API, just enough for skopeo, over
plain HTTP on 127.0.0.1, serving crafted manifests and blobs with a chosen
misbehaviour per repository:

- ``honest``: what it was given;
- ``wrong-bytes``: each layer served as other bytes than its digest names;
- ``endless``: each layer streamed without end (chunked, zeros);
- ``short``: each layer cut off halfway, the connection closed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Stored:
    manifest: bytes
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest → bytes
    layers: set[str] = field(default_factory=set)
    behaviour: str = "honest"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    repos: Mapping[str, Stored] = {}

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes = b"", ctype: str = "application/json", **hdr: str):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in hdr.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/v2/", "/v2"):
            return self._send(200, b"{}")
        for kind in ("manifests", "blobs"):
            marker = f"/{kind}/"
            if marker in path:
                repo, _, ref = path[len("/v2/") :].partition(marker)
                break
        else:
            return self._send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
        stored = self.repos.get(repo)
        if stored is None:
            return self._send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
        if kind == "manifests":
            return self._send(
                200, stored.manifest, OCI_MANIFEST, Docker_Content_Digest=_sha(stored.manifest)
            )
        data = stored.blobs.get(ref)
        if data is None:
            return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
        if ref not in stored.layers or stored.behaviour == "honest":
            return self._send(200, data, "application/octet-stream")
        if stored.behaviour == "wrong-bytes":
            return self._send(200, data[::-1], "application/octet-stream")
        if stored.behaviour == "short":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return None
        # endless: chunked zeros until the client hangs up
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"\0" * (1 << 20)
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            while True:
                self.wfile.write(frame)
        except OSError:
            self.close_connection = True
        return None


@dataclass
class Liar:
    host: str
    repos: dict[str, Stored]

    def ref(self, repo: str) -> str:
        return f"{self.host}/{repo}:t"


def load_oci(layout_dir, behaviour: str) -> Stored:
    """A crafted OCI layout (tests/hostile/craft.py) as what the registry serves."""
    from pathlib import Path

    root = Path(layout_dir)
    index = json.loads((root / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    blobs = {"sha256:" + p.name: p.read_bytes() for p in (root / "blobs" / "sha256").iterdir()}
    manifest = blobs[digest]
    layers = {d["digest"] for d in json.loads(manifest)["layers"]}
    return Stored(manifest, blobs, layers, behaviour)


@contextmanager
def serve(repos: dict[str, Stored]) -> Iterator[Liar]:
    handler = type("Handler", (_Handler,), {"repos": repos})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Liar(f"127.0.0.1:{server.server_address[1]}", repos)
    finally:
        server.shutdown()
        server.server_close()

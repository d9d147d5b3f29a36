"""A real distribution registry on 127.0.0.1, started and stopped by the tests.

Requests are logged (JSON) to a file so tests can prove which blobs were
fetched (e.g. that a preflight fetched no layer).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CONFIG = """\
version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""

TLS_CONFIG = """\
  tls:
    certificate: {cert}
    key: {key}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str
    root: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    cert_dir: Path | None = None  # with TLS: a directory holding the CA (ca.crt)

    def ref(self, name: str) -> str:
        """A bare (docker://) reference to ``name`` on this registry."""
        return f"{self.host}/{name}"

    def requests(self) -> list[dict[str, object]]:
        """Every HTTP request the registry has logged so far (method, uri)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            method = rec.get("http.request.method")
            uri = rec.get("http.request.uri")
            if method and uri and rec.get("msg", "").startswith("response completed"):
                out.append({"method": method, "uri": uri})
        return out

    def blob_requests(self) -> list[str]:
        return [str(r["uri"]) for r in self.requests() if "/blobs/" in str(r["uri"])]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def self_signed(workdir: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1 signed by itself (openssl); returns (cert,
    key, a directory holding it as ``ca.crt`` for ``--cert-dir``)."""
    cert, key = workdir / "registry.crt", workdir / "registry.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    certs = workdir / "certs.d"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(cert.read_bytes())
    return cert, key, certs


def start_registry(workdir: Path, timeout: float = 20.0, *, tls: bool = False) -> Registry:
    """Start ``docker-registry serve`` on a free loopback port; wait until /v2/ answers.
    With ``tls`` it serves HTTPS with a self-signed certificate (see ``cert_dir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "storage"
    root.mkdir(exist_ok=True)
    port = free_port()
    config = workdir / "config.yml"
    text = CONFIG.format(root=root, port=port)
    cert_dir = None
    context = None
    if tls:
        import ssl

        cert, key, cert_dir = self_signed(workdir)
        text += TLS_CONFIG.format(cert=cert, key=key)
        context = ssl.create_default_context(cafile=str(cert))
    config.write_text(text)
    log_path = workdir / "registry.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
    )
    log_file.close()
    host = f"127.0.0.1:{port}"
    scheme = "https" if tls else "http"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{scheme}://{host}/v2/", timeout=1, context=context) as r:
                if r.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("registry did not answer /v2/ in time") from None
            # Polling a readiness endpoint, not sleeping to synchronise.
            time.sleep(0.05)
    return Registry(host=host, root=root, log_path=log_path, proc=proc, cert_dir=cert_dir)

"""A local HTTP server standing in for the Hugging Face hub (HF_ENDPOINT), so `pull` runs the
real huggingface_hub client against it: the revision and tree endpoints of the model API, and
HEAD / GET on resolve URLs with the headers the client reads (X-Repo-Commit, ETag = the
SHA-256 of a weight file, Content-Length), HTTP Range requests, a token check, and a
connection cut in the middle of a file to interrupt a download."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    token: str | None = None  # the Bearer token it requires, if any


@dataclass
class Hub:
    repos: dict[str, Repo] = field(default_factory=dict)
    cut: dict[str, list[int]] = field(default_factory=dict)  # file -> [bytes sent, cuts left]
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, range

    def add_directory(self, repo: str, directory: Path, **kwargs) -> Repo:
        files = {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}
        self.repos[repo] = Repo(files, **kwargs)
        return self.repos[repo]


def _etag(path: str, data: bytes) -> str:
    if path.endswith(".safetensors"):  # an LFS file: the hub's ETag is its SHA-256
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # a git blob id


def _handler(hub: Hub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict | None = None,
                   send_body: bool = True) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body and body:
                self.wfile.write(body)

        def _json(self, data) -> None:
            self._reply(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

        def _error(self, status: int, code: str | None, message: str) -> None:
            headers = {"Content-Type": "application/json"}
            if code:
                headers["X-Error-Code"] = code
                headers["X-Error-Message"] = message
            self._reply(status, json.dumps({"error": message}).encode(), headers)

        def _repo(self, name: str) -> Repo | None:
            repo = hub.repos.get(name)
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {name} not found")
                return None
            if repo.token is not None and \
                    self.headers.get("Authorization") != f"Bearer {repo.token}":
                self._error(401, None, "Invalid credentials in Authorization header")
                return None
            return repo

        def do_HEAD(self):
            self._serve(send_body=False)

        def do_GET(self):
            self._serve(send_body=True)

        def _serve(self, send_body: bool) -> None:
            path = unquote(urlparse(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
            if match:
                repo = self._repo(match[1])
                if repo is not None:
                    self._json({"id": match[1], "modelId": match[1], "sha": repo.sha,
                                "private": False, "siblings": [{"rfilename": f}
                                                               for f in repo.files]})
                return
            match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
            if match:
                repo = self._repo(match[1])
                if repo is not None:
                    entries = []
                    for name, data in repo.files.items():
                        entry = {"type": "file", "path": name, "size": len(data),
                                 "oid": hashlib.sha1(data).hexdigest()}
                        if name.endswith(".safetensors"):
                            entry["lfs"] = {"oid": _etag(name, data), "size": len(data),
                                            "pointerSize": 134}
                        entries.append(entry)
                    self._json(entries)
                return
            match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if not match:
                self._error(404, None, f"no route {path}")
                return
            repo = self._repo(match[1])
            if repo is None:
                return
            data = repo.files.get(match[3])
            if data is None:
                self._error(404, "EntryNotFound", f"{match[3]} does not exist")
                return
            headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{_etag(match[3], data)}"',
                       "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            start = 0
            ranged = self.headers.get("Range")
            if ranged and send_body:
                start = int(re.match(r"bytes=(\d+)-", ranged)[1])
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            headers["Content-Length"] = len(body)
            self.send_response(206 if ranged and send_body else 200)
            for key, value in headers.items():
                self.send_header(key, str(value))
            self.end_headers()
            if not send_body:
                return
            cut = hub.cut.get(match[3])
            if cut is not None and cut[1] > 0:  # send part of the file, then drop the connection
                cut[1] -= 1
                self.wfile.write(body[:cut[0]])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


class HubServer:
    """`with HubServer(hub) as url:` serves `hub` on a free loopback port."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        host, port = self.server.server_address
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

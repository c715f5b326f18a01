"""A stand-in for Kaggle's API on http://localhost:80, which the real client uses when
KAGGLE_API_ENVIRONMENT=LOCALHOST: the download call answers with a redirect to the zip, as Kaggle's does."""
from __future__ import annotations

import base64
import json
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DOWNLOAD = "/api/v1/datasets.DatasetApiService/DownloadDataset"


class FakeKaggle:
    def __init__(self, archives: dict[str, Path], username: str, key: str, port: int = 80):
        self.archives, self.auth = archives, "Basic " + base64.b64encode(f"{username}:{key}".encode()).decode()
        self.requests: list[tuple[str, str]] = []
        self.headers_seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _authorised(self) -> bool:
                outer.headers_seen.append(str(self.headers))
                if self.headers.get("Authorization") != outer.auth:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    body = b'{"code": 401, "message": "Unauthenticated"}'
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return False
                return True

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                outer.requests.append(("POST", self.path))
                if not self._authorised():
                    return
                handle = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
                if self.path != DOWNLOAD or handle not in outer.archives:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{port}/files/{handle}.zip")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                outer.requests.append(("GET", self.path))
                handle = self.path.removeprefix("/files/").removesuffix(".zip")
                if handle not in outer.archives:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = outer.archives[handle].read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Last-Modified", formatdate(usegmt=True))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def downloads(self) -> int:
        return sum(1 for m, _ in self.requests if m == "GET")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

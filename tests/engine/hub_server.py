#!/usr/bin/python3
"""A stand-in for the Hugging Face Hub in tests (python3 standard library only).

Serves the files under --root at their URL paths, so a test lays out the Hub URL layout on disk:
  ROOT/api/models/ORG/NAME/revision/REV          model info JSON ({"sha", "siblings"})
  ROOT/ORG/NAME/resolve/SHA/FILE                 file contents
Query strings are ignored. Supports "Range: bytes=N-" / "bytes=N-M" (206, or 416 past the end).

  --cut-once SUBSTR  the first GET whose path contains SUBSTR announces the full Content-Length,
                     sends half the body and drops the connection (to test resume)
  --token T          requests without "Authorization: Bearer T" get 401
  --log FILE         one JSON line per request: method, path, range, authorized

Binds 127.0.0.1 on --port (0: any free port) and prints "PORT <n>" on stdout once listening.
"""
import argparse
import json
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubHandler(BaseHTTPRequestHandler):
    server_version = "hub-test/1"

    def log_message(self, fmt, *args):  # quiet: the --log file is the record
        pass

    def _record(self, authorized):
        cfg = self.server.cfg
        if not cfg.log:
            return
        line = json.dumps({"method": self.command, "path": self.path,
                           "range": self.headers.get("Range"), "authorized": authorized})
        with self.server.lock, open(cfg.log, "a") as f:
            f.write(line + "\n")

    def _error(self, code, message):
        body = json.dumps({"error": message}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _should_cut(self, path):
        cfg = self.server.cfg
        with self.server.lock:
            if self.command == "GET" and cfg.cut_once and cfg.cut_once in path \
                    and not self.server.cut_done:
                self.server.cut_done = True
                return True
        return False

    def _serve(self):
        cfg = self.server.cfg
        authorized = not cfg.token or \
            self.headers.get("Authorization") == "Bearer " + cfg.token
        self._record(authorized)
        if not authorized:
            return self._error(401, "Invalid credentials in Authorization header")
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        full = os.path.realpath(os.path.join(cfg.root, path.lstrip("/")))
        if not full.startswith(os.path.realpath(cfg.root) + os.sep) or not os.path.isfile(full):
            return self._error(404, "Repository Not Found")
        with open(full, "rb") as f:
            data = f.read()
        start, end, status = 0, len(data), 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[len("bytes="):].partition("-")
            start = int(first)
            end = min(len(data), int(last) + 1) if last else len(data)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:end]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if self._should_cut(path):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    do_GET = _serve
    do_HEAD = _serve


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cut-once", default="")
    p.add_argument("--token", default="")
    p.add_argument("--log", default="")
    cfg = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", cfg.port), HubHandler)
    server.cfg = cfg
    server.lock = threading.Lock()
    server.cut_done = False
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HTTP/1.1 test server for the agent's end-to-end tests.

Usage: python3 python_server.py [--mode normal|blackhole] [--port N]
           [--upstream HOST:PORT [--upstream-keepalive]]

Prints "LISTENING <port>" on stdout once it accepts connections.

normal mode routes (any method also answers HEAD):
  GET  /status/<code>   -> <code> with a short body
  GET  /slow?ms=N       -> 200 after N milliseconds
  GET  /chunked         -> 200, Transfer-Encoding: chunked, 3 chunks
  GET  /big?bytes=N     -> 200 with N bytes
  GET  anything else    -> 200 "hello from python"
  POST/PUT anything     -> 200 echoing the request body
  GET  /api/orders/<id> -> only with --upstream: calls GET /db/orders/<id>
                           on the upstream over HTTP/1.1 (http.client) from
                           the handling thread, and answers the upstream's
                           status and body (502 if the call fails). One new
                           connection per call, or with --upstream-keepalive
                           one keep-alive connection per handler thread (the
                           server is thread-per-connection, so either way
                           the call is made by the thread that read the
                           request, inside it).
blackhole mode: accepts connections, reads requests, never answers.
"""

import http.client
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


# (host, port) of --upstream, or None.
UPSTREAM = None
UPSTREAM_KEEPALIVE = False
# The handler thread's keep-alive connection to the upstream.
_local = threading.local()


def upstream_get(path):
    """GET `path` on the upstream; returns (status, body)."""
    host, port = UPSTREAM
    conn = getattr(_local, "conn", None) if UPSTREAM_KEEPALIVE else None
    if conn is None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        _local.conn = None
        raise
    if UPSTREAM_KEEPALIVE and not resp.will_close:
        _local.conn = conn
    else:
        conn.close()
        _local.conn = None
    return resp.status, body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agent-tests-python/1.0"
    sys_version = ""

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _send(self, code, body, content_type="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304) and code >= 200:
            self.wfile.write(body)

    def _get(self):
        url = urlsplit(self.path)
        path = url.path
        query = parse_qs(url.query)
        if UPSTREAM is not None and path.startswith("/api/orders/"):
            try:
                code, body = upstream_get("/db/orders/" + path[len("/api/orders/"):])
            except (OSError, http.client.HTTPException) as e:
                code, body = 502, b"upstream failed: %s\n" % str(e).encode()
            self._send(code, body)
        elif path.startswith("/status/"):
            try:
                code = int(path[len("/status/"):])
            except ValueError:
                code = 400
            self._send(code, b"status %d\n" % code)
        elif path == "/slow":
            ms = int(query.get("ms", ["1000"])[0])
            time.sleep(ms / 1000.0)
            self._send(200, b"slow %d\n" % ms)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                for part in (b"chunk-one\n", b"chunk-two\n", b"chunk-three\n"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
        elif path == "/big":
            n = int(query.get("bytes", ["200000"])[0])
            self._send(200, b"x" * n)
        else:
            self._send(200, b"hello from python\n")

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self):
        self._get()

    def do_HEAD(self):
        self._get()

    def do_DELETE(self):
        self._get()

    def do_POST(self):
        body = self._read_body()
        self._send(200, body, self.headers.get("Content-Type", "application/octet-stream"))

    do_PUT = do_POST
    do_PATCH = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096
    allow_reuse_address = True


def blackhole(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    print("LISTENING %d" % sock.getsockname()[1], flush=True)

    def hold(conn):
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        conn, _ = sock.accept()
        threading.Thread(target=hold, args=(conn,), daemon=True).start()


def main():
    global UPSTREAM, UPSTREAM_KEEPALIVE
    mode = "normal"
    port = 0
    args = sys.argv[1:]
    while args:
        a = args.pop(0)
        if a == "--mode":
            mode = args.pop(0)
        elif a == "--port":
            port = int(args.pop(0))
        elif a == "--upstream":
            host, _, p = args.pop(0).rpartition(":")
            UPSTREAM = (host, int(p))
        elif a == "--upstream-keepalive":
            UPSTREAM_KEEPALIVE = True
    if mode == "blackhole":
        blackhole(port)
        return
    httpd = Server(("127.0.0.1", port), Handler)
    print("LISTENING %d" % httpd.server_address[1], flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()

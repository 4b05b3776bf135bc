"""Test fixtures for //publish integration tests: Debian's docker-registry on loopback, and a
fault-injecting HTTP proxy.

RegistryFixture(variant, tmpdir) starts `docker-registry serve` on 127.0.0.1:<free port>
with filesystem storage in a temp dir, in one of three variants:
  "plain"     plain HTTP, no auth
  "htpasswd"  plain HTTP, htpasswd (bcrypt) basic auth; user/password in .username/.password
  "tls"       HTTPS with a certificate signed by a CA the fixture generates (.ca_cert)
  "token"     plain HTTP, bearer-token auth: a TokenServer (below) on another free port
              issues RS256 JWTs (x5c header) for .username/.password
stop() is idempotent; use it with unittest's addClassCleanup/addCleanup so the server stops
even when a test fails.

FaultProxy(backend_port) forwards HTTP to the registry, preserving the Host header (so the
registry's Location headers point back at the proxy), and injects faults selected by rules:
  proxy.fail("PATCH", times=2)              answer the next 2 PATCHes with 500
  proxy.reset("PATCH", times=1)             read half the body of the next PATCH, then close
  proxy.fail("PUT", path_contains="/manifests/", times=None)   always 500
  proxy.rewrite_location("POST", "/blobs/uploads/", "http://127.0.0.1:9")
                                            point the Location of matching replies elsewhere
  proxy.add_link("GET", "/tags/list", "<http://127.0.0.1:9/v2/x/tags/list?last=a>; rel=\"next\"")
  proxy.redirect("HEAD", "/blobs/", "http://127.0.0.1:9/blob")   answer with 307 + Location
  proxy.tamper("GET", "/blobs/sha256:ab..", "flip")   serve the registry's reply with its middle
                                            byte flipped ("flip") or only its first half
                                            ("truncate", Content-Length saying so); times=None
Counters: proxy.counts[(method)] and proxy.bytes_in[(method)].
FaultProxy(port, tls=(cert, key)) serves HTTPS instead (forwarding plain HTTP to the registry,
which then builds http:// Locations: a downgrade) unless forwarded_proto="https" tells the
registry the original scheme; a plain-HTTP request that reaches the TLS port is recorded in
proxy.plaintext (its request head) and dropped.

Recorder() is an HTTP server on another free port that records every request it gets
(.requests: method, path, headers) and answers 404: where a leaked request would land.

HostileServer(mode) is a raw-socket HTTP server that misbehaves on every request:
  "silent"         reads the request, never answers
  "stall"          sends the status line and headers (Content-Length: 1000), one body byte,
                   then nothing
  "trickle"        sends headers, then one body byte every 0.5 s
  "endless_body"   200 with a chunked body that never ends (stops at 256 MiB per connection)
  "endless_headers" a status line, then header lines that never end (stops at 256 MiB)
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def make_certs(d):
    """A CA and a server certificate for 127.0.0.1/localhost signed by it, in directory d.
    Returns (ca_key, ca_cert, server_key, server_cert)."""
    ca_key, ca_cert = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    server_key, server_cert = os.path.join(d, "server.key"), os.path.join(d, "server.pem")
    csr, ext = os.path.join(d, "server.csr"), os.path.join(d, "ext.cnf")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=kiln test CA", "-keyout", ca_key, "-out", ca_cert])
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", server_key, "-out", csr])
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", server_cert])
    return ca_key, ca_cert, server_key, server_cert


class RegistryFixture:
    USER = "kiln"
    PASSWORD = "s3cret-pass"

    def __init__(self, variant, tmpdir):
        assert variant in ("plain", "htpasswd", "tls", "token"), variant
        self.variant = variant
        self.dir = os.path.join(tmpdir, "registry-" + variant)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.proc = None
        self.ca_cert = None
        self.username = self.password = None
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            "    rootdirectory: %s" % self.data,
            "  delete:",
            "    enabled: true",
            "http:",
            "  addr: %s" % self.host,
        ]
        if variant == "tls":
            self._make_certs()
            lines += ["  tls:", "    certificate: %s" % self.server_cert, "    key: %s" % self.server_key]
        if variant == "htpasswd":
            self.username, self.password = self.USER, self.PASSWORD
            hp = os.path.join(self.dir, "htpasswd")
            with open(hp, "w") as f:
                f.write(run(["htpasswd", "-Bbn", self.username, self.password]).stdout)
            lines += ["auth:", "  htpasswd:", "    realm: kiln-test", "    path: %s" % hp]
        self.token_server = None
        if variant == "token":
            self.username, self.password = self.USER, self.PASSWORD
            self.token_server = TokenServer(self.dir, self.username, self.password)
            lines += ["auth:", "  token:",
                      "    realm: http://%s/token" % self.token_server.host,
                      "    service: kiln-registry",
                      "    issuer: kiln-token-issuer",
                      "    rootcertbundle: %s" % self.token_server.cert]
        self.config = os.path.join(self.dir, "config.yml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _make_certs(self):
        d = self.dir
        self.ca_key, self.ca_cert, self.server_key, self.server_cert = make_certs(d)
        # skopeo reads CA certificates from a directory of *.crt files.
        self.cert_dir = os.path.join(d, "certs.d")
        os.makedirs(self.cert_dir)
        shutil.copy(self.ca_cert, os.path.join(self.cert_dir, "ca.crt"))

    @property
    def scheme(self):
        return "https" if self.variant == "tls" else "http"

    def start(self):
        self.log = open(os.path.join(self.dir, "registry.log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited: %s" % self.read_log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not listen on %s: %s" % (self.host, self.read_log()))

    def read_log(self):
        try:
            with open(os.path.join(self.dir, "registry.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # -- direct registry access (urllib), for checking what the publisher did --------------
    def request(self, method, path, headers=None, host=None):
        url = "%s://%s%s" % (self.scheme, host or self.host, path)
        req = urllib.request.Request(url, method=method, headers=headers or {})
        if self.variant == "token":
            req.add_header("Authorization", "Bearer " + self.token_server.issue(
                "admin", [{"type": "repository", "name": path.split("/")[2] + "/" + path.split("/")[3],
                           "actions": ["pull"]}]))
        elif self.username:
            import base64
            tok = base64.b64encode(("%s:%s" % (self.username, self.password)).encode()).decode()
            req.add_header("Authorization", "Basic " + tok)
        ctx = ssl.create_default_context(cafile=self.ca_cert) if self.ca_cert else None
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def manifest(self, repo, ref):
        return self.request("GET", "/v2/%s/manifests/%s" % (repo, ref), {
            "Accept": "application/vnd.oci.image.manifest.v1+json"})

    def tags(self, repo):
        status, _, body = self.request("GET", "/v2/%s/tags/list" % repo)
        if status == 404:
            return []
        return json.loads(body).get("tags") or []

    def storage_snapshot(self):
        """Every file under the storage dir with its size (upload sessions included)."""
        out = {}
        for root, _, files in os.walk(self.data):
            for f in files:
                p = os.path.join(root, f)
                out[os.path.relpath(p, self.data)] = os.path.getsize(p)
        return out


class FaultProxy:
    def __init__(self, backend_port, tls=None, forwarded_proto=None):
        self.backend_port = backend_port
        self.rules = []
        self.header_rules = []
        self.plaintext = []
        self.tampered = []
        self.counts = {}
        self.bytes_in = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                rule = proxy._match(self.command, self.path)
                with proxy.lock:
                    proxy.counts[self.command] = proxy.counts.get(self.command, 0) + 1
                if rule == "reset":
                    self.rfile.read(n // 2)
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                body = self.rfile.read(n) if n else b""
                with proxy.lock:
                    proxy.bytes_in[self.command] = proxy.bytes_in.get(self.command, 0) + len(body)
                if isinstance(rule, tuple) and rule[0] == "redirect":
                    self.send_response(307)
                    self.send_header("Location", rule[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if rule == "fail":
                    msg = b'{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.backend_port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
                if forwarded_proto:
                    headers["X-Forwarded-Proto"] = forwarded_proto
                conn.request(self.command, self.path, body=body if n else None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if isinstance(rule, tuple) and rule[0] == "tamper" and data:
                    with proxy.lock:
                        proxy.tampered.append(self.path)
                    if rule[1] == "flip":
                        k = len(data) // 2
                        data = data[:k] + bytes([data[k] ^ 0x01]) + data[k + 1:]
                    else:
                        data = data[:len(data) // 2]
                self.send_response_only(resp.status, resp.reason)
                rewrite = proxy._header_rules(self.command, self.path)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                        if k.lower() == "location" and "location" in rewrite:
                            import urllib.parse
                            u = urllib.parse.urlsplit(v)
                            v = rewrite["location"] + urllib.parse.urlunsplit(
                                ("", "", u.path, u.query, u.fragment))
                        self.send_header(k, v)
                if "link" in rewrite:
                    self.send_header("Link", rewrite["link"])
                self.send_header("Content-Length", resp.getheader("Content-Length", str(len(data)))
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                if ctx is None:
                    return sock, addr
                sock.settimeout(10)
                try:
                    first = sock.recv(1, socket.MSG_PEEK)
                    if first and first != b"\x16":  # not a TLS handshake: plain HTTP
                        head = b""
                        while b"\r\n\r\n" not in head and len(head) < 65536:
                            chunk = sock.recv(4096)
                            if not chunk:
                                break
                            head += chunk
                        with proxy.lock:
                            proxy.plaintext.append(head.split(b"\r\n\r\n")[0].decode("latin-1"))
                        sock.close()
                        raise OSError("plain HTTP on the TLS port")
                    tls_sock = ctx.wrap_socket(sock, server_side=True)
                    tls_sock.settimeout(None)
                    return tls_sock, addr
                except (OSError, ssl.SSLError):
                    sock.close()
                    raise

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, method, times=1, path_contains=""):
        self.rules.append({"kind": "fail", "method": method, "times": times, "path": path_contains})

    def reset(self, method, times=1, path_contains=""):
        self.rules.append({"kind": "reset", "method": method, "times": times, "path": path_contains})

    def rewrite_location(self, method, path_contains, new_base):
        """Replace scheme://host:port of the Location of matching replies with new_base."""
        self.header_rules.append({"method": method, "path": path_contains, "location": new_base})

    def add_link(self, method, path_contains, link):
        self.header_rules.append({"method": method, "path": path_contains, "link": link})

    def redirect(self, method, path_contains, location, times=None):
        self.rules.append({"kind": ("redirect", location), "method": method, "times": times,
                           "path": path_contains})

    def tamper(self, method, path_contains, mode, times=None):
        assert mode in ("flip", "truncate"), mode
        self.rules.append({"kind": ("tamper", mode), "method": method, "times": times,
                           "path": path_contains})

    def _header_rules(self, method, path):
        out = {}
        with self.lock:
            for r in self.header_rules:
                if r["method"] == method and r["path"] in path:
                    out.update({k: v for k, v in r.items() if k in ("location", "link")})
        return out

    def _match(self, method, path):
        with self.lock:
            for r in self.rules:
                if r["method"] == method and r["path"] in path and (r["times"] is None or r["times"] > 0):
                    if r["times"] is not None:
                        r["times"] -= 1
                    return r["kind"]
        return None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Recorder:
    """Records every request that reaches it (method, path, headers) and answers 404."""

    def __init__(self):
        self.requests = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                rec.requests.append({"method": self.command, "path": self.path,
                                     "headers": {k.lower(): v for k, v in self.headers.items()}})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class HostileServer:
    """A raw-socket HTTP/1.1 server that misbehaves on every request (see the module doc)."""

    MODES = ("silent", "stall", "trickle", "endless_body", "endless_headers")
    LIMIT = 256 << 20  # bytes per connection, so a client without caps cannot eat the host

    def __init__(self, mode):
        assert mode in self.MODES, mode
        self.mode = mode
        self.stopped = threading.Event()
        self.connections = 0
        self.bytes_sent = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.host = "127.0.0.1:%d" % self.port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _send(self, conn, data):
        conn.sendall(data)
        self.bytes_sent += len(data)

    def _serve(self, conn):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            sent = 0
            if self.mode == "silent":
                self.stopped.wait()
            elif self.mode == "stall":
                self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 1000\r\n\r\n{")
                self.stopped.wait()
            elif self.mode == "trickle":
                self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                while not self.stopped.wait(0.5):
                    self._send(conn, b" ")
            elif self.mode == "endless_body":
                self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
                chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
                while sent < self.LIMIT and not self.stopped.is_set():
                    self._send(conn, chunk)
                    sent += len(chunk)
            elif self.mode == "endless_headers":
                self._send(conn, b"HTTP/1.1 200 OK\r\n")
                line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
                while sent < self.LIMIT and not self.stopped.is_set():
                    self._send(conn, line * 64)
                    sent += len(line) * 64
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopped.set()
        self.sock.close()


def _b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A minimal Docker registry token endpoint (distribution's "token" auth): GET /token with
    Basic credentials returns {"token": JWT} granting the requested repository scopes. The
    JWT is RS256-signed with openssl; its x5c header carries the self-signed certificate
    that the registry trusts via rootcertbundle."""

    def __init__(self, tmpdir, username, password):
        import base64
        self.key = os.path.join(tmpdir, "token.key")
        self.cert = os.path.join(tmpdir, "token.pem")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=kiln token issuer", "-keyout", self.key, "-out", self.cert])
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.expected = "Basic " + base64.b64encode(("%s:%s" % (username, password)).encode()).decode()
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                import urllib.parse
                u = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(u.query)
                server.requests.append(q)
                if self.headers.get("Authorization") != server.expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for scope in q.get("scope", []):
                    parts = scope.split(":")
                    if len(parts) == 3 and parts[0] == "repository":
                        access.append({"type": "repository", "name": parts[1],
                                       "actions": parts[2].split(",")})
                body = json.dumps({"token": server.issue(username, access)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue(self, subject, access):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": "kiln-token-issuer", "sub": subject, "aud": "kiln-registry",
                  "exp": now + 600, "nbf": now - 10, "iat": now, "jti": str(now) + subject,
                  "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input.encode(), check=True, capture_output=True).stdout
        return signing_input + "." + _b64url(sig)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

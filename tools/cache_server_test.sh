#!/usr/bin/env bash
# tools/cache-server against a real nginx on loopback: usage errors (exit 2), start, Bazel's HTTP
# cache protocol (PUT then GET of /cas/ and /ac/ entries, a miss is 404, an entry can be
# overwritten, a 3 MiB body), a second start refused, a directory nobody can reach refused,
# stop (port closed, process gone, files kept), stop when stopped; --upstream: bad URL, header,
# CA refused (exit 2), a TLS upstream that wants a bearer token reached through the proxy
# (PUT/GET/404, stored under the prefix), without the header 401, unverifiable certificate 502.
# Usage: cache_server_test.sh PATH/TO/cache-server
set -uo pipefail
server=$1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

if [[ ! -x /usr/sbin/nginx ]]; then
  echo "FAIL: /usr/sbin/nginx missing (Debian package nginx; run tools/setup)"
  exit 1
fi

# Under /tmp, not $TEST_TMPDIR: as root, nginx's workers run as nobody, who cannot traverse
# Bazel's output base (/root/...). That case is the "closed directory" check below.
dir=$(mktemp -d /tmp/kiln-cache-test.XXXXXX)
cleanup() {
  "$server" stop --dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

expect_exit() { # expect_exit CODE TEXT -- args...
  local want=$1 text=$2
  shift 3
  local out rc
  out=$("$server" "$@" 2>&1)
  rc=$?
  if [[ $rc -ne $want ]]; then
    fail "'$*' exited $rc, want $want: $out"
  elif [[ "$out" != *"$text"* ]]; then
    fail "'$*' said '$out', want it to contain '$text'"
  else
    pass "'$*' -> exit $rc ($text)"
  fi
}

expect_exit 2 "Usage:" --
expect_exit 2 "unknown command 'serve'" -- serve
expect_exit 2 "--port must be 1-65535, got 'abc'" -- start --dir "$dir" --port abc
expect_exit 2 "--port must be 1-65535, got '70000'" -- start --dir "$dir" --port 70000
expect_exit 2 "unknown argument '--bogus'" -- start --bogus
expect_exit 2 "stop needs --dir DIR" -- stop
expect_exit 1 "not running in" -- stop --dir "$dir"

expect_exit 0 "serving $url from $dir" -- start --dir "$dir" --port "$port"
expect_exit 1 "already running in $dir" -- start --dir "$dir" --port "$port"
expect_exit 0 "running pid" -- status --dir "$dir"
grep -q "listen 127.0.0.1:$port;" "$dir/nginx.conf" && pass "listens on loopback only" ||
  fail "nginx.conf does not listen on 127.0.0.1:$port only"

code() { curl -sS -o /dev/null -w '%{http_code}' "$@"; }
blob=$dir/blob
head -c 3145728 /dev/urandom >"$blob"
sha=$(sha256sum "$blob" | cut -d' ' -f1)
c=$(code -X PUT --data-binary @"$blob" "$url/cas/$sha")
[[ $c == 201 ]] && pass "PUT /cas/<sha256> (3 MiB) -> 201" || fail "PUT /cas -> $c, want 201"
got=$(curl -sS "$url/cas/$sha" | sha256sum | cut -d' ' -f1)
[[ $got == "$sha" ]] && pass "GET /cas/<sha256> returns the same bytes" || fail "GET /cas returned sha256 $got, want $sha"
c=$(code "$url/ac/$(printf '0%.0s' {1..64})")
[[ $c == 404 ]] && pass "GET of a missing /ac/ entry -> 404" || fail "missing /ac/ entry -> $c, want 404"
c=$(code -X PUT --data-binary 'result one' "$url/ac/$sha")
[[ $c == 201 ]] || fail "PUT /ac -> $c, want 201"
c=$(code -X PUT --data-binary 'result two' "$url/ac/$sha")
[[ $c == 204 || $c == 201 ]] || fail "second PUT /ac -> $c, want 204"
got=$(curl -sS "$url/ac/$sha")
[[ $got == "result two" ]] && pass "an /ac/ entry is overwritten by a later PUT" || fail "GET /ac after overwrite: '$got'"

pid=$(cat "$dir/nginx.pid")
expect_exit 0 "stopped (pid $pid)" -- stop --dir "$dir"
if kill -0 "$pid" 2>/dev/null; then fail "nginx pid $pid still alive after stop"; else pass "nginx gone after stop"; fi
c=$(curl -sS -o /dev/null -w '%{http_code}' "$url/cas/$sha" 2>/dev/null)
[[ $c == 000 ]] && pass "port $port closed after stop" || fail "port $port still answers ($c) after stop"
[[ -f "$dir/cache/cas/$sha" ]] && pass "cache files kept after stop" || fail "cache file gone after stop"
expect_exit 1 "stopped entries 2" -- status --dir "$dir"

if [[ $(id -u) -eq 0 ]]; then
  closed=$(mktemp -d /tmp/kiln-cache-closed.XXXXXX)
  chmod 0700 "$closed"
  expect_exit 1 "cannot reach $closed/srv/cache" -- start --dir "$closed/srv" --port "$port"
  rm -rf "$closed"
fi

# --- --upstream: a TLS cache that wants a bearer token, reached through the loopback proxy ---
expect_exit 2 "--upstream must be https://HOST[:PORT][/PREFIX], got 'http://cache.example.com'" -- \
  start --dir "$dir" --port "$port" --upstream http://cache.example.com
expect_exit 2 "--upstream-header must be 'Name: value'" -- \
  start --dir "$dir" --port "$port" --upstream https://cache.example.com --upstream-header 'Authorization: "x"; evil'
expect_exit 2 "--upstream-header needs --upstream" -- start --dir "$dir" --port "$port" --upstream-header 'A: b'
expect_exit 2 "--upstream-ca: cannot read '/nonexistent/ca.pem'" -- \
  start --dir "$dir" --port "$port" --upstream https://cache.example.com --upstream-ca /nonexistent/ca.pem

up=$(mktemp -d /tmp/kiln-cache-upstream.XXXXXX)
chmod 0755 "$up"
mkdir -p "$up/root" "$up/tmp"
[[ $(id -u) -eq 0 ]] && chown nobody:nogroup "$up/root" "$up/tmp"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$up/key.pem" -out "$up/cert.pem" -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost >/dev/null 2>&1
uport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$up/nginx.conf" <<EOF
$([[ $(id -u) -eq 0 ]] && echo "user nobody nogroup;")
daemon on;
pid $up/nginx.pid;
error_log $up/error.log warn;
events { worker_connections 64; }
http {
  access_log $up/access.log;
  client_body_temp_path $up/tmp;
  server {
    listen 127.0.0.1:$uport ssl;
    ssl_certificate $up/cert.pem;
    ssl_certificate_key $up/key.pem;
    root $up/root;
    client_max_body_size 0;
    location / {
      if (\$http_authorization != "Bearer kiln-test") { return 401; }
      dav_methods PUT;
      create_full_put_path on;
    }
  }
}
EOF
/usr/sbin/nginx -q -p "$up" -e "$up/error.log" -c "$up/nginx.conf" || fail "upstream nginx did not start: $(tail -3 "$up/error.log")"
stop_upstream() { kill "$(cat "$up/nginx.pid" 2>/dev/null)" 2>/dev/null; sleep 0.3; rm -rf "$up"; }
trap 'cleanup; stop_upstream' EXIT

pdir=$dir/proxy
expect_exit 0 "forwarding to https://localhost:$uport/kiln" -- start --dir "$pdir" --port "$port" \
  --upstream "https://localhost:$uport/kiln" --upstream-ca "$up/cert.pem" --upstream-header 'Authorization: Bearer kiln-test'
[[ $(stat -c %a "$pdir/nginx.conf") == 600 ]] && pass "proxy config (holds the token) is 0600" || fail "proxy config mode $(stat -c %a "$pdir/nginx.conf")"
c=$(code -X PUT --data-binary @"$blob" "$url/cas/$sha")
[[ $c == 201 ]] && pass "PUT through the proxy -> 201" || fail "PUT through the proxy -> $c: $(tail -2 "$pdir/error.log")"
[[ -f "$up/root/kiln/cas/$sha" ]] && pass "the upstream stored it under its prefix (kiln/cas/<sha256>)" || fail "upstream has no kiln/cas/$sha"
got=$(curl -sS "$url/cas/$sha" | sha256sum | cut -d' ' -f1)
[[ $got == "$sha" ]] && pass "GET through the proxy returns the same bytes" || fail "GET through the proxy: sha256 $got"
c=$(code "$url/ac/$(printf '0%.0s' {1..64})")
[[ $c == 404 ]] && pass "a miss through the proxy -> 404" || fail "miss through the proxy -> $c"
expect_exit 0 "stopped" -- stop --dir "$pdir"

expect_exit 0 "forwarding to" -- start --dir "$pdir" --port "$port" \
  --upstream "https://localhost:$uport/kiln" --upstream-ca "$up/cert.pem"
c=$(code "$url/cas/$sha")
[[ $c == 401 ]] && pass "without the header the upstream's 401 comes through" || fail "without the header -> $c, want 401"
expect_exit 0 "stopped" -- stop --dir "$pdir"

expect_exit 0 "forwarding to" -- start --dir "$pdir" --port "$port" \
  --upstream "https://localhost:$uport/kiln" --upstream-header 'Authorization: Bearer kiln-test'
c=$(code "$url/cas/$sha")
[[ $c == 502 ]] && pass "an upstream certificate the system CAs do not sign -> 502 (verified)" || fail "unverifiable upstream -> $c, want 502"
expect_exit 0 "stopped" -- stop --dir "$pdir"

if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"

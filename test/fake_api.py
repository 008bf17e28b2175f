#!/usr/bin/env python3
"""fake_api.py - a fault-injecting fake HTTP/1.1 JSON API for pgbatch's tests,
benchmark and demo.

Python 3.11 standard library only (asyncio streams and a small hand-written
HTTP/1.1 parser).  It listens on 127.0.0.1 only and never opens a connection
to anything.  The protocol (fault specs, control API, stats) is described in
test/fake_api.md.

    python3 test/fake_api.py --port 0 --portfile F --pidfile F \
        [--latency-ms N] [--max-hang S] [--log F]
"""

import argparse
import asyncio
import email.utils
import hashlib
import http
import itertools
import json
import math
import os
import re
import resource
import signal
import socket
import struct
import sys
import time
from urllib.parse import parse_qs

MAX_HEAD = 64 * 1024            # request line + headers
READ_CHUNK = 65536
STREAM_CHUNK = 64 * 1024        # big= bodies are written in pieces of this size
MAX_BIG = 2 * 1024 * 1024 * 1024  # cap for big=BYTES
MAX_PER_KEY = 1000              # arrivals kept per Idempotency-Key
MAX_LIMIT = 100000              # entries per /_stats/requests page

REASONS = {s.value: s.phrase for s in http.HTTPStatus}

FAULT_TOKEN_RE = re.compile(r"\[fault:([^\]\s]+)\]")
COUNT_RE = re.compile(r"x([0-9]+)$")
NAMED_RE = re.compile(r"^([a-z]+)(?:=([0-9]+))?$")

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error",
    403: "permission_error", 404: "not_found_error",
    429: "rate_limit_error", 500: "server_error", 502: "bad_gateway",
    503: "service_unavailable", 504: "gateway_timeout",
}


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def escape_echo(body, headers, mode):
    """The body with each echoed header value re-encoded as `mode` says:
    "slash" JSON-escapes every "/" as "\\/", "unicode" writes every character
    as \\uXXXX, "percent" percent-encodes every byte (all of them valid
    JSON).  For tests of secret masking.  One pass, longest values first, so
    that no value is re-encoded inside another's new form."""
    coded = {}
    for value in headers.values():
        if not value:
            continue
        plain = json.dumps(value, ensure_ascii=False)[1:-1]
        if mode == "slash":
            new = plain.replace("/", "\\/")
        elif mode == "unicode":
            units = value.encode("utf-16-be")
            new = "".join("\\u%02x%02x" % (units[i], units[i + 1])
                          for i in range(0, len(units), 2))
        else:
            new = "".join("%%%02X" % b for b in value.encode())
        coded[plain.encode()] = new.encode()
    if not coded:
        return body
    pattern = re.compile(b"|".join(re.escape(k) for k in sorted(coded, key=len, reverse=True)))
    return pattern.sub(lambda m: coded[m.group(0)], body)


class BadRequest(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


class FaultSpecError(ValueError):
    pass


class Fault:
    """A parsed fault spec: KIND[=ARG][:ra=..][:ms=..][xN]."""

    __slots__ = ("text", "kind", "code", "arg", "ra", "ms", "count")

    def __init__(self, text):
        s = text.strip().lower()
        self.text = s
        self.count = None
        m = COUNT_RE.search(s)
        if m:
            self.count = int(m.group(1))
            s = s[:m.start()]
        parts = s.split(":")
        base, opts = parts[0], parts[1:]
        self.code = None
        self.arg = None
        self.ra = None      # ("s", seconds) or ("date", seconds)
        self.ms = 0
        if base == "" and not opts and self.count is None:
            self.kind = "none"      # "" means no fault, like "none"
        elif re.fullmatch(r"[0-9]{3}", base):
            code = int(base)
            if code != 200 and not 400 <= code <= 599:
                raise FaultSpecError("status must be 200 or 400-599: %r" % text)
            self.kind = "none" if code == 200 else "status"
            self.code = code
        else:
            m = NAMED_RE.match(base)
            if not m:
                raise FaultSpecError("bad fault spec %r" % text)
            self.kind, arg = m.group(1), m.group(2)
            if self.kind == "ok":
                self.kind = "none"
            if self.kind in ("slow", "big"):
                if arg is None:
                    raise FaultSpecError("%s needs =NUMBER: %r" % (self.kind, text))
                self.arg = int(arg)
            elif self.kind in ("none", "hang", "reset", "close", "badjson", "badencoding",
                               "partial"):
                if arg is not None:
                    raise FaultSpecError("%s takes no =value: %r" % (self.kind, text))
            else:
                raise FaultSpecError("unknown fault %r" % text)
        for o in opts:
            name, eq, val = o.partition("=")
            if not eq:
                raise FaultSpecError("bad option %r in %r" % (o, text))
            if name == "ra":
                if val.isdigit():
                    self.ra = ("s", int(val))
                elif val.startswith("date") and (val[4:] == "" or val[4:].isdigit()):
                    self.ra = ("date", int(val[4:] or 2))
                else:
                    raise FaultSpecError("bad ra= in %r" % text)
            elif name == "ms" and val.isdigit():
                self.ms = int(val)
            else:
                raise FaultSpecError("bad option %r in %r" % (o, text))

    def __repr__(self):
        return self.text


class Rule:
    def __init__(self, d):
        if not isinstance(d, dict):
            raise ValueError("a rule must be an object")
        unknown = set(d) - {"match", "fault", "probability", "seed"}
        if unknown:
            raise ValueError("unknown rule fields %s" % sorted(unknown))
        m = d.get("match") or {}
        if not isinstance(m, dict):
            raise ValueError("match must be an object")
        unknown = set(m) - {"path_prefix", "path", "method", "key_contains",
                            "body_contains"}
        if unknown:
            raise ValueError("unknown match fields %s" % sorted(unknown))
        for k, v in m.items():
            if not isinstance(v, str):
                raise ValueError("match.%s must be a string" % k)
        self.match = m
        if not isinstance(d.get("fault"), str):
            raise ValueError("rule needs a fault string")
        self.fault = Fault(d["fault"])
        p = d.get("probability", 1.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError("probability must be a number in [0, 1]")
        self.probability = float(p)
        self.seed = str(d.get("seed", 0))
        self.src = d
        self.body_contains = m.get("body_contains", "").encode()

    def applies(self, method, path, key, body, hash_key):
        m = self.match
        if "path_prefix" in m and not path.startswith(m["path_prefix"]):
            return False
        if "path" in m and path != m["path"]:
            return False
        if "method" in m and method != m["method"].upper():
            return False
        if "key_contains" in m and (key is None or m["key_contains"] not in key):
            return False
        if self.body_contains and self.body_contains not in body:
            return False
        if self.probability >= 1.0:
            return True
        h = hashlib.sha256(("%s\0%s" % (self.seed, hash_key)).encode()).digest()
        return int.from_bytes(h[:8], "big") / 2.0 ** 64 < self.probability


def trim_dict(d, cap):
    """Keeps the newest 3/4 of cap entries once d exceeds cap (amortised O(1))."""
    if len(d) <= cap:
        return d
    keep = max(1, cap * 3 // 4)
    return dict(itertools.islice(d.items(), len(d) - keep, None))


class State:
    def __init__(self, args):
        self.args = args
        self.cli_latency = args.latency_ms
        self.max_hang = args.max_hang
        self.log_cap = args.log_cap
        self.key_cap = args.key_cap
        self.in_flight = 0
        self.connections_open = 0
        self.started = time.time()
        self.logf = open(args.log, "a", buffering=1 << 16) if args.log else None
        self.reset()

    def reset(self):
        self.rules = []
        self.latency_ms = self.cli_latency
        self.total = 0
        self.status_counts = {}
        self.outcome_counts = {}
        self.path_counts = {}
        self.method_counts = {}
        self.max_in_flight = self.in_flight
        self.connections_opened = 0
        self.log = []           # entries: [seq, t, method, path, key, auth, status, outcome, fault, t_done]
        self.log_base = 0       # seq of log[0]
        self.keys = {}          # idempotency key -> [n, [[t, status, t_done], ...], dropped]
        self.body_counts = {}   # (path, sha1(body)) -> n, for requests without a key
        self.limits = {}        # path -> the state of its emulated rate limit
        self.rate_limited = 0   # answers that limit refused with 429
        self.reset_at = time.time()

    def new_log_entry(self, t, method, path, key, auth):
        e = [self.log_base + len(self.log), t, method, path, key, auth, None, None, None, None]
        self.log.append(e)
        if len(self.log) > self.log_cap:
            drop = max(1, self.log_cap // 4)
            del self.log[:drop]
            self.log_base += drop
        return e

    @staticmethod
    def entry_dict(e):
        return {"seq": e[0], "t": e[1], "method": e[2], "path": e[3], "key": e[4],
                "auth": e[5], "status": e[6], "outcome": e[7], "fault": e[8],
                "t_done": e[9]}

    def stats(self, query):
        out = {
            "total": self.total,
            "status": {str(k): v for k, v in sorted(self.status_counts.items())},
            "outcomes": dict(self.outcome_counts),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "rate_limited": self.rate_limited,
            "paths": dict(self.path_counts),
            "methods": dict(self.method_counts),
            "connections_opened": self.connections_opened,
            "connections_open": self.connections_open,
            "latency_ms": self.latency_ms,
            "rules": len(self.rules),
            "log_first_seq": self.log_base,
            "log_next_seq": self.log_base + len(self.log),
            "started": self.started,
            "reset_at": self.reset_at,
            "now": time.time(),
        }
        if "key" in query:
            wanted = query["key"]
            out["keys"] = {k: self.key_dict(self.keys[k]) for k in wanted if k in self.keys}
        elif query.get("keys", ["1"])[-1] not in ("0", "false", "no"):
            out["keys"] = {k: self.key_dict(v) for k, v in self.keys.items()}
        return out

    @staticmethod
    def key_dict(v):
        return {"n": v[0], "requests": v[1], "dropped": v[2]}

    def requests_page(self, query):
        try:
            since = int(query.get("since", ["0"])[-1])
            limit = int(query.get("limit", ["10000"])[-1])
        except ValueError:
            raise BadRequest(400, "since and limit must be integers")
        limit = max(1, min(limit, MAX_LIMIT))
        start = max(since, self.log_base) - self.log_base
        chunk = self.log[start:start + limit]
        nxt = chunk[-1][0] + 1 if chunk else max(since, self.log_base + len(self.log))
        return {"first_seq": self.log_base, "next": nxt,
                "more": start + limit < len(self.log),
                "requests": [self.entry_dict(e) for e in chunk]}

    def write_log(self, e):
        if self.logf:
            self.logf.write(json.dumps(self.entry_dict(e), separators=(",", ":")) + "\n")


def parse_query(qs):
    return parse_qs(qs, keep_blank_values=True) if qs else {}


_date_cache = [0, ""]


def go_duration(seconds):
    """A duration as OpenAI writes it: 20ms, 1.5s, 1m5.25s."""
    ms = math.ceil(seconds * 1000)     # never earlier than the truth
    if ms < 1000:
        return "%dms" % ms
    minutes = ms // 60000
    rest = ("%.3f" % ((ms - 60000 * minutes) / 1000.0)).rstrip("0").rstrip(".") + "s"
    return ("%dm" % minutes if minutes else "") + rest


def rfc3339(t):
    """An RFC 3339 UTC time with milliseconds, as Anthropic writes it."""
    ms = math.ceil(t * 1000)            # never earlier than the truth
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif isinstance(p, str):
                parts.append(p)
        return " ".join(parts)
    return ""


def tokens(words):
    return max(1, round(words / 0.75)) if words else 0


class Conn:
    """One client connection: reads requests one at a time and answers them."""

    def __init__(self, srv, reader, writer):
        self.srv = srv
        self.st = srv.state
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.closed = False
        self.echo = None  # (headers, mode) while answering ?echo_escape=
        self.sent_at = None  # when the current answer was handed to the socket

    # ---- low-level reading on our own buffer ----

    async def fill(self):
        try:
            async with asyncio.timeout(self.srv.args.idle_timeout):
                data = await self.reader.read(READ_CHUNK)
        except (TimeoutError, ConnectionError, OSError):
            return False
        if not data:
            return False
        self.buf += data
        return True

    async def read_line(self, limit=MAX_HEAD):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise BadRequest(400, "line too long")
            if not await self.fill():
                raise ConnectionError("eof")

    async def read_exact(self, n):
        while len(self.buf) < n:
            if not await self.fill():
                raise ConnectionError("eof")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def wait(self, seconds):
        """Sleeps up to seconds while watching the socket: returns False as soon
        as the client closes the connection (data it sends meanwhile, e.g. a
        pipelined request, is kept for later)."""
        if seconds <= 0:
            return True
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await self.reader.read(READ_CHUNK)
            except TimeoutError:
                return True
            except (ConnectionError, OSError):
                return False
            if not data:
                return False
            self.buf += data
            if len(self.buf) > MAX_HEAD + self.srv.args.max_body:
                return False

    # ---- request parsing ----

    async def read_request(self):
        """Returns (method, target, version, headers, body) or None at EOF."""
        while True:
            while self.buf[:2] == b"\r\n":    # tolerate stray CRLFs between requests
                del self.buf[:2]
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if len(self.buf) > MAX_HEAD:
                raise BadRequest(431, "request head too large")
            if not await self.fill():
                if self.buf.strip():
                    raise BadRequest(400, "incomplete request")
                return None
        try:
            head = self.buf[:i].decode("utf-8")
        except UnicodeDecodeError:
            head = self.buf[:i].decode("latin-1")
        del self.buf[:i + 4]
        lines = head.split("\r\n")
        rl = lines[0].split(" ")
        if len(rl) != 3 or not rl[2].startswith("HTTP/1."):
            raise BadRequest(400, "bad request line")
        method, target, version = rl
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise BadRequest(400, "bad header line")
            name = name.lower()
            value = value.strip()
            if name in headers:
                headers[name] += ", " + value
            else:
                headers[name] = value
        body = b""
        te = headers.get("transfer-encoding")
        cl = headers.get("content-length")
        expect = headers.get("expect", "").lower() == "100-continue"
        if te is not None:
            if te.lower().split(",")[-1].strip() != "chunked":
                raise BadRequest(501, "unsupported transfer-encoding")
            if expect and version == "HTTP/1.1" and not self.buf:
                self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await self.read_chunked()
        elif cl is not None:
            if not cl.isdigit():
                raise BadRequest(400, "bad content-length")
            n = int(cl)
            if n > self.srv.args.max_body:
                raise BadRequest(413, "body too large")
            if n and expect and version == "HTTP/1.1" and len(self.buf) < n:
                self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if n:
                body = await self.read_exact(n)
        return method, target, version, headers, body

    async def read_chunked(self):
        body = bytearray()
        while True:
            line = await self.read_line(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest(400, "bad chunk size")
            if size == 0:
                while await self.read_line():       # trailers
                    pass
                return bytes(body)
            if len(body) + size > self.srv.args.max_body:
                raise BadRequest(413, "body too large")
            body += await self.read_exact(size)
            if await self.read_exact(2) != b"\r\n":
                raise BadRequest(400, "bad chunk terminator")

    # ---- writing ----

    def head(self, status, length, keep, ctype="application/json", extra=()):
        h = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Unknown")),
             "Date: " + http_date(),
             "Server: fake_api",
             "Content-Type: " + ctype,
             "Content-Length: %d" % length]
        if not keep:
            h.append("Connection: close")
        h.extend("%s: %s" % kv for kv in extra)
        return ("\r\n".join(h) + "\r\n\r\n").encode("latin-1")

    async def send(self, status, body, keep, head_only=False, ctype="application/json",
                   extra=()):
        if self.echo is not None:
            body = escape_echo(body, *self.echo)
        data = self.head(status, len(body), keep, ctype, extra)
        # taken before the write: no client can have read the answer earlier
        self.sent_at = time.time()
        self.writer.write(data if head_only else data + body)
        await self.writer.drain()

    def abort(self, rst):
        self.closed = True
        transport = self.writer.transport
        if rst:
            sock = self.writer.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            transport.abort()
        else:
            transport.close()

    # ---- main loop ----

    async def run(self):
        st = self.st
        st.connections_opened += 1
        st.connections_open += 1
        try:
            max_req = self.srv.args.max_requests_per_conn
            for _ in range(max_req):
                try:
                    req = await self.read_request()
                except BadRequest as e:
                    await self.send(e.status, jdump({"error": {"message": str(e),
                                                     "type": "bad_http_request"}}), False)
                    break
                except ConnectionError:
                    break
                if req is None:
                    break
                if not await self.handle(*req) or self.closed:
                    break
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must not kill the server
            print("fake_api: connection error: %r" % (e,), file=sys.stderr, flush=True)
        finally:
            st.connections_open -= 1
            if not self.closed:
                self.closed = True
                self.writer.transport.close()     # flushes what is buffered, then FIN

    async def handle(self, method, target, version, headers, body):
        """Answers one request; returns True to keep the connection open."""
        conn = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep = "close" not in conn
        else:
            keep = "keep-alive" in conn
        if target.startswith(("http://", "https://")):
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        path, _, qs = target.partition("?")
        head_only = method == "HEAD"
        if path.startswith(("/_control/", "/_stats")):
            return await self.control(method, path, qs, body, keep, head_only)
        return await self.api(method, path, qs, headers, body, keep, head_only)

    async def control(self, method, path, qs, body, keep, head_only):
        st = self.st
        query = parse_query(qs)
        status, out = 200, None
        try:
            if path == "/_stats" and method in ("GET", "HEAD"):
                out = st.stats(query)
            elif path == "/_stats/requests" and method in ("GET", "HEAD"):
                out = st.requests_page(query)
            elif path == "/_control/reset" and method in ("GET", "POST"):
                st.reset()
                out = {"ok": True}
            elif path == "/_control/rules" and method == "GET":
                out = {"rules": [r.src for r in st.rules], "latency_ms": st.latency_ms}
            elif path == "/_control/rules" and method in ("POST", "PUT"):
                try:
                    d = json.loads(body or b"{}")
                    if not isinstance(d, dict):
                        raise ValueError("body must be a JSON object")
                    rules = st.rules
                    if "rules" in d:
                        if not isinstance(d["rules"], list):
                            raise ValueError("rules must be an array")
                        rules = [Rule(r) for r in d["rules"]]
                    lat = st.latency_ms
                    if "latency_ms" in d:
                        lat = d["latency_ms"]
                        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or lat < 0:
                            raise ValueError("latency_ms must be a number >= 0")
                except ValueError as e:     # includes JSONDecodeError, FaultSpecError
                    raise BadRequest(400, str(e))
                st.rules = rules
                st.latency_ms = lat
                out = {"ok": True, "rules": len(rules), "latency_ms": lat}
            else:
                raise BadRequest(404, "unknown control endpoint %s %s" % (method, path))
        except BadRequest as e:
            status, out = e.status, {"error": {"message": str(e), "type": "control_error"}}
        await self.send(status, jdump(out), keep, head_only)
        return keep

    def choose_fault(self, method, path, headers, body, req, key, hash_key):
        """Returns (Fault or None, source).  Raises FaultSpecError."""
        h = headers.get("x-fake-fault")
        if h is not None:
            return Fault(h), "header"
        if isinstance(req, dict):
            f = req.get("fault")
            if isinstance(f, str):
                return Fault(f), "body"
            p = req.get("payload")
            if isinstance(p, dict) and isinstance(p.get("fault"), str):
                return Fault(p["fault"]), "payload"
            msgs = req.get("messages")
            if isinstance(msgs, list):
                for m in msgs:
                    if isinstance(m, dict):
                        mt = FAULT_TOKEN_RE.search(text_of(m.get("content")))
                        if mt:
                            return Fault(mt.group(1)), "message"
        for r in self.st.rules:
            if r.applies(method, path, key, body, hash_key):
                return r.fault, "rule"
        return None, None

    async def api(self, method, path, qs, headers, body, keep, head_only):
        st = self.st
        t0 = time.time()
        self.sent_at = None
        st.total += 1
        st.in_flight += 1
        if st.in_flight > st.max_in_flight:
            st.max_in_flight = st.in_flight
        st.path_counts[path] = st.path_counts.get(path, 0) + 1
        st.method_counts[method] = st.method_counts.get(method, 0) + 1
        key = headers.get("idempotency-key")
        arrival = None
        if key is not None:
            rec = st.keys.get(key)
            if rec is None:
                rec = st.keys[key] = [0, [], 0]
                if len(st.keys) > st.key_cap:
                    st.keys = trim_dict(st.keys, st.key_cap)
            rec[0] += 1
            n = rec[0]
            if len(rec[1]) < MAX_PER_KEY:
                arrival = [t0, None, None]
                rec[1].append(arrival)
            else:
                rec[2] += 1
            hash_key = "k:" + key
        else:
            digest = hashlib.sha1(body).hexdigest()
            bk = (path, digest)
            n = st.body_counts.get(bk, 0) + 1
            st.body_counts[bk] = n
            if len(st.body_counts) > st.key_cap:
                st.body_counts = trim_dict(st.body_counts, st.key_cap)
            hash_key = "b:%s:%s" % (path, digest)
        entry = st.new_log_entry(t0, method, path, key, "authorization" in headers)
        status, outcome = 0, "error"
        try:
            status, outcome, fault_text = await self.answer(
                method, path, qs, headers, body, keep, head_only, key, hash_key, n)
            entry[8] = fault_text
        except (ConnectionError, OSError):
            status, outcome = 0, "write_error"
            self.abort(False)
        finally:
            st.in_flight -= 1
            t1 = time.time()
            entry[6], entry[7], entry[9] = status, outcome, t1
            if arrival is not None:
                arrival[1], arrival[2] = status, self.sent_at or t1
            st.status_counts[status] = st.status_counts.get(status, 0) + 1
            st.outcome_counts[outcome] = st.outcome_counts.get(outcome, 0) + 1
            st.write_log(entry)
        return keep and not self.closed

    async def answer(self, method, path, qs, headers, body, keep, head_only, key, hash_key, n):
        """Produces the answer; returns (status, outcome, applied fault text)."""
        st = self.st
        req = None
        self.echo = None
        if body:
            try:
                req = json.loads(body)
            except ValueError:
                req = None
        try:
            fault, source = self.choose_fault(method, path, headers, body, req, key, hash_key)
        except FaultSpecError as e:
            await self.send(400, jdump({"error": {"message": str(e),
                                                  "type": "fake_api_bad_fault_spec"}}),
                            keep, head_only, extra=(("X-Fake-Error", "bad fault spec"),))
            return 400, "bad_fault_spec", None
        if fault is not None and (fault.kind == "none" or
                                  (fault.count is not None and n > fault.count)):
            fault = None
        extra = [("X-Fake-N", str(n))]
        fault_text = None
        if fault is not None:
            fault_text = fault.text
            extra.append(("X-Fake-Fault-Applied", "%s (%s)" % (fault.text, source)))
        max_hang = st.max_hang

        if fault is not None and fault.kind == "hang":
            gone = not await self.wait(max_hang)
            self.abort(False)
            return 0, ("hang_client_gone" if gone else "hang_timeout"), fault_text

        delay = st.latency_ms / 1000.0
        if fault is not None:
            delay += fault.ms / 1000.0
            if fault.kind == "slow":
                delay += fault.arg / 1000.0
        if delay > 0 and not await self.wait(min(delay, max_hang)):
            self.abort(False)
            return 0, "client_gone", fault_text

        query = {k: v[0] for k, v in parse_query(qs).items()}
        if path == "/redirect" and fault is None:
            # 307 to the URL in ?to= (the method and body are kept)
            extra.append(("Location", query.get("to", "/")))
            await self.send(307, jdump({"redirect": query.get("to", "/")}), keep, head_only,
                            extra=extra)
            return 307, "redirect", None
        if query.get("echo_headers") == "1":
            # what the client sent, secrets included: for tests of redaction
            extra.append(("X-Fake-Echo", "headers"))
            req = {"request": req, "headers": dict(headers)}
            if query.get("echo_escape") in ("slash", "unicode", "percent"):
                self.echo = (dict(headers), query["echo_escape"])

        if fault is None and self.limiter(path, query, extra):
            err = {"error": {"message": "Rate limit reached for %s" % path,
                             "type": "rate_limit_error", "code": 429}}
            await self.send(429, jdump(err), keep, head_only, extra=extra)
            return 429, "rate_limited", None
        if fault is None:
            return await self.normal(method, path, qs, req, key, n, keep, head_only, extra)
        kind = fault.kind
        if kind == "slow":
            return (await self.normal(method, path, qs, req, key, n, keep, head_only,
                                      extra))[0], "slow", fault_text
        if kind == "reset":
            self.abort(True)
            return 0, "reset", fault_text
        if kind == "close":
            self.abort(False)
            return 0, "close", fault_text
        if kind == "status":
            code = fault.code
            if fault.ra is not None:
                how, secs = fault.ra
                if how == "s":
                    extra.append(("Retry-After", str(secs)))
                else:
                    # HTTP dates have 1 s resolution: round up so that the date is
                    # at least secs seconds after the moment of answering.
                    extra.append(("Retry-After", email.utils.formatdate(
                        int(time.time()) + 1 + secs, usegmt=True)))
            err = {"error": {"message": "fake_api injected fault %s" % fault.text,
                             "type": ERROR_TYPES.get(code, "error"), "code": code,
                             "fake_fault": fault.text}}
            if query.get("echo_headers") == "1":
                err["request"] = req
            await self.send(code, jdump(err), keep, head_only, extra=extra)
            return code, "fault", fault_text
        if kind == "badencoding":
            await self.send(200, b'{"ok": true, "text": "caf\xe9 \xff\xfe"}', keep, head_only,
                            extra=extra)
            return 200, "badencoding", fault_text
        if kind == "badjson":
            await self.send(200, b"<html>this is not JSON {\"ok\": tru", keep, head_only,
                            extra=extra)
            return 200, "badjson", fault_text
        if kind == "partial":
            body = jdump({"ok": True, "path": path, "n": n, "filler": "z" * 2000})
            self.writer.write(self.head(200, len(body), False, extra=extra) + body[:len(body) // 2])
            await self.writer.drain()
            self.abort(False)
            return 0, "partial", fault_text
        if kind == "big":
            await self.send_big(path, n, min(fault.arg, MAX_BIG), keep, head_only, extra)
            return 200, "big", fault_text
        raise AssertionError(kind)

    async def send_big(self, path, n, size, keep, head_only, extra):
        prefix = jdump({"ok": True, "path": path, "n": n})[:-1] + b',"filler":"'
        suffix = b'"}'
        fill = max(0, size - len(prefix) - len(suffix))
        total = len(prefix) + fill + len(suffix)
        w = self.writer
        w.write(self.head(200, total, keep, extra=extra))
        if head_only:
            await w.drain()
            return
        w.write(prefix)
        piece = b"x" * STREAM_CHUNK
        left = fill
        while left > 0:
            k = min(left, STREAM_CHUNK)
            w.write(piece if k == STREAM_CHUNK else piece[:k])
            left -= k
            await w.drain()
        w.write(suffix)
        await w.drain()

    def limiter(self, path, query, extra):
        """Emulates a provider's rate limit on the path, as the query asks
        (see fake_api.md): adds its headers to extra; True if the request is
        over the limit and gets a 429."""
        if "rl_requests" not in query and "rl_tpm" not in query:
            return False
        st = self.st
        now = time.time()
        lim = st.limits.setdefault(path, {"start": now, "count": 0, "tokens": None, "at": now})
        over = False
        req = tok = None
        if "rl_requests" in query:
            limit = int(query["rl_requests"])
            window = float(query.get("rl_window", "1"))
            if now >= lim["start"] + window:
                lim["start"] += window * math.floor((now - lim["start"]) / window)
                lim["count"] = 0
            lim["count"] += 1
            over = lim["count"] > limit
            req = (limit, max(0, limit - lim["count"]), lim["start"] + window - now)
        if "rl_tpm" in query:
            tpm = float(query["rl_tpm"])
            use = int(query.get("usage", "0"))
            if lim["tokens"] is None:
                lim["tokens"] = tpm
            lim["tokens"] = min(tpm, lim["tokens"] + tpm / 60.0 * (now - lim["at"]))
            lim["at"] = now
            if not over:
                if lim["tokens"] < use:
                    over = True
                else:
                    lim["tokens"] -= use
            tok = (int(tpm), int(lim["tokens"]), (tpm - lim["tokens"]) * 60.0 / tpm)
        st.rate_limited += over
        style = query.get("rl_style", "openai")
        for kind, v in (("requests", req), ("tokens", tok)):
            if v is None:
                continue
            limit, left, reset = v
            if style == "openai":
                extra += [("x-ratelimit-limit-" + kind, str(limit)),
                          ("x-ratelimit-remaining-" + kind, str(left)),
                          ("x-ratelimit-reset-" + kind, go_duration(reset))]
            elif style == "anthropic":
                extra += [("anthropic-ratelimit-%s-limit" % kind, str(limit)),
                          ("anthropic-ratelimit-%s-remaining" % kind, str(left)),
                          ("anthropic-ratelimit-%s-reset" % kind, rfc3339(now + reset))]
            elif kind == "tokens":
                continue        # the other styles speak of requests only
            elif style == "ietf":
                window = math.ceil(float(query.get("rl_window", "1")))
                extra += [("RateLimit-Policy", '"burst";q=%d;w=%d' % (limit, window)),
                          ("RateLimit", '"burst";r=%d;t=%d' % (left, math.ceil(reset)))]
            elif style == "ietf7":
                extra.append(("RateLimit", "limit=%d, remaining=%d, reset=%d"
                              % (limit, left, math.ceil(reset))))
            elif style == "legacy":
                extra += [("RateLimit-Limit", str(limit)), ("RateLimit-Remaining", str(left)),
                          ("RateLimit-Reset", str(math.ceil(reset)))]
            elif style == "epoch":
                extra += [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(left)),
                          ("X-RateLimit-Reset", str(math.ceil(now + reset)))]
        return over

    async def normal(self, method, path, qs, req, key, n, keep, head_only, extra):
        if method == "POST" and path == "/v1/chat/completions":
            return await self.chat(req, n, keep, head_only, extra)
        out = {"ok": True, "path": path, "method": method, "request": req, "n": n,
               "query": qs or None, "idempotency_key": key}
        usage = {k: v[0] for k, v in parse_query(qs).items()}.get("usage") if qs else None
        if usage is not None and usage.isdigit():
            out["usage"] = {"total_tokens": int(usage)}
        await self.send(200, jdump(out), keep, head_only, extra=extra)
        return 200, "ok", None

    async def chat(self, req, n, keep, head_only, extra):
        msgs = req.get("messages") if isinstance(req, dict) else None
        if not isinstance(msgs, list) or not msgs:
            err = {"error": {"message": "'messages' must be a non-empty array",
                             "type": "invalid_request_error", "code": 400}}
            await self.send(400, jdump(err), keep, head_only, extra=extra)
            return 400, "bad_request", None
        last_user = ""
        prompt_words = 0
        for m in msgs:
            if not isinstance(m, dict):
                continue
            t = text_of(m.get("content"))
            prompt_words += len(t.split())
            if m.get("role") == "user":
                last_user = t
        clean = FAULT_TOKEN_RE.sub("", last_user).split()
        digest = hashlib.sha1(last_user.encode()).hexdigest()
        content = "Fake reply %s to: %s" % (digest[:8], " ".join(clean[:60]))
        pt = tokens(prompt_words)
        ct = tokens(len(content.split()))
        model = req.get("model")
        out = {
            "id": "chatcmpl-%s%d" % (digest[:16], n),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model if isinstance(model, str) and model else "fake-model",
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct,
                      "total_tokens": pt + ct},
        }
        await self.send(200, jdump(out), keep, head_only, extra=extra)
        return 200, "ok", None


class Server:
    def __init__(self, args):
        self.args = args
        self.state = State(args)
        self.tasks = set()

    async def on_connect(self, reader, writer):
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            await Conn(self, reader, writer).run()
        except asyncio.CancelledError:
            pass    # shutting down; asyncio 3.11 would log a cancelled callback task
        finally:
            self.tasks.discard(task)

    async def flush_log(self):
        while True:
            await asyncio.sleep(1)
            if self.state.logf:
                self.state.logf.flush()

    async def main(self):
        args = self.args
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        server = await asyncio.start_server(self.on_connect, host="127.0.0.1", port=args.port,
                                            family=socket.AF_INET, backlog=1024,
                                            reuse_address=True)
        port = server.sockets[0].getsockname()[1]
        pid = os.getpid()
        if args.pidfile:
            write_atomic(args.pidfile, "%d\n" % pid)
        if args.portfile:
            write_atomic(args.portfile, "%d\n" % port)
        if self.state.logf:
            self.state.logf.write(json.dumps({"event": "start", "pid": pid, "port": port,
                                              "t": time.time()}) + "\n")
        print("fake_api listening on 127.0.0.1:%d" % port, flush=True)
        flusher = asyncio.create_task(self.flush_log())
        try:
            await stop.wait()
        finally:
            server.close()
            flusher.cancel()
            for t in list(self.tasks):
                t.cancel()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=2)
            if self.state.logf:
                self.state.logf.write(json.dumps({"event": "stop", "t": time.time()}) + "\n")
                self.state.logf.close()
            for f, content in ((args.pidfile, "%d\n" % pid), (args.portfile, "%d\n" % port)):
                remove_if(f, content)


def write_atomic(path, content):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(content)
    os.replace(tmp, path)


def remove_if(path, content):
    """Removes path if it still holds what we wrote (another run may own it now)."""
    if not path:
        return
    try:
        with open(path) as f:
            if f.read() != content:
                return
        os.unlink(path)
    except OSError:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fault-injecting fake HTTP API (127.0.0.1 only).")
    ap.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    ap.add_argument("--portfile", help="write the port number here once listening")
    ap.add_argument("--pidfile", help="write our pid here")
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="delay added before every API answer (default 0)")
    ap.add_argument("--max-hang", type=float, default=30.0,
                    help="longest hang or delay, in seconds (default 30)")
    ap.add_argument("--log", help="append one JSON line per API request to this file")
    ap.add_argument("--idle-timeout", type=float, default=300.0,
                    help="close a connection idle this many seconds (default 300)")
    ap.add_argument("--max-body", type=int, default=64 * 1024 * 1024,
                    help="largest request body accepted, bytes (default 64 MiB)")
    ap.add_argument("--max-requests-per-conn", type=int, default=10_000_000,
                    help="close a keep-alive connection after this many requests")
    ap.add_argument("--log-cap", type=int, default=2_000_000,
                    help="request-log entries kept in memory (default 2,000,000)")
    ap.add_argument("--key-cap", type=int, default=1_000_000,
                    help="Idempotency-Keys (and key-less path+body counters) tracked "
                         "(default 1,000,000)")
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        ap.error("--port must be 0..65535")
    if args.max_hang <= 0 or args.latency_ms < 0 or args.log_cap < 1 or args.key_cap < 1:
        ap.error("--max-hang must be > 0; --latency-ms >= 0; caps >= 1")
    # a socket per client connection: thousands at once need more than the
    # usual soft limit of 1024 open files
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(Server(args).main())
    # Everything is closed and flushed: skip freeing the (possibly millions of)
    # recorded objects one by one, so that SIGTERM ends the process promptly.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

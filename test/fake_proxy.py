#!/usr/bin/env python3
"""test/fake_proxy.py — a forward proxy for pgbatch's tests.

Listens on 127.0.0.1 only.  One mode per process:

  --mode http    an HTTP proxy: absolute-form requests (http://host:port/path)
                 are forwarded, one upstream connection per request, and the
                 client's connection is kept alive across requests (to any
                 target, as a real proxy does); CONNECT host:port opens a
                 tunnel.  With --tls-cert/--tls-key it speaks TLS to the
                 client (an https:// proxy).
  --mode socks5  a SOCKS5 proxy (CONNECT, IPv4, IPv6 and domain names).

--auth user:password requires those credentials (Proxy-Authorization: Basic,
or SOCKS5 user/password authentication).  Every target it connects to is
logged as one JSON line in --log: {"kind": "forward"|"connect"|"socks",
"target": "host:port", "path": ...}.  Written once listening: --pidfile,
then --portfile.  SIGTERM ends it.  Python 3 standard library only.
"""

import argparse
import asyncio
import base64
import ipaddress
import json
import os
import signal
import ssl
import struct

MAX_HEAD = 65536


def write_atomic(path, content):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(content)
    os.replace(tmp, path)


def close_quietly(writer):
    """Closes a stream writer, whatever state its connection is in."""
    try:
        writer.close()
    except (ConnectionError, OSError):
        pass


class Proxy:
    def __init__(self, args):
        self.args = args
        self.logf = open(args.log, "a", buffering=1) if args.log else None
        self.auth = args.auth.encode() if args.auth else None

    def log(self, kind, host, port, path=None):
        if self.logf:
            self.logf.write(json.dumps({"kind": kind, "target": "%s:%d" % (host, port),
                                        "path": path}) + "\n")

    @staticmethod
    async def pipe(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            close_quietly(writer)

    async def tunnel(self, reader, writer, up_reader, up_writer):
        await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))

    # ---- HTTP ----------------------------------------------------------

    @staticmethod
    async def read_head(reader):
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD:
            raise ValueError("head too large")
        lines = head.decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        return lines[0], headers

    @staticmethod
    def header(headers, name):
        for k, v in headers:
            if k.lower() == name:
                return v
        return None

    def authorized(self, headers):
        if self.auth is None:
            return True
        value = self.header(headers, "proxy-authorization") or ""
        scheme, _, token = value.partition(" ")
        try:
            return scheme.lower() == "basic" and base64.b64decode(token) == self.auth
        except ValueError:
            return False

    async def http_client(self, reader, writer):
        try:
            while True:
                try:
                    line, headers = await self.read_head(reader)
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    return
                method, target, _version = line.split(" ", 2)
                if not self.authorized(headers):
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Proxy-Authenticate: Basic realm=\"fake\"\r\n"
                                 b"Content-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    host = host.strip("[]")
                    up_reader, up_writer = await asyncio.open_connection(host, int(port))
                    self.log("connect", host, int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    await self.tunnel(reader, writer, up_reader, up_writer)
                    return
                if not await self.forward(method, target, headers, reader, writer):
                    return
        finally:
            close_quietly(writer)

    async def forward(self, method, target, headers, reader, writer):
        """Forwards one absolute-form request; False to close the client."""
        if not target.startswith("http://"):
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return False
        rest = target[len("http://"):]
        hostport, slash, path = rest.partition("/")
        path = slash + path if slash else "/"
        if hostport.startswith("["):
            host, _, port = hostport[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = hostport.partition(":")
        port = int(port or 80)
        length = int(self.header(headers, "content-length") or 0)
        body = await reader.readexactly(length) if length else b""
        up_reader, up_writer = await asyncio.open_connection(host, port)
        self.log("forward", host, port, path)
        out = ["%s %s HTTP/1.1" % (method, path)]
        for k, v in headers:
            if k.lower() not in ("proxy-authorization", "proxy-connection", "connection"):
                out.append("%s: %s" % (k, v))
        out.append("Connection: close")
        up_writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
        await up_writer.drain()
        status, rheaders = await self.read_head(up_reader)
        rlength = self.header(rheaders, "content-length")
        rbody = await (up_reader.readexactly(int(rlength)) if rlength is not None
                       else up_reader.read())
        up_writer.close()
        back = [status] + ["%s: %s" % (k, v) for k, v in rheaders
                           if k.lower() not in ("connection", "content-length")]
        back.append("Content-Length: %d" % len(rbody))
        writer.write(("\r\n".join(back) + "\r\n\r\n").encode("latin-1") + rbody)
        await writer.drain()
        return True

    # ---- SOCKS5 --------------------------------------------------------

    async def socks_client(self, reader, writer):
        try:
            ver, n = await reader.readexactly(2)
            methods = await reader.readexactly(n)
            if ver != 5:
                return
            want = 2 if self.auth is not None else 0
            if want not in methods:
                writer.write(b"\x05\xff")
                await writer.drain()
                return
            writer.write(bytes([5, want]))
            await writer.drain()
            if want == 2:
                _, ulen = await reader.readexactly(2)
                user = await reader.readexactly(ulen)
                plen = (await reader.readexactly(1))[0]
                password = await reader.readexactly(plen)
                ok = user + b":" + password == self.auth
                writer.write(b"\x01\x00" if ok else b"\x01\x01")
                await writer.drain()
                if not ok:
                    return
            ver, cmd, _, atyp = await reader.readexactly(4)
            if atyp == 1:
                host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
            elif atyp == 4:
                host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
            elif atyp == 3:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            else:
                return
            port = struct.unpack("!H", await reader.readexactly(2))[0]
            if cmd != 1:
                writer.write(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
                return
            up_reader, up_writer = await asyncio.open_connection(host, port)
            self.log("socks", host, port)
            writer.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
            await writer.drain()
            await self.tunnel(reader, writer, up_reader, up_writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            close_quietly(writer)

    async def main(self):
        args = self.args
        context = None
        if args.tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args.tls_cert, args.tls_key)
        handler = self.socks_client if args.mode == "socks5" else self.http_client
        server = await asyncio.start_server(handler, "127.0.0.1", args.port, ssl=context)
        port = server.sockets[0].getsockname()[1]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        write_atomic(args.pidfile, "%d\n" % os.getpid())
        write_atomic(args.portfile, "%d\n" % port)
        print("fake_proxy (%s) listening on 127.0.0.1:%d" % (args.mode, port), flush=True)
        await stop.wait()
        server.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--portfile", required=True)
    p.add_argument("--pidfile", required=True)
    p.add_argument("--mode", choices=("http", "socks5"), default="http")
    p.add_argument("--auth")
    p.add_argument("--log")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    asyncio.run(Proxy(p.parse_args()).main())


if __name__ == "__main__":
    main()

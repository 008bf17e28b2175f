#!/usr/bin/env python3
"""fake_h2.py - an HTTP/2 server over TLS, on loopback, that answers every
request whole and then, 50 ms later, resets its stream with INTERNAL_ERROR:
the status, the headers and every byte its Content-Length announces arrive,
then the stream fails.  A client that treats that as a failure sends the request
again; one that keeps the answer does not.  Each request's Idempotency-Key
is appended to --log, one line per request, so that a test can count the
sends.

    python3 test/fake_h2.py --port 0 --portfile F --pidfile F --cert C --key K --log L

Listens on 127.0.0.1 only; stops on SIGTERM.  Needs python3-h2 (Debian).
"""

import argparse
import os
import signal
import socket
import ssl
import sys
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

BODY = b'{"whole": true, "then": "reset"}'


def serve(conn_sock, log, lock):
    """Speaks HTTP/2 on one accepted TLS connection until it closes."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    conn_sock.sendall(conn.data_to_send())
    keys = {}
    try:
        while True:
            data = conn_sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = dict(event.headers)
                    keys[event.stream_id] = headers.get(b'idempotency-key', b'-').decode()
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    with lock:
                        log.write(keys.pop(sid, '-') + '\n')
                        log.flush()
                    conn.send_headers(sid, [(':status', '200'),
                                            ('content-type', 'application/json'),
                                            ('content-length', str(len(BODY)))])
                    conn.send_data(sid, BODY, end_stream=False)
                    # the answer first, on its own; the reset a moment later
                    conn_sock.sendall(conn.data_to_send())
                    time.sleep(0.05)
                    conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
            out = conn.data_to_send()
            if out:
                conn_sock.sendall(out)
    except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
        pass
    finally:
        conn_sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--portfile', required=True)
    parser.add_argument('--pidfile', required=True)
    parser.add_argument('--cert', required=True)
    parser.add_argument('--key', required=True)
    parser.add_argument('--log', required=True)
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(['h2'])

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('127.0.0.1', args.port))
    listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with open(args.pidfile, 'w') as f:
        f.write(str(os.getpid()))
    with open(args.portfile + '.tmp', 'w') as f:
        f.write(str(listener.getsockname()[1]))
    os.rename(args.portfile + '.tmp', args.portfile)

    log = open(args.log, 'a')
    lock = threading.Lock()
    while True:
        raw, _ = listener.accept()
        try:
            conn_sock = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            continue
        threading.Thread(target=serve, args=(conn_sock, log, lock), daemon=True).start()


if __name__ == '__main__':
    sys.exit(main())

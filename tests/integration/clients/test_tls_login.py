"""The TLS login itself, byte by byte, through the real proxy.

A client may send its startup packet in the same TCP segment as the end of its TLS handshake
(node-postgres always does; libpq and pgjdbc sometimes, by timing). This is the deterministic form
of the TLS failures the client tests (test_node_pg, test_jdbc, test_psycopg_clients) meet.
"""

from __future__ import annotations

import socket
import ssl
import struct

import pytest

pytestmark = pytest.mark.integration


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def test_startup_packet_right_behind_the_tls_finished(served) -> None:
    """SSLRequest, the handshake, then the client's Finished and startup packet in one write: the
    answer must be an encrypted AuthenticationSASL."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    startup_body = struct.pack("!i", 196608) + b"user\0vendor_zhang\0database\0crm\0\0"
    startup = struct.pack("!i", len(startup_body) + 4) + startup_body
    with socket.create_connection(("127.0.0.1", served["port"]), timeout=10) as sock:
        sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        assert _recv_exact(sock, 1) == b"S"
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if out := outgoing.read():
                    sock.sendall(out)
                incoming.write(sock.recv(65536))
        tls.write(startup)
        sock.sendall(outgoing.read())  # Finished and the startup packet, in one write
        answer = b""
        while not answer:  # session tickets may come first
            data = sock.recv(65536)
            assert data[:1] == b"\x17", f"not a TLS record: {data[:60]!r}"
            incoming.write(data)
            try:
                answer = tls.read(65536)
            except ssl.SSLWantReadError:
                continue
    assert answer[:1] == b"R" and struct.unpack("!i", answer[5:9])[0] == 10  # AuthenticationSASL

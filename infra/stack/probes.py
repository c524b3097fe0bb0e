"""Protocol-level health probes: each speaks just enough of its server's wire protocol."""

from __future__ import annotations

import socket
import struct

from pamqp import commands, frame
from pamqp.exceptions import UnmarshalingException
from pamqp.header import ProtocolHeader

LOOPBACK = "127.0.0.1"
PROBE_TIMEOUT = 3.0
_PG_PROTOCOL_3 = 196608


def _connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=PROBE_TIMEOUT)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        data += chunk
    return data


def redis_ping(port: int) -> bool:
    """True when a Redis server answers PING with PONG."""
    try:
        with _connect(port) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return _recv_exact(sock, 7) == b"+PONG\r\n"
    except OSError:
        return False


def epmd_names(port: int) -> bool:
    """True when an epmd answers a NAMES request and reports the port we asked."""
    try:
        with _connect(port) as sock:
            sock.sendall(struct.pack("!HB", 1, 110))  # NAMES_REQ
            (reported,) = struct.unpack("!I", _recv_exact(sock, 4))
            return int(reported) == port
    except OSError:
        return False


def postgres_accepts(port: int, *, user: str, database: str) -> bool:
    """True when PostgreSQL lets `user` into `database` (trust auth) and is ready for queries."""
    params = f"user\0{user}\0database\0{database}\0\0".encode()
    startup = struct.pack("!ii", 8 + len(params), _PG_PROTOCOL_3) + params
    try:
        with _connect(port) as sock:
            sock.sendall(startup)
            while True:
                kind, length = struct.unpack("!ci", _recv_exact(sock, 5))
                body = _recv_exact(sock, length - 4)
                if kind == b"Z":  # ReadyForQuery
                    sock.sendall(b"X\x00\x00\x00\x04")  # Terminate
                    return True
                if kind == b"E" or (kind == b"R" and body[:4] != b"\x00\x00\x00\x00"):
                    return False  # an error (starting up, no such database) or a password asked
    except (OSError, struct.error):
        return False


def _read_frame(sock: socket.socket, buffer: bytearray) -> object:
    while True:
        try:
            consumed, _channel, value = frame.unmarshal(bytes(buffer))
        except UnmarshalingException:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("broker closed the connection") from None
            buffer.extend(chunk)
            continue
        del buffer[:consumed]
        return value


def amqp_login(port: int, *, user: str, password: str, vhost: str = "/") -> bool:
    """True when RabbitMQ completes an AMQP 0-9-1 handshake for `user` on `vhost`."""
    buffer = bytearray()
    try:
        with _connect(port) as sock:
            sock.sendall(frame.marshal(ProtocolHeader(), 0))
            if not isinstance(_read_frame(sock, buffer), commands.Connection.Start):
                return False
            response = f"\0{user}\0{password}"
            sock.sendall(frame.marshal(commands.Connection.StartOk(response=response), 0))
            tune = _read_frame(sock, buffer)
            if not isinstance(tune, commands.Connection.Tune):
                return False  # authentication refused
            ok = commands.Connection.TuneOk(tune.channel_max, tune.frame_max, heartbeat=0)
            sock.sendall(frame.marshal(ok, 0))
            sock.sendall(frame.marshal(commands.Connection.Open(virtual_host=vhost), 0))
            opened = isinstance(_read_frame(sock, buffer), commands.Connection.OpenOk)
            if opened:
                sock.sendall(frame.marshal(commands.Connection.Close(200, "probe done", 0, 0), 0))
                _read_frame(sock, buffer)  # CloseOk
            return opened
    except (OSError, ValueError):
        return False

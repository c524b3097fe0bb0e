"""Health probes answer False, quickly, when nothing (or the wrong thing) listens."""

from __future__ import annotations

import socket
import threading

from infra.stack.probes import amqp_login, epmd_names, postgres_accepts, redis_ping


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_probe_is_false_when_nothing_listens() -> None:
    port = _closed_port()
    assert not redis_ping(port)
    assert not epmd_names(port)
    assert not postgres_accepts(port, user="hisho", database="hisho")
    assert not amqp_login(port, user="hisho", password="hisho")


def test_a_server_that_hangs_up_is_not_healthy() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def hang_up() -> None:
            for _ in range(4):
                conn, _addr = listener.accept()
                conn.recv(64)
                conn.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        assert not redis_ping(port)
        assert not epmd_names(port)
        assert not postgres_accepts(port, user="hisho", database="hisho")
        assert not amqp_login(port, user="hisho", password="hisho")
        thread.join(timeout=5)

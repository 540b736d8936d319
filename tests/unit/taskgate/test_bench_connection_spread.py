"""The bench's reading of how a load run's connections are spread over worker processes
(``tests.bench.connections``), against a real listening socket and real connections."""

from __future__ import annotations

import os
import socket

from tests.bench.connections import ConnectionSpread, established_by_process


def test_connections_to_a_port_are_counted_for_the_process_holding_them() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        accepted = [server.accept()[0] for _ in clients]
        try:
            # This process holds both ends; only the server side has the local port.
            assert established_by_process(os.getpgid(0), port) == {os.getpid(): 3}
        finally:
            for conn in [*clients, *accepted]:
                conn.close()


def test_a_spread_that_left_a_worker_without_a_connection_is_uneven() -> None:
    spread = ConnectionSpread()
    spread.counts = [32]
    assert spread.uneven(2)
    assert not spread.uneven(1)
    spread.counts = [31, 1]
    assert not spread.uneven(2)
    assert str(spread) == "31/1"
    spread.counts = []
    assert not spread.uneven(2)  # not sampled: nothing to say
    assert str(spread) == "?"

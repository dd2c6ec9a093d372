"""client/deadline.py: a total deadline cuts a blocked read on a real socket."""

from __future__ import annotations

import socket
import time

from r4b_deploy.client.deadline import Deadline, watch_current

DEADLINE_S = 0.3
SLACK_S = 1.0  # a busy machine; the read itself would block forever


def test_a_blocked_read_returns_at_the_deadline() -> None:
    a, b = socket.socketpair()
    with a, b:
        t0 = time.monotonic()
        with Deadline(DEADLINE_S) as deadline:
            watch_current(a)
            data = a.recv(1)  # nothing is ever sent: only the deadline ends this
        assert data == b"" and deadline.expired
        assert DEADLINE_S <= time.monotonic() - t0 < DEADLINE_S + SLACK_S


def test_a_request_within_its_deadline_is_left_alone() -> None:
    a, b = socket.socketpair()
    with a, b:
        with Deadline(DEADLINE_S) as deadline:
            watch_current(a)
            b.sendall(b"x")
            assert a.recv(1) == b"x"
        assert not deadline.expired
        time.sleep(DEADLINE_S * 2)  # the timer was cancelled: the socket still works
        b.sendall(b"y")
        assert a.recv(1) == b"y"


def test_outside_a_deadline_watching_does_nothing() -> None:
    a, b = socket.socketpair()
    with a, b:
        watch_current(a)
        b.sendall(b"z")
        assert a.recv(1) == b"z"


def test_a_socket_registered_after_the_deadline_is_cut_at_once() -> None:
    a, b = socket.socketpair()
    with a, b, Deadline(0.01) as deadline:
        time.sleep(0.1)
        assert deadline.expired
        watch_current(a)
        assert a.recv(1) == b""

"""Is a host port free to publish? One check for both runtimes and doctor."""

from __future__ import annotations

import errno
import socket

from r4b_deploy.errors import EnvironmentProblem


def port_in_use_error(host: str, port: int) -> EnvironmentProblem:
    return EnvironmentProblem(
        f"port {port} on {host} is already in use",
        fix=f"stop what listens there (`ss -ltnp 'sport = :{port}'`; if it is another deployment, "
        f"`r4b-deploy down --dir ITS_FOLDER`), or choose another --port",
    )


def port_problem(host: str, port: int) -> EnvironmentProblem | None:
    """The problem binding host:port, as docker-proxy and vLLM bind it (SO_REUSEADDR: TIME_WAIT is
    no clash), or None when the port is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return port_in_use_error(host, port)
            return EnvironmentProblem(f"cannot bind {host}:{port}: {exc.strerror}", fix="choose another --port")
    return None


def check_port_free(host: str, port: int) -> None:
    """Raise port_problem's EnvironmentProblem, if any."""
    problem = port_problem(host, port)
    if problem is not None:
        raise problem


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now (the kernel picks it), for tests and
    scripts that start a server. Another process may take it before the caller binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]

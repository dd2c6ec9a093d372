"""A requests session whose sockets a `client.deadline.Deadline` can cut (imported lazily: it
loads requests and urllib3).

urllib3 makes a connection's socket in `_new_conn` and reuses kept-alive connections in
`request`; both register the socket with the deadline of the request on this thread, so a
trickling server is cut at the request's total deadline whichever connection served it.
"""

from __future__ import annotations

from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool

from r4b_deploy.client.deadline import watch_current


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        watch_current(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection, opened by an earlier request
            watch_current(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        watch_current(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:
            watch_current(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS managers bring their own pool classes
            manager.pool_classes_by_scheme = _POOLS
        return manager


def watched_session(*, trust_env: bool) -> requests.Session:
    """A session for one endpoint; `trust_env=False` ignores the environment's proxies and CA bundle."""
    session = requests.Session()
    session.trust_env = trust_env
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

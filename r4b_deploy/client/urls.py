"""An endpoint's URL: how users may write it, how a report shows it, whether it is local."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

ENDPOINT_SCHEMES = ("http", "https")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def check_endpoint_url(url: str, option: str = "--url") -> str:
    """`url` if it can name an endpoint: http(s), a host, a valid port, no user:password@.

    Credentials in a URL would be sent as HTTP Basic auth instead of the API key (and then
    read as a wrong key): refused, with the way to pass a key. Messages never quote them.
    """
    from r4b_deploy.errors import UsageError

    shown = _USERINFO.sub(r"\1***@", url.strip())
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- parsed lazily: a bad port raises here
    except ValueError as exc:
        raise UsageError(f"{option} {shown}: not a valid URL ({exc})", fix="e.g. --url http://127.0.0.1:8000") from None
    if parts.scheme.lower() not in ENDPOINT_SCHEMES:
        raise UsageError(
            f"{option} {shown}: an endpoint is spoken to over http:// or https://, not {parts.scheme or 'no scheme'}",
            fix="e.g. --url http://127.0.0.1:8000",
        )
    if not parts.hostname:
        raise UsageError(f"{option} {shown}: no host", fix="e.g. --url http://127.0.0.1:8000")
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"{option} {shown}: credentials in the URL are not used (the endpoint takes an API key)",
            fix="remove user:password@ and pass the key with --api-key (or VLLM_API_KEY) or --env-file",
        )
    return url


def normalize_base_url(url: str) -> str:
    """Accept `http://host:port`, with or without a trailing `/` or `/v1`."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def redact_url(url: str) -> str:
    """The URL without user:password@, so a report or a message never carries credentials."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_loopback(url: str) -> bool:
    """The URL's host is this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

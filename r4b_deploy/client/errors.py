"""The sync client's failures: `ClientError` (one `ErrorKind`, one line) and how a requests or
urllib3 exception, or a non-200 answer, becomes one."""

from __future__ import annotations

from collections.abc import Iterator

from r4b_deploy.client.records import ErrorKind
from r4b_deploy.client.wire import server_error_message, status_error_kind
from r4b_deploy.errors import ExitCode, R4BError


class ClientError(R4BError):
    """A request that did not give a usable answer; `kind` classifies it as RequestRecord does."""

    exit_code = ExitCode.CHECK_FAILED

    def __init__(self, kind: ErrorKind, message: str, *, status_code: int | None = None, fix: str | None = None):
        super().__init__(message, fix=fix)
        self.kind: ErrorKind = kind
        self.status_code = status_code


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything requests/urllib3 wrapped in it (reason, cause, context, args), once each."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (getattr(e, "reason", None), e.__cause__, e.__context__, *getattr(e, "args", ())):
            if isinstance(nxt, BaseException):
                stack.append(nxt)


def root_os_error(exc: BaseException) -> BaseException | None:
    """The socket error under the requests/urllib3 wrappers, if any."""
    for e in _causes(exc):
        if isinstance(e, OSError) and not type(e).__module__.startswith(("requests", "urllib3")):
            return e
    return None


def is_read_timeout(exc: BaseException) -> bool:
    import urllib3.exceptions

    return any(isinstance(e, (urllib3.exceptions.ReadTimeoutError, TimeoutError)) for e in _causes(exc))


def status_error(code: int, body: bytes, has_key: bool, served_model_name: str) -> ClientError:
    """A non-200 answer as a ClientError: the kind the load generator records, a message, a fix."""
    kind = status_error_kind(code)
    text = server_error_message(body)
    if kind == "http_401":
        if has_key:
            fix = "pass the key in the deployment's env file (--deployment DIR)"
            return ClientError(kind, "401: wrong API key", status_code=code, fix=fix)
        return ClientError(
            kind,
            "401: the server wants an API key and none was given",
            status_code=code,
            fix="pass --api-key, --env-file or --deployment DIR",
        )
    if kind == "http_404":
        fix = f"check the served model name ({served_model_name!r}) and the URL"
        return ClientError(kind, f"404: {text or 'not found'}", status_code=code, fix=fix)
    messages: dict[ErrorKind, str] = {
        "http_429": f"429: rate limited: {text}",
        "http_4xx": f"{code}: {text}",
        "http_5xx": f"{code}: server error: {text}",
    }
    return ClientError(kind, messages.get(kind, f"unexpected HTTP status {code}: {text}"), status_code=code)

"""Endpoint URLs: accepted spellings, credentials kept out of reports, loopback or not."""

from __future__ import annotations

import pytest

from r4b_deploy.client.urls import is_loopback, normalize_base_url, redact_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:1", "http://h:1"),
        ("http://h:1/", "http://h:1"),
        ("http://h:1/v1", "http://h:1"),
        (" http://h:1/v1/ ", "http://h:1"),
    ],
)
def test_base_url_is_normalized(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://user:pw@host:8000/x", "http://host:8000/x"),
        ("https://token@host", "https://host"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:8000", True),
        ("http://127.0.0.1:8000", True),
        ("http://127.1.2.3", True),
        ("http://[::1]:8000", True),
        ("http://10.0.0.5:8000", False),
        ("https://api.example.com", False),
    ],
)
def test_is_loopback(url: str, local: bool) -> None:
    assert is_loopback(url) is local


# -- issue 11: a URL no endpoint has is a usage error, and never shows its credentials ----------


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://h:99999", "not a valid URL"),
        ("http://h:port", "not a valid URL"),
        ("ftp://h/x", "not ftp"),
        ("file:///etc/passwd", "not file"),
        ("127.0.0.1:8000", "http:// or https://"),
        ("http://", "no host"),
        ("http://user:pw-4711@h:8000", "credentials in the URL"),
        ("https://token-4711@h", "credentials in the URL"),
        ("http://user:pw-4711@[::1", "not a valid URL"),
    ],
)
def test_urls_no_endpoint_has_are_usage_errors(url: str, phrase: str) -> None:
    from r4b_deploy.client.urls import check_endpoint_url
    from r4b_deploy.errors import UsageError

    with pytest.raises(UsageError) as info:
        check_endpoint_url(url)
    text = f"{info.value.message} {info.value.fix}"
    assert phrase in text
    assert "4711" not in text


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "https://h.example/v1", "http://[::1]:8000/", "HTTP://h"])
def test_endpoint_urls_pass(url: str) -> None:
    from r4b_deploy.client.urls import check_endpoint_url

    assert check_endpoint_url(url) == url

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

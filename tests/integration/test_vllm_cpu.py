"""The real vLLM CPU build serving the tiny R-4B model: what the rest of the toolkit relies on."""

from __future__ import annotations

import base64
import io

import pytest
import requests

from r4b_deploy.spec import model_spec

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

REQUEST_TIMEOUT_S = 120
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello world!"},
]


def _headers(server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


def _chat(server, messages, mode: str | None = None, **extra) -> requests.Response:
    body = {"model": server.served_model_name, "messages": messages, "max_tokens": 8, "temperature": 0.0, **extra}
    kwargs = model_spec().thinking.template_kwargs(mode)
    if kwargs:
        body[model_spec().thinking.request_field] = kwargs
    return requests.post(
        f"{server.url}/v1/chat/completions", json=body, headers=_headers(server), timeout=REQUEST_TIMEOUT_S
    )


def _png_data_url(width: int, height: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_health_answers(vllm_server) -> None:
    assert requests.get(f"{vllm_server.url}/health", timeout=10).status_code == 200


def test_models_lists_the_served_name(vllm_server) -> None:
    response = requests.get(f"{vllm_server.url}/v1/models", headers=_headers(vllm_server), timeout=10)

    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [vllm_server.served_model_name]


def test_api_key_is_enforced(vllm_server) -> None:
    if not vllm_server.api_key:
        pytest.skip("the external server under test runs without an API key")
    response = requests.get(f"{vllm_server.url}/v1/models", timeout=10)
    assert response.status_code == 401


def test_each_thinking_mode_is_a_different_prompt(vllm_server) -> None:
    prompt_tokens: dict[str | None, int] = {}
    for mode in [None, *model_spec().thinking.modes]:
        response = _chat(vllm_server, MESSAGES, mode)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["choices"][0]["finish_reason"] in ("stop", "length")
        prompt_tokens[mode] = body["usage"]["prompt_tokens"]

    # auto adds nothing, long opens a think block, short closes an empty one.
    assert prompt_tokens[None] == prompt_tokens["auto"] < prompt_tokens["long"] < prompt_tokens["short"]


def test_an_image_as_a_data_url(vllm_server) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": _png_data_url(64, 48)}},
                {"type": "text", "text": "What is in this image?"},
            ],
        }
    ]
    with_image = _chat(vllm_server, messages)
    text_only = _chat(vllm_server, [{"role": "user", "content": "What is in this image?"}])

    assert with_image.status_code == 200, with_image.text
    assert with_image.json()["usage"]["prompt_tokens"] > text_only.json()["usage"]["prompt_tokens"]


def test_too_many_images_is_a_400(vllm_server) -> None:
    image = {"type": "image_url", "image_url": {"url": _png_data_url(32, 32)}}
    response = _chat(vllm_server, [{"role": "user", "content": [image, image, image, {"type": "text", "text": "?"}]}])
    assert response.status_code == 400

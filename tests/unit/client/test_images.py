"""The PNG writer makes images a real decoder reads back pixel for pixel."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image  # a test dependency (pyproject's `test` extra): it decodes the PNGs

from r4b_deploy.client import images


def decode(data_url: str):  # -> PIL.Image.Image
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :], validate=True))).convert("RGB")


def test_small_and_large_images_have_their_sizes() -> None:
    small = decode(images.small_image_url())
    large = decode(images.large_image_url())
    assert small.size == images.SMALL_IMAGE_SIZE_PX
    assert large.size == images.LARGE_IMAGE_SIZE_PX


def test_colour_bars_are_the_eight_bars_left_to_right() -> None:
    width, height = images.LARGE_IMAGE_SIZE_PX
    img = decode(images.large_image_url())
    bar = width // len(images.COLOUR_BARS)
    for i, rgb in enumerate(images.COLOUR_BARS):
        x = i * bar + bar // 2
        assert img.getpixel((x, 0)) == rgb
        assert img.getpixel((x, height - 1)) == rgb


def test_known_colour_image_is_solid() -> None:
    img = decode(images.known_colour_image_url())
    assert img.size == images.KNOWN_IMAGE_SIZE_PX
    width, height = images.KNOWN_IMAGE_SIZE_PX
    assert img.getcolors() == [(width * height, images.KNOWN_COLOUR_RGB)]


def test_bad_geometry_is_refused() -> None:
    with pytest.raises(ValueError):
        images.png_from_row(2, 2, b"\x00" * 5)
    with pytest.raises(ValueError):
        images.solid_png(0, 4, (1, 2, 3))

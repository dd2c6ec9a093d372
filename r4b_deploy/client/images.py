"""Test images written as PNG with zlib and struct alone (no Pillow needed at run time).

Smoke checks send a small and a large image (their cost in prompt tokens grows with the
size under anyres tiling) and, for model-behaviour checks, an image whose answer is knowable:
one solid colour.
"""

from __future__ import annotations

import base64
import struct
import zlib

RGB = tuple[int, int, int]

SMALL_IMAGE_SIZE_PX = (64, 48)
LARGE_IMAGE_SIZE_PX = (1024, 768)
KNOWN_COLOUR_NAME = "red"
KNOWN_COLOUR_RGB: RGB = (220, 20, 20)
KNOWN_IMAGE_SIZE_PX = (256, 256)

# The classic colour-bar sequence: white, yellow, cyan, green, magenta, red, blue, black.
COLOUR_BARS: tuple[RGB, ...] = (
    (255, 255, 255),
    (255, 255, 0),
    (0, 255, 255),
    (0, 255, 0),
    (255, 0, 255),
    (255, 0, 0),
    (0, 0, 255),
    (0, 0, 0),
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BIT_DEPTH = 8
_COLOUR_TYPE_RGB = 2
_FILTER_NONE = b"\x00"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_from_row(width: int, height: int, row_rgb: bytes) -> bytes:
    """A PNG whose every row is `row_rgb` (width × 3 bytes): enough for solid fills and vertical bars."""
    if width <= 0 or height <= 0 or len(row_rgb) != width * 3:
        raise ValueError(f"bad image geometry {width}x{height} for a {len(row_rgb)}-byte row")
    header = struct.pack(">IIBBBBB", width, height, _BIT_DEPTH, _COLOUR_TYPE_RGB, 0, 0, 0)
    raw = (_FILTER_NONE + row_rgb) * height
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def solid_png(width: int, height: int, rgb: RGB) -> bytes:
    return png_from_row(width, height, bytes(rgb) * width)


def colour_bars_png(width: int, height: int) -> bytes:
    bars = len(COLOUR_BARS)
    row = b"".join(bytes(COLOUR_BARS[x * bars // width]) for x in range(width))
    return png_from_row(width, height, row)


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def small_image_url() -> str:
    return png_data_url(colour_bars_png(*SMALL_IMAGE_SIZE_PX))


def large_image_url() -> str:
    return png_data_url(colour_bars_png(*LARGE_IMAGE_SIZE_PX))


def known_colour_image_url() -> str:
    """A solid image of KNOWN_COLOUR_NAME: a working model names the colour."""
    return png_data_url(solid_png(*KNOWN_IMAGE_SIZE_PX, KNOWN_COLOUR_RGB))


def png_from_rows(width: int, height: int, rows_rgb: list[bytes]) -> bytes:
    """A PNG from `height` rows of `width` × 3 bytes each: for pictures whose rows differ (charts)."""
    if width <= 0 or height != len(rows_rgb) or any(len(r) != width * 3 for r in rows_rgb):
        raise ValueError(f"bad image geometry {width}x{height} for {len(rows_rgb)} rows")
    header = struct.pack(">IIBBBBB", width, height, _BIT_DEPTH, _COLOUR_TYPE_RGB, 0, 0, 0)
    raw = b"".join(_FILTER_NONE + row for row in rows_rgb)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


CHART_BACKGROUND_RGB: RGB = (255, 255, 255)
CHART_GRID_RGB: RGB = (200, 200, 200)
CHART_BAR_RGB: RGB = (30, 90, 200)
CHART_MAX_VALUE = 10  # grid lines at every unit up to this: a bar's value is counted off the grid


def bar_chart_png(values: list[int], width: int, height: int) -> bytes:
    """A bar chart on a unit grid (a horizontal line at every value 1..CHART_MAX_VALUE): a model
    that reads the chart can state each bar's value, so a question can ask to combine them."""
    if not values or any(not 0 < v <= CHART_MAX_VALUE for v in values):
        raise ValueError(f"bar values must be 1..{CHART_MAX_VALUE}, got {values}")
    unit_px = height // (CHART_MAX_VALUE + 1)
    slot_px = width // len(values)
    bar_px = slot_px * 2 // 3  # bars two thirds of their slot: gaps keep them apart
    background, grid, bar = bytes(CHART_BACKGROUND_RGB), bytes(CHART_GRID_RGB), bytes(CHART_BAR_RGB)
    rows: list[bytes] = []
    made: dict[tuple[bool, tuple[bool, ...]], bytes] = {}  # few distinct rows: built once each
    for y in range(height):
        above_px = height - 1 - y
        fill = grid if above_px % unit_px == 0 else background
        key = (fill is grid, tuple(above_px < v * unit_px for v in values))
        if key not in made:
            slots = [(bar * bar_px if inside else fill * bar_px) + fill * (slot_px - bar_px) for inside in key[1]]
            made[key] = b"".join(slots) + fill * (width - slot_px * len(values))
        rows.append(made[key])
    return png_from_rows(width, height, rows)

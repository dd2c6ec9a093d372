"""RenderOptions: every user value is checked on the way in; a bad one is a UsageError naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_plans import make_ca_bundle, make_wheelhouse

from r4b_deploy.errors import UsageError
from r4b_deploy.pins import gpu_pins
from r4b_deploy.render.options import MIN_SHM_SIZE_BYTES, RenderOptions, parse_size_bytes

INJECTIONS = ["x\nRUN id", "x'y", 'x"y', "$(id)", "x;id", "`id`", "x|id", "x&id", "x>y", "x\\y"]

# field -> (CLI flag, bad values); each must be refused before anything is rendered.
BAD_VALUES: dict[str, tuple[str, list[object]]] = {
    "host_port": ("--port", [0, 65536, -1, "8000; id", "80 80"]),
    "public": ("--public", ["yes; id", "$(id)"]),
    "base_image": ("--base-image", [*INJECTIONS, "nvidia/cuda:12.1 x", "Nvidia/CUDA", "img:tag\n", ""]),
    "ca_bundle": ("--ca-bundle", ["/nonexistent/ca.pem", "/tmp/x\nRUN id", "/tmp/$(id)"]),
    "wheelhouse": ("--wheelhouse", ["/nonexistent/wheels", "/tmp/w\nRUN id", "/tmp/`id`"]),
    "hf_cache_dir": ("--hf-cache", [*[f"/srv/{v}" for v in INJECTIONS], "/srv/hf cache", "/srv/a:b"]),
    "hf_token_env": ("--hf-token-env", [*INJECTIONS, "HF TOKEN", "1TOKEN", ""]),
    "model": ("--model", [*INJECTIONS, "org/name;id", "org/name x", "relative/path/", "/srv/my model", "name"]),
    "served_model_name": ("--served-model-name", [*INJECTIONS, "r4b\n", "r 4b", "r4b$", "-r4b", ""]),
    "extra_vllm_args": (
        "--extra-vllm-arg",
        [
            ["--x\n--y"],
            ["--max-log-len", "1 2"],
            ["--x", "$(id)"],
            ["--x", "`id`"],
            ["--x", "a;b"],
            ["--x", '"q"'],
            ["--x", "'q'"],
            ["--x;id"],
            ["--x=a b"],
            ["positional"],
            ["--api-key", "secret"],
            ["--host", "0.0.0.0"],
            ["--port=9000"],
            ["--served-model-name", "x"],
            ["--X"],
        ],
    ),
    "shm_size_bytes": ("--shm-size", ["16g;id", "lots", "1m", "$(id)", "16 g"]),
    "ulimits": ("--ulimit", [{"bogus": 1}, {"nofile": -2}, {"memlock;id": 1}]),
}


def _cases() -> list[tuple[str, str, object]]:
    return [(field, flag, value) for field, (flag, values) in BAD_VALUES.items() for value in values]


@pytest.mark.parametrize(("field", "flag", "value"), _cases())
def test_bad_value_is_a_usage_error_naming_the_option(field: str, flag: str, value: object) -> None:
    with pytest.raises(UsageError) as caught:
        RenderOptions(**{field: value})
    assert caught.value.message.startswith(f"{flag}:"), caught.value.message
    assert "\n" not in caught.value.message


def test_every_option_has_bad_values() -> None:
    # A new option must come with its own injection cases.
    assert set(BAD_VALUES) == set(RenderOptions.model_fields) - {"ipc_host"}


def test_defaults() -> None:
    options = RenderOptions()
    assert options.host_port == 8000
    assert options.public is False
    assert options.base_image == gpu_pins().base_image
    assert "vllm_version" not in RenderOptions.model_fields  # the plan's pin (tests/unit/test_pins.py)
    assert options.hf_cache_dir == Path("~/.cache/huggingface").expanduser()
    assert options.hf_token_env == "HF_TOKEN"
    assert options.ulimits == {}  # memlock fails without CAP_SYS_RESOURCE: none by default
    assert options.ipc_host is False


def test_good_values_are_kept(tmp_path: Path) -> None:
    options = RenderOptions(
        host_port=9443,
        base_image="registry.example.com:5000/team/cuda:12.1.1-devel-ubuntu22.04",
        ca_bundle=make_ca_bundle(tmp_path / "ca.pem"),
        wheelhouse=make_wheelhouse(tmp_path / "wheels"),
        hf_cache_dir=tmp_path / "hf",
        hf_token_env="MY_HF_TOKEN",
        extra_vllm_args=["--enforce-eager", "--max-log-len", "100", "--swap-space=4"],
        model="/srv/models/R-4B/",
        served_model_name="YannQi/R-4B",
        shm_size_bytes="512m",
        ulimits={"nofile": 65536, "memlock": -1},
    )
    assert options.model == "/srv/models/R-4B"  # normalised
    assert options.shm_size_bytes == 512 * 1024**2
    assert list(options.ulimits) == ["memlock", "nofile"]  # sorted: the same inputs render the same bytes
    assert options.ca_bundle == tmp_path / "ca.pem"


def test_relative_and_home_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_wheelhouse(tmp_path / "wheels")
    options = RenderOptions(wheelhouse="wheels", hf_cache_dir="~/hf")
    assert options.wheelhouse == tmp_path / "wheels"
    assert options.hf_cache_dir == Path.home() / "hf"


def test_ca_bundle_must_hold_a_certificate(tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    with pytest.raises(UsageError, match=r"--ca-bundle: .*no PEM certificate"):
        RenderOptions(ca_bundle=not_pem)


def test_wheelhouse_must_hold_wheels(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"--wheelhouse: .*no \.whl file"):
        RenderOptions(wheelhouse=tmp_path / "empty")


def test_ipc_host_and_shm_size_exclude_each_other() -> None:
    with pytest.raises(UsageError, match="--ipc-host and --shm-size"):
        RenderOptions(ipc_host=True, shm_size_bytes="1g")


def test_unknown_option_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown render option 'api_key'"):
        RenderOptions(api_key="x")


def test_options_are_frozen() -> None:
    options = RenderOptions()
    with pytest.raises(ValueError):
        options.host_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(("text", "expected"), [("512m", 512 * 1024**2), ("16g", 16 * 1024**3), ("1024", 1024)])
def test_parse_size_bytes(text: str, expected: int) -> None:
    assert parse_size_bytes(text) == expected


def test_min_shm_size_is_accepted() -> None:
    assert RenderOptions(shm_size_bytes=MIN_SHM_SIZE_BYTES).shm_size_bytes == MIN_SHM_SIZE_BYTES

"""`vllm_serve_args`: the one serializer of a plan's settings into `vllm serve` arguments."""

from __future__ import annotations

import re

import pytest

from r4b_deploy.errors import UsageError
from r4b_deploy.launch.args import MANAGED_VLLM_FLAGS, vllm_serve_args
from r4b_deploy.planning.plan import VllmSettings

GPU_SETTINGS = VllmSettings(
    model="YannQi/R-4B",
    served_model_name="r4b",
    trust_remote_code=True,
    tensor_parallel_size=1,
    max_model_len=16384,
    max_num_seqs=64,
    max_num_batched_tokens=2048,
    gpu_memory_utilization=0.9,
    dtype="bfloat16",
    images_per_prompt=2,
    reasoning_parser="qwen3",
)


def _args(settings: VllmSettings = GPU_SETTINGS, **kwargs: object) -> list[str]:
    names = {"model": "YannQi/R-4B", "served_model_name": "r4b", "host": "0.0.0.0", "port": 8000, **kwargs}
    return vllm_serve_args(settings, **names)  # type: ignore[arg-type]


def test_the_whole_list_in_order() -> None:
    assert _args() == [
        "YannQi/R-4B",
        "--served-model-name",
        "r4b",
        "--trust-remote-code",
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "16384",
        "--max-num-seqs",
        "64",
        "--max-num-batched-tokens",
        "2048",
        "--gpu-memory-utilization",
        "0.9",
        "--limit-mm-per-prompt",
        '{"image":2,"video":0}',
        "--reasoning-parser",
        "qwen3",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]


def test_host_port_model_and_name_are_parameters_set_once() -> None:
    args = _args(model="/srv/models/R-4B", served_model_name="r4b-prod", host="127.0.0.1", port=9443)
    assert args[0] == "/srv/models/R-4B"
    assert args[args.index("--served-model-name") + 1] == "r4b-prod"
    assert args[-4:] == ["--host", "127.0.0.1", "--port", "9443"]
    for flag in ("--served-model-name", "--host", "--port"):
        assert args.count(flag) == 1
    assert "YannQi/R-4B" not in args  # the settings' model is only the default a caller may pass


def test_optional_flags_follow_the_settings() -> None:
    settings = GPU_SETTINGS.model_copy(
        update={"tensor_parallel_size": 8, "kv_cache_dtype": "fp8", "enforce_eager": True, "trust_remote_code": False}
    )
    args = _args(settings)
    assert args[args.index("--tensor-parallel-size") + 1] == "8"
    assert args[args.index("--kv-cache-dtype") + 1] == "fp8"
    assert "--enforce-eager" in args
    assert "--trust-remote-code" not in args
    assert not {"--tensor-parallel-size", "--kv-cache-dtype", "--enforce-eager"} & set(_args())


def test_cpu_rehearsal_has_no_gpu_memory_utilization() -> None:
    cpu = GPU_SETTINGS.model_copy(update={"gpu_memory_utilization": 0.0, "dtype": "auto", "reasoning_parser": None})
    args = _args(cpu)
    assert "--gpu-memory-utilization" not in args and "--reasoning-parser" not in args
    assert args[args.index("--dtype") + 1] == "auto"


def test_no_argument_contains_whitespace() -> None:
    # `vllm serve $(cat vllm-args.txt)` splits on whitespace: the JSON flag must be compact.
    assert all(not any(c.isspace() for c in arg) for arg in _args())


def test_extra_args_come_last() -> None:
    extra = ["--max-log-len", "100", "--swap-space=4"]
    assert _args(extra_args=extra)[-3:] == extra


@pytest.mark.parametrize("extra", [["--max-model-len", "4096"], ["--max-model-len=4096"], ["--served-model-name=x"]])
def test_extra_args_may_not_set_a_planned_flag(extra: list[str]) -> None:
    with pytest.raises(UsageError, match="already set by the plan") as caught:
        _args(extra_args=extra)
    assert "planning options" in (caught.value.fix or "")


# vLLM's argparse accepts any unambiguous prefix of a flag (allow_abbrev, not switchable from the
# command line), spells `_` as `-`, reads `--flag.key=value` as a part of `--flag`, has `--no-X`
# for its boolean flags and short aliases (-tp, -q, -O): every such spelling of a flag r4b-deploy
# sets must be refused, or `--api-ke=SECRET` lands in a rendered file and `--por=1` moves the server.
def _spellings(flag: str) -> list[str]:
    name = flag[2:]
    prefixes = [f"--{name[:n]}" for n in range(1, len(name) + 1)]
    return [
        *prefixes,
        *(f"{p}=1" for p in prefixes),
        "--" + name.replace("-", "_"),
        f"--{name}.x=1",
    ]


@pytest.mark.parametrize("flag", sorted(MANAGED_VLLM_FLAGS))
def test_every_spelling_of_a_managed_flag_is_refused(flag: str) -> None:
    for spelling in _spellings(flag):
        with pytest.raises(UsageError, match=re.escape(flag)) as caught:
            _args(extra_args=[spelling, "1"] if "=" not in spelling else [spelling])
        assert caught.value.message.startswith("--extra-vllm-arg:"), spelling
        assert caught.value.fix


PLANNED = ["--max-model-len", "--max-num-batched-tokens", "--limit-mm-per-prompt", "--reasoning-parser", "--dtype"]


@pytest.mark.parametrize("flag", PLANNED)
def test_every_spelling_of_a_planned_flag_is_refused(flag: str) -> None:
    for spelling in _spellings(flag):
        with pytest.raises(UsageError, match=re.escape(flag)):
            _args(extra_args=[spelling] if "=" in spelling else [spelling, "1"])
    # One flag abbreviated: where to change it instead.
    with pytest.raises(UsageError, match="already set by the plan") as caught:
        _args(extra_args=[flag[:-1], "1"])
    assert "planning options" in (caught.value.fix or "")


def test_the_negation_of_a_planned_boolean_flag_is_refused() -> None:
    eager = GPU_SETTINGS.model_copy(update={"enforce_eager": True})
    for spelling in ("--no-enforce-eager", "--no-enf", "--no_trust_remote_code", "--no-trust"):
        with pytest.raises(UsageError, match="already set by the plan"):
            _args(eager, extra_args=[spelling])


@pytest.mark.parametrize("short", ["-tp", "-tp=2", "-q", "-O3", "-pp", "-h"])
def test_short_options_are_refused(short: str) -> None:
    with pytest.raises(UsageError, match="short option"):
        _args(extra_args=["--max-log-len", short])


@pytest.mark.parametrize("extra", [["--"], ["--", "x"]])
def test_end_of_options_is_refused(extra: list[str]) -> None:
    with pytest.raises(UsageError, match="--extra-vllm-arg"):
        _args(extra_args=extra)


@pytest.mark.parametrize(
    "extra",
    [
        ["--enforce-eager"],  # not planned here: the user may add it
        ["--max-log-len", "100"],
        ["--max-log-len=-1"],
        ["--swap-space", "-1"],  # a negative number is a value, not an option
        ["--portal"],  # longer than --port: not an abbreviation of it
        ["--model-impl", "vllm"],
        ["--seed=1"],
    ],
)
def test_other_flags_pass(extra: list[str]) -> None:
    assert _args(extra_args=extra)[-len(extra) :] == extra


def test_render_options_apply_the_same_guard() -> None:
    from r4b_deploy.render.options import RenderOptions

    for extra in (["--api-ke=SECRET"], ["--api_key=SECRET"], ["--por=18998"], ["--hos=0.0.0.0"], ["--config=x.yaml"]):
        with pytest.raises(UsageError, match="--extra-vllm-arg: ") as caught:
            RenderOptions(extra_vllm_args=extra)
        assert "SECRET" not in caught.value.message
    with pytest.raises(UsageError, match="short option"):
        RenderOptions(extra_vllm_args=["--max-log-len", "-tp"])

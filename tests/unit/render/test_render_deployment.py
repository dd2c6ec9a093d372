"""Writing and reading a deployment folder: secrets, re-renders, refusals, atomicity, image tags."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from render_plans import heavy_plan, light_plan, make_ca_bundle, make_wheelhouse, rehearsal_plan, tp8_plan

from r4b_deploy.deployment import (
    ARGS_NAME,
    COMPOSE_NAME,
    DOCKERFILE_NAME,
    ENV_FILE_NAME,
    MANIFEST_NAME,
    Deployment,
    load_deployment,
    modified_files,
    project_name_for,
    read_env_file,
)
from r4b_deploy.errors import ConfigError, EnvironmentProblem, UsageError
from r4b_deploy.pins import gpu_pins, rehearsal_profile
from r4b_deploy.render.deployment import render_files, write_deployment
from r4b_deploy.render.options import RenderOptions, reading_manifest


def _options(tmp_path: Path, **kwargs: object) -> RenderOptions:
    return RenderOptions(hf_cache_dir=tmp_path / "hf", **kwargs)


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: bytes and mode."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _api_key(folder: Path) -> str:
    return read_env_file(folder)["VLLM_API_KEY"]


# ----------------------------------------------------------------------------- secrets


def test_env_file_is_0600_and_holds_the_only_copy_of_the_key(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    deployment = write_deployment(light_plan(), _options(tmp_path), out, environ={"HF_TOKEN": "hf_secretToken123"})
    env_path = out / ENV_FILE_NAME
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    key = _api_key(out)
    assert len(key) >= 40
    assert read_env_file(out)["HF_TOKEN"] == "hf_secretToken123"
    for path in out.rglob("*"):
        if path.is_file() and path != env_path:
            text = path.read_text()
            assert key not in text, f"the API key leaked into {path.name}"
            assert "hf_secretToken123" not in text, f"the HF token leaked into {path.name}"
    assert key not in deployment.model_dump_json()
    assert deployment.env_file == env_path


def test_api_key_is_kept_across_re_renders(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    key = _api_key(out)
    write_deployment(heavy_plan(), _options(tmp_path, host_port=9000), out, environ={})
    assert _api_key(out) == key


def test_each_folder_gets_its_own_key(tmp_path: Path) -> None:
    write_deployment(light_plan(), _options(tmp_path), tmp_path / "a", environ={})
    write_deployment(light_plan(), _options(tmp_path), tmp_path / "b", environ={})
    assert _api_key(tmp_path / "a") != _api_key(tmp_path / "b")


def test_hf_token_comes_from_the_named_variable_and_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    options = _options(tmp_path, hf_token_env="CORP_HF")
    write_deployment(light_plan(), options, out, environ={"HF_TOKEN": "hf_wrong", "CORP_HF": "hf_right"})
    assert read_env_file(out)["HF_TOKEN"] == "hf_right"
    write_deployment(light_plan(), options, out, environ={})  # variable unset later: the token stays
    assert read_env_file(out)["HF_TOKEN"] == "hf_right"


def test_no_hf_token_line_without_the_variable(tmp_path: Path) -> None:
    write_deployment(light_plan(), _options(tmp_path), tmp_path / "deploy", environ={})
    assert set(read_env_file(tmp_path / "deploy")) == {"VLLM_API_KEY"}


def test_unsafe_hf_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    with pytest.raises(UsageError) as caught:
        write_deployment(light_plan(), _options(tmp_path), out, environ={"HF_TOKEN": "hf_x\nVLLM_API_KEY=mine"})
    assert "hf_x" not in str(caught.value)
    assert "$HF_TOKEN" in caught.value.message
    assert not out.exists()


def test_lines_added_to_the_env_file_by_hand_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    env_path = out / ENV_FILE_NAME
    env_path.write_text(env_path.read_text() + "VLLM_LOGGING_LEVEL=DEBUG\n")
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    assert read_env_file(out)["VLLM_LOGGING_LEVEL"] == "DEBUG"


def test_read_env_file_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    os.chmod(out / ENV_FILE_NAME, 0o644)
    with pytest.raises(UsageError, match="readable by others"):
        read_env_file(out)
    # A re-render repairs the mode.
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    assert stat.S_IMODE((out / ENV_FILE_NAME).stat().st_mode) == 0o600


# ----------------------------------------------------------------------------- re-renders and refusals


def test_rendering_twice_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    options = _options(tmp_path, wheelhouse=make_wheelhouse(tmp_path / "wheels"))
    first = write_deployment(rehearsal_plan(), options, out, environ={})
    before = _snapshot(out)
    second = write_deployment(rehearsal_plan(), options, out, environ={})
    assert _snapshot(out) == before
    assert first == second
    assert (out / MANIFEST_NAME).read_text() == render_files(rehearsal_plan(), options, out)[MANIFEST_NAME]


def test_hand_edited_file_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    compose = out / COMPOSE_NAME
    compose.write_text(compose.read_text().replace("unless-stopped", "always"))
    before = _snapshot(out)
    with pytest.raises(UsageError, match=r"docker-compose.yml changed by hand") as caught:
        write_deployment(light_plan(), _options(tmp_path), out, environ={})
    assert "--force" in (caught.value.fix or "")
    assert _snapshot(out) == before
    write_deployment(light_plan(), _options(tmp_path), out, force=True, environ={})
    assert "always" not in compose.read_text()
    assert modified_files(load_deployment(out)) == []


def test_deleted_file_counts_as_a_hand_edit(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    deployment = write_deployment(light_plan(), _options(tmp_path), out, environ={})
    (out / ARGS_NAME).unlink()
    assert modified_files(deployment) == [ARGS_NAME]
    with pytest.raises(UsageError, match="changed by hand"):
        write_deployment(light_plan(), _options(tmp_path), out, environ={})


def test_non_empty_foreign_folder_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(UsageError, match="not an r4b-deploy folder"):
        write_deployment(light_plan(), _options(tmp_path), out, environ={})
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    write_deployment(light_plan(), _options(tmp_path), out, force=True, environ={})
    assert (out / "notes.txt").read_text() == "mine\n"
    assert (out / DOCKERFILE_NAME).is_file()


def test_empty_existing_folder_is_fine(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    out.mkdir()
    deployment = write_deployment(light_plan(), _options(tmp_path), out, environ={})
    fresh = tmp_path / "fresh"
    write_deployment(light_plan(), _options(tmp_path), fresh, environ={})
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in fresh.iterdir())  # a whole deployment
    assert load_deployment(out) == deployment and deployment.dir == out.resolve()


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deploy").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        write_deployment(light_plan(), _options(tmp_path), tmp_path / "deploy", environ={})


def test_failing_render_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    before = _snapshot(out)
    # --max-model-len is the plan's: an extra arg may not set it again. Refused after validation, while rendering.
    bad = _options(tmp_path, extra_vllm_args=["--max-model-len", "4096"], host_port=9000)
    with pytest.raises(UsageError, match="already set by the plan"):
        write_deployment(light_plan(), bad, out, environ={})
    assert _snapshot(out) == before


def test_failing_write_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    # A file where the rehearsal scripts' folder must go: staging fails after other files were staged.
    (out / "rehearsal").write_text("not a folder\n")
    before = _snapshot(out)
    options = _options(tmp_path, wheelhouse=make_wheelhouse(tmp_path / "wheels"))
    with pytest.raises(EnvironmentProblem, match="cannot write"):
        write_deployment(rehearsal_plan(), options, out, environ={})
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no temporaries left


def test_failing_first_render_creates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "deploy"
    with pytest.raises(UsageError):
        # A release not in profiles/vllm.yaml gpu.releases: refused before anything is written.
        unpinned = light_plan().model_copy(update={"vllm_version": "0.11.0"})
        write_deployment(unpinned, _options(tmp_path), out, environ={})
    assert not (tmp_path / "a").exists()


def test_switching_flavour_removes_the_old_flavours_files(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    wheels = make_wheelhouse(tmp_path / "wheels")
    write_deployment(rehearsal_plan(), _options(tmp_path, wheelhouse=wheels), out, environ={})
    assert (out / "rehearsal" / "tiny_model.py").is_file()
    assert (out / "wheelhouse").is_dir()
    write_deployment(light_plan(), _options(tmp_path), out, environ={})
    assert not (out / "rehearsal").exists()
    assert not (out / "wheelhouse").exists()


# ----------------------------------------------------------------------------- the wheelhouse


def test_wheelhouse_is_hard_linked_and_listed_by_name_and_size(tmp_path: Path) -> None:
    wheels = make_wheelhouse(tmp_path / "wheels")
    deployment = write_deployment(rehearsal_plan(), _options(tmp_path, wheelhouse=wheels), tmp_path / "d", environ={})
    for source in wheels.iterdir():
        linked = tmp_path / "d" / "wheelhouse" / source.name
        assert linked.stat().st_ino == source.stat().st_ino  # a link, not a copy
        assert deployment.wheels[source.name] == source.stat().st_size
    assert "COPY wheelhouse /wheels" in (tmp_path / "d" / DOCKERFILE_NAME).read_text()


def test_changed_wheel_set_changes_the_tag_and_relinks(tmp_path: Path) -> None:
    wheels = make_wheelhouse(tmp_path / "wheels")
    out = tmp_path / "d"
    first = write_deployment(rehearsal_plan(), _options(tmp_path, wheelhouse=wheels), out, environ={})
    (wheels / "extra-1.0-py3-none-any.whl").write_bytes(b"x" * 10)
    second = write_deployment(rehearsal_plan(), _options(tmp_path, wheelhouse=wheels), out, environ={})
    assert second.image_tag != first.image_tag
    assert (out / "wheelhouse" / "extra-1.0-py3-none-any.whl").is_file()


# ----------------------------------------------------------------------------- image tag and names


def test_flags_and_run_options_do_not_change_the_image(tmp_path: Path) -> None:
    base = render_files(light_plan(), _options(tmp_path), tmp_path / "d")
    variants = [
        render_files(heavy_plan(), _options(tmp_path), tmp_path / "d"),
        render_files(tp8_plan(), _options(tmp_path), tmp_path / "d"),
        render_files(
            light_plan(),
            _options(
                tmp_path,
                host_port=9000,
                public=True,
                served_model_name="other",
                model="org/other-model",
                extra_vllm_args=["--enforce-eager"],
                shm_size_bytes="1g",
                ulimits={"nofile": 1024},
            ),
            tmp_path / "d",
        ),
    ]
    for files in variants:
        assert files[DOCKERFILE_NAME] == base[DOCKERFILE_NAME]
        assert json.loads(files[MANIFEST_NAME])["image_tag"] == json.loads(base[MANIFEST_NAME])["image_tag"]
        assert files[COMPOSE_NAME] != base[COMPOSE_NAME]


@pytest.mark.parametrize(
    "change",
    [
        {"vllm_version": "0.19.1"},  # the plan's release (profiles/vllm.yaml), not an option
        {"base_image": "nvidia/cuda:12.8.1-devel-ubuntu22.04"},
        {"ca_bundle": "ca"},
        {"wheelhouse": "wheels"},
    ],
)
def test_build_inputs_change_the_image_tag(change: dict[str, str], tmp_path: Path) -> None:
    if "ca_bundle" in change:
        change = {"ca_bundle": str(make_ca_bundle(tmp_path / "ca.pem"))}
    if "wheelhouse" in change:
        change = {"wheelhouse": str(make_wheelhouse(tmp_path / "wheels"))}
    plan = light_plan()
    if "vllm_version" in change:
        plan, change = plan.model_copy(update=change), {}
    base = json.loads(render_files(light_plan(), _options(tmp_path), tmp_path / "d")[MANIFEST_NAME])
    other = json.loads(render_files(plan, _options(tmp_path, **change), tmp_path / "d")[MANIFEST_NAME])
    assert other["image_tag"] != base["image_tag"]
    assert other["image_tag"].startswith("r4b-deploy/r4b:")
    assert len(other["image_tag"].split(":")[1]) == 12


def test_ca_bundle_content_is_part_of_the_tag(tmp_path: Path) -> None:
    ca = make_ca_bundle(tmp_path / "ca.pem")
    first = json.loads(render_files(light_plan(), _options(tmp_path, ca_bundle=ca), tmp_path / "d")[MANIFEST_NAME])
    ca.write_text(ca.read_text() * 2)
    second = json.loads(render_files(light_plan(), _options(tmp_path, ca_bundle=ca), tmp_path / "d")[MANIFEST_NAME])
    assert first["image_tag"] != second["image_tag"]


def test_project_name_is_stable_per_folder(tmp_path: Path) -> None:
    a = write_deployment(light_plan(), _options(tmp_path), tmp_path / "a", environ={})
    b = write_deployment(light_plan(), _options(tmp_path), tmp_path / "b", environ={})
    assert a.project_name == project_name_for(tmp_path / "a") == a.container.name
    assert a.project_name != b.project_name
    assert a.project_name.startswith("r4b-") and len(a.project_name) == 12
    compose = yaml.safe_load((tmp_path / "a" / COMPOSE_NAME).read_text())
    assert compose["services"]["vllm"]["container_name"] == a.project_name
    assert compose["services"]["vllm"]["labels"]["io.r4b-deploy.dir"] == str(tmp_path / "a")


# ----------------------------------------------------------------------------- what the compose file says


def _service(files: dict[str, str]) -> dict:
    return yaml.safe_load(files[COMPOSE_NAME])["services"]["vllm"]


def test_compose_binds_loopback_unless_public(tmp_path: Path) -> None:
    assert _service(render_files(light_plan(), _options(tmp_path)))["ports"] == ["127.0.0.1:8000:8000"]
    public = render_files(light_plan(), _options(tmp_path, public=True, host_port=8443))
    assert _service(public)["ports"] == ["0.0.0.0:8443:8000"]


def test_compose_has_no_version_or_name_key(tmp_path: Path) -> None:
    compose = yaml.safe_load(render_files(light_plan(), _options(tmp_path))[COMPOSE_NAME])
    assert set(compose) == {"services", "networks"}
    # Only the default network, labelled with the folder so `down` removes it too.
    assert set(compose["networks"]) == {"default"} and "io.r4b-deploy.dir" in compose["networks"]["default"]["labels"]


def test_compose_command_is_the_plan_args_for_the_container(tmp_path: Path) -> None:
    plan = light_plan()
    files = render_files(plan, _options(tmp_path, extra_vllm_args=["--enforce-eager"]))
    command = _service(files)["command"]
    assert command[0] == plan.vllm.model
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"
    assert command.count("--host") == 1 and command.count("--port") == 1
    assert command[-1] == "--enforce-eager"
    assert command[command.index("--limit-mm-per-prompt") + 1] == '{"image":2,"video":0}'
    # vllm-args.txt is the same list, one per line, safe for `vllm serve $(cat vllm-args.txt)`.
    assert files[ARGS_NAME].split() == command
    assert files[ARGS_NAME].splitlines() == command


def test_compose_gpu_request_follows_the_plan(tmp_path: Path) -> None:
    devices = _service(render_files(tp8_plan(), _options(tmp_path)))["deploy"]["resources"]["reservations"]
    expected = {"driver": "nvidia", "device_ids": [str(i) for i in range(8)], "capabilities": ["gpu"]}
    assert devices["devices"] == [expected]
    heavy = _service(render_files(heavy_plan(), _options(tmp_path)))["deploy"]["resources"]["reservations"]
    assert heavy["devices"][0]["count"] == 1
    assert "deploy" not in _service(render_files(rehearsal_plan(), _options(tmp_path)))


def test_compose_shm_defaults_per_flavour(tmp_path: Path) -> None:
    rehearsal = _service(render_files(rehearsal_plan(), _options(tmp_path)))
    assert rehearsal["shm_size"] == rehearsal_profile().shm_size_bytes
    gpu = _service(render_files(light_plan(), _options(tmp_path)))
    assert gpu["shm_size"] >= 1024**3
    ipc = _service(render_files(light_plan(), _options(tmp_path, ipc_host=True)))
    assert ipc["ipc"] == "host" and "shm_size" not in ipc


def test_compose_mounts(tmp_path: Path) -> None:
    gpu = _service(render_files(light_plan(), _options(tmp_path)))
    assert gpu["volumes"] == [f"{tmp_path / 'hf'}:/root/.cache/huggingface"]
    local = _service(render_files(light_plan(), _options(tmp_path, model="/srv/models/R-4B")))
    assert local["volumes"] == ["/srv/models/R-4B:/srv/models/R-4B:ro"]
    assert local["command"][0] == "/srv/models/R-4B"
    assert "volumes" not in _service(render_files(rehearsal_plan(), _options(tmp_path)))


def test_compose_without_ulimits_by_default(tmp_path: Path) -> None:
    assert "ulimits" not in _service(render_files(light_plan(), _options(tmp_path)))
    service = _service(render_files(light_plan(), _options(tmp_path, ulimits={"memlock": -1})))
    assert service["ulimits"] == {"memlock": -1}


def test_served_model_name_override(tmp_path: Path) -> None:
    files = render_files(light_plan(), _options(tmp_path, served_model_name="r4b-prod"))
    command = _service(files)["command"]
    assert command[command.index("--served-model-name") + 1] == "r4b-prod"
    assert command.count("--served-model-name") == 1
    assert json.loads(files[MANIFEST_NAME])["served_model_name"] == "r4b-prod"


def test_vllm_version_option_does_not_apply_to_the_rehearsal(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--vllm-version applies to GPU images"):
        render_files(rehearsal_plan().model_copy(update={"vllm_version": "0.33.0"}), _options(tmp_path))


def test_vllm_version_defaults_to_the_pin(tmp_path: Path) -> None:
    manifest = json.loads(render_files(light_plan(), _options(tmp_path))[MANIFEST_NAME])
    assert manifest["vllm_version"] == gpu_pins().vllm_version
    rehearsal = json.loads(render_files(rehearsal_plan(), _options(tmp_path))[MANIFEST_NAME])
    assert rehearsal["vllm_version"] == rehearsal_profile().vllm_version


# ----------------------------------------------------------------------------- reading a folder back


def test_load_deployment_round_trips(tmp_path: Path) -> None:
    ca = make_ca_bundle(tmp_path / "ca.pem")
    written = write_deployment(tp8_plan(), _options(tmp_path, ca_bundle=ca), tmp_path / "d", environ={})
    loaded = load_deployment(tmp_path / "d")
    assert loaded == written
    assert loaded.plan == tp8_plan()
    # The host's CA file may go away: the folder keeps its copy, and loading still works.
    ca.unlink()
    assert load_deployment(tmp_path / "d") == written


def test_load_deployment_of_a_moved_folder_is_refused(tmp_path: Path) -> None:
    write_deployment(light_plan(), _options(tmp_path), tmp_path / "d", environ={})
    (tmp_path / "d").rename(tmp_path / "moved")
    with pytest.raises(UsageError, match="rendered for"):
        load_deployment(tmp_path / "moved")
    # Re-rendering in the new place fixes it (no --force needed: nothing was edited by hand).
    deployment = load_deployment_after_rerender(tmp_path / "moved")
    assert deployment.dir == tmp_path / "moved"


def load_deployment_after_rerender(folder: Path) -> Deployment:
    raw = json.loads((folder / MANIFEST_NAME).read_text())
    with reading_manifest():
        old = Deployment.model_validate(raw)
    write_deployment(old.plan, old.options, folder, environ={})
    return load_deployment(folder)


def test_load_deployment_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not an r4b-deploy folder"):
        load_deployment(tmp_path)
    write_deployment(light_plan(), _options(tmp_path), tmp_path / "d", environ={})
    manifest = tmp_path / "d" / MANIFEST_NAME
    raw = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(ConfigError, match="schema_version"):
        load_deployment(tmp_path / "d")
    manifest.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_deployment(tmp_path / "d")
    manifest.write_text(json.dumps({**raw, "image_tag": None}))
    with pytest.raises(ConfigError, match="image_tag"):
        load_deployment(tmp_path / "d")


def test_broken_manifest_needs_force_to_re_render(tmp_path: Path) -> None:
    write_deployment(light_plan(), _options(tmp_path), tmp_path / "d", environ={})
    (tmp_path / "d" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ConfigError):
        write_deployment(light_plan(), _options(tmp_path), tmp_path / "d", environ={})
    write_deployment(light_plan(), _options(tmp_path), tmp_path / "d", force=True, environ={})
    load_deployment(tmp_path / "d")

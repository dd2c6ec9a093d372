"""How the containers run: the `ContainerSpec`s the docker runtime starts, and the same values as
`docker-compose.yml`, so compose and the runtime cannot disagree.

The command is the plan's settings as `vllm serve` arguments (the image's ENTRYPOINT), given at
run time; every string the compose file gets is escaped for compose's `$` interpolation here.
A plan with replicas runs N such engines, each on its own GPUs (rehearsing: its own CPU core) and
a loopback port of its own, and vLLM's router from the same image on the API port (`router.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from r4b_deploy.deployment import (
    LABEL_DIR,
    LABEL_PROFILE,
    LABEL_PROJECT,
    LABEL_REPLICA,
    LABEL_ROLE,
    LOCAL_BIND_ADDRESS,
    PUBLIC_BIND_ADDRESS,
    REPLICA_SERVICE,
    ContainerSpec,
    VolumeMount,
    project_name_for,
)
from r4b_deploy.errors import UsageError
from r4b_deploy.launch.args import CONTAINER_HOST, CONTAINER_PORT, vllm_serve_args
from r4b_deploy.planning.plan import Plan
from r4b_deploy.render import validate
from r4b_deploy.render.dockerfile import CONTAINER_HF_HOME, health_settings
from r4b_deploy.render.options import RenderOptions

# vLLM's CPU build binds its OpenMP threads to these cores (vllm/utils/ompmultiprocessing.py).
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


def container_spec(
    plan: Plan, options: RenderOptions, out: Path, *, image_tag: str, model: str, served_model_name: str
) -> ContainerSpec:
    """The container for the folder `out` (its identity: names and labels derive from it)."""
    # A model folder (--model DIR, or render's own model option) is served from the same path, read-only.
    local_model = model.startswith("/") and (options.model is not None or not plan.rehearsal)
    if local_model:
        reason = validate.problem(model, validate.ABSOLUTE_PATH, "an absolute path of letters, digits and . _ @ + - /")
        if reason is not None:
            raise UsageError(
                f"the model folder {model!r} {reason}: it becomes a compose volume and a vLLM argument",
                fix="move or link the model to such a path and give --model that path",
            )
    command = container_command(plan, options, model, served_model_name)

    volumes: list[VolumeMount] = []
    if validate.HF_MODEL_ID.fullmatch(model):
        volumes.append(VolumeMount(source=str(options.hf_cache_dir), target=CONTAINER_HF_HOME))
    if local_model:
        volumes.append(VolumeMount(source=model, target=model, read_only=True))
    project = project_name_for(out)
    return ContainerSpec(
        name=project,
        image=image_tag,
        command=command,
        container_port=CONTAINER_PORT,
        bind_address=PUBLIC_BIND_ADDRESS if options.public else LOCAL_BIND_ADDRESS,
        host_port=options.host_port,
        shm_size_bytes=_shm_size_bytes(plan, options),
        ipc_mode="host" if options.ipc_host else None,
        ulimits=dict(options.ulimits),
        **_gpu_request(plan),
        volumes=volumes,
        labels={LABEL_PROJECT: project, LABEL_DIR: str(out), LABEL_PROFILE: plan.profile},
        health=health_settings(plan.rehearsal),
    )


def deployment_containers(
    plan: Plan, options: RenderOptions, out: Path, *, image_tag: str, model: str, served_model_name: str
) -> tuple[list[ContainerSpec], ContainerSpec | None]:
    """The vLLM engines and, with more than one, the router in front of them."""
    one = container_spec(plan, options, out, image_tag=image_tag, model=model, served_model_name=served_model_name)
    if plan.replica_count == 1:
        return [one], None
    from r4b_deploy.render.router import router_spec

    network = one.name  # the project's own network: the router reaches each replica by container name
    replicas = []
    for index, gpus in enumerate(plan.replica_gpu_indices()):
        service = REPLICA_SERVICE.format(index=index)
        update: dict[str, Any] = {
            "name": f"{one.name}-{service}",
            "service": service,
            "replica_index": index,
            # Loopback only, whatever --public says: clients use the router; these serve metrics and checks.
            "bind_address": LOCAL_BIND_ADDRESS,
            "host_port": options.host_port + 1 + index,
            "labels": {**one.labels, LABEL_ROLE: "replica", LABEL_REPLICA: str(index)},
            "network": network,
        }
        if plan.rehearsal:
            # One CPU core each (the planner refused more replicas than cores), and vLLM's OpenMP
            # threads bound to it: its automatic binding would reserve that one core for the scheduler.
            update |= {"cpuset_cpus": str(index), "environment": {CPU_BIND_ENV: str(index)}}
        else:
            update |= {"gpu_device_ids": [str(i) for i in gpus], "gpu_count": None}
        replicas.append(one.model_copy(update=update))
    router = router_spec(replicas, options, image_tag=image_tag, project=one.name, network=network)
    return replicas, router


def compose_text(containers: list[ContainerSpec]) -> str:
    """docker-compose.yml for `containers` (one engine, or replicas and the router), every value
    escaped for compose."""
    from r4b_deploy.render.jinja import render_template

    return render_template(
        "docker-compose.yml.j2",
        **_compose_literals(
            project_name=containers[0].labels.get(LABEL_PROJECT, containers[0].name),
            api_port_binding=_port_binding(containers[-1]),
            network_label=LABEL_DIR,
            network_label_value=containers[0].labels[LABEL_DIR],
        ),
        services=[_compose_literals(**_service(c)) for c in containers],
    )


def _port_binding(container: ContainerSpec) -> str:
    return f"{container.bind_address}:{container.host_port}:{container.container_port}"


def _service(container: ContainerSpec) -> dict[str, Any]:
    """One service's values for the template."""
    return {
        "service": container.service,
        "role": container.role,
        "image_tag": container.image,
        "container_name": container.name,
        "entrypoint": container.entrypoint,
        "command": container.command,
        "environment": container.environment,
        "port_binding": _port_binding(container),
        "ipc_host": container.ipc_mode == "host",
        "shm_size_bytes": container.shm_size_bytes,
        "ulimits": container.ulimits,
        "cpuset": container.cpuset_cpus,
        "volumes": [f"{v.source}:{v.target}{':ro' if v.read_only else ''}" for v in container.volumes],
        "health": container.health,
        "health_test": ["CMD", "curl", "-fsS", container.health.url],
        "labels": container.labels,
        "gpu_count": container.gpu_count,
        "gpu_device_ids": container.gpu_device_ids,
        "depends_on": container.depends_on,
    }


def container_command(plan: Plan, options: RenderOptions, model: str, served_model_name: str) -> list[str]:
    """The plan's settings as `vllm serve` arguments, listening on the container's port: the same
    list for a compose service and a Kubernetes pod (neither may see whitespace, controls or `$`)."""
    command = vllm_serve_args(
        plan.vllm,
        model=model,
        served_model_name=served_model_name,
        host=CONTAINER_HOST,
        port=CONTAINER_PORT,
        extra_args=options.extra_vllm_args,
    )
    for arg in command:
        if any(not c.isprintable() or c.isspace() for c in arg) or "$" in arg:
            raise UsageError(
                f"the plan's vLLM argument {arg!r} contains whitespace, a control character or `$`",
                fix="re-plan: r4b-deploy plan --json shows the arguments",
            )
    return command


def _gpu_request(plan: Plan) -> dict[str, Any]:
    """The GPUs the container reserves: the plan's own indices (NVML order, as Docker counts them)."""
    if plan.rehearsal:
        return {}
    if plan.gpu_indices:
        return {"gpu_device_ids": [str(i) for i in plan.gpu_indices]}
    return {"gpu_count": plan.vllm.tensor_parallel_size}


def _shm_size_bytes(plan: Plan, options: RenderOptions) -> int | None:
    from r4b_deploy.pins import gpu_pins, rehearsal_profile

    if options.ipc_host:
        return None
    if options.shm_size_bytes is not None:
        return options.shm_size_bytes
    if plan.rehearsal:
        return rehearsal_profile().shm_size_bytes
    return gpu_pins().shm_size_bytes


def _compose_literals(**context: Any) -> dict[str, Any]:
    """Every string the compose file gets, with `$` written `$$`: compose interpolates `$X`,
    `${X:?msg}` in every value, and the folder's path (in a label `down` finds the container by)
    may hold a `$`. The one place a value is escaped for compose; others are whitelisted upstream."""
    return {key: _compose_literal(value) for key, value in context.items()}


def _compose_literal(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list | tuple):
        return [_compose_literal(item) for item in value]
    if isinstance(value, dict):
        return {_compose_literal(key): _compose_literal(item) for key, item in value.items()}
    return value

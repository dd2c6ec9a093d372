"""vLLM's router in front of the replicas: its arguments (one list for a compose service and a
Kubernetes pod) and, on one host, its container.

The router is `vllm-router` (profiles/vllm.yaml router.package, settings in profiles/kubernetes.yaml
router), installed into the same image as the replicas (`templates/blocks/router.j2`): one build.
It holds no API key: it passes each client's `Authorization` header through unchanged and the
replicas decide (VLLM_API_KEY), as tests/unit/render/test_kubernetes_router.py shows for real.
It answers only once every worker is healthy (it waits up to --worker-startup-timeout-secs first),
then retries a failed request on another worker and health-checks them every few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from r4b_deploy.deployment import (
    LABEL_REPLICA,
    LABEL_ROLE,
    LOCAL_BIND_ADDRESS,
    PUBLIC_BIND_ADDRESS,
    ROUTER_SERVICE,
    ContainerSpec,
    HealthSettings,
)
from r4b_deploy.launch.args import CONTAINER_HOST
from r4b_deploy.render.kubernetes_values import RouterProfile, kubernetes_profile
from r4b_deploy.render.options import RenderOptions


def router_args(
    router: RouterProfile,
    *,
    worker_urls: Sequence[str] = (),
    discovery: Sequence[str] = (),
    startup_timeout_s: int | None = None,
) -> list[str]:
    """`vllm-router` arguments: static `worker_urls` (one host), or `discovery` flags (Kubernetes)."""
    args = ["--host", CONTAINER_HOST, "--port", str(router.port)]
    if worker_urls:
        args += ["--worker-urls", *worker_urls]
    args += list(discovery)
    args += [
        "--policy", router.policy,
        "--health-check-interval-secs", str(router.health_check_interval_s),
        "--prometheus-host", CONTAINER_HOST,
        "--prometheus-port", str(router.metrics_port),
    ]  # fmt: skip
    if startup_timeout_s is not None:
        args += ["--worker-startup-timeout-secs", str(startup_timeout_s)]
    return args


def router_spec(
    replicas: Sequence[ContainerSpec], options: RenderOptions, *, image_tag: str, project: str, network: str
) -> ContainerSpec:
    """The router's container on one host: the replicas' image with the router's entrypoint, on the
    API port (127.0.0.1 unless --public), reaching each replica by container name on `network`."""
    from r4b_deploy.render.dockerfile import ROUTER_ENTRYPOINT

    router = kubernetes_profile().router
    first = replicas[0]
    # Until every replica loads its model the router does not listen: the same budget as theirs.
    startup_s = first.health.start_period_s
    labels = {k: v for k, v in first.labels.items() if k != LABEL_REPLICA} | {LABEL_ROLE: "router"}
    return ContainerSpec(
        name=f"{project}-{ROUTER_SERVICE}",
        image=image_tag,
        entrypoint=list(ROUTER_ENTRYPOINT),
        command=router_args(
            router,
            worker_urls=[f"http://{r.name}:{r.container_port}" for r in replicas],
            startup_timeout_s=startup_s,
        ),
        container_port=router.port,
        bind_address=PUBLIC_BIND_ADDRESS if options.public else LOCAL_BIND_ADDRESS,
        host_port=options.host_port,
        shm_size_bytes=None,
        ipc_mode=None,
        ulimits={},
        volumes=[],
        labels=labels,
        health=HealthSettings(
            url=f"http://{LOCAL_BIND_ADDRESS}:{router.port}/health",
            interval_s=first.health.interval_s,
            timeout_s=first.health.timeout_s,
            start_period_s=startup_s,
            retries=first.health.retries,
        ),
        role="router",
        service=ROUTER_SERVICE,
        network=network,
        depends_on=[r.service for r in replicas],
    )

"""The one-host router's arguments, as the rendered folder records them, parse with vllm-router's
own parser into what the replicas need: each replica by container name on the project network,
the API port, the policy and metrics port of profiles/kubernetes.yaml, and the replicas' own
start-up budget (the router waits that long for every worker before it answers).
The Kubernetes router's flags: test_kubernetes.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from render_plans import golden_cases
from support import require

from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.kubernetes_values import kubernetes_profile
from r4b_deploy.render.options import RenderOptions


def test_the_one_host_routers_flags_parse_with_vllm_routers_own_parser(tmp_path: Path) -> None:
    require(importlib.util.find_spec("vllm_router") is not None, "vllm-router (test extra)")
    from importlib.metadata import version

    from vllm_router.launch_router import parse_router_args

    profile = kubernetes_profile().router
    assert version("vllm-router") == profile.version, "the test extra and profiles/kubernetes.yaml disagree"
    plan, options = golden_cases(tmp_path)["replicas"]
    deployment = write_deployment(plan, RenderOptions(**options), tmp_path / "d")  # type: ignore[arg-type]
    router = deployment.router
    assert router is not None and len(deployment.replicas) == plan.replica_count
    parsed = parse_router_args(router.command)
    assert parsed.worker_urls == [f"http://{r.name}:{r.container_port}" for r in deployment.replicas]
    assert all(url.endswith(":8000") for url in parsed.worker_urls)
    assert (parsed.port, parsed.policy, parsed.prometheus_port) == (profile.port, profile.policy, profile.metrics_port)
    assert parsed.port == router.container_port
    assert parsed.health_check_interval_secs == profile.health_check_interval_s
    assert {parsed.worker_startup_timeout_secs} == {r.health.start_period_s for r in deployment.replicas}
    assert not parsed.service_discovery and parsed.api_key is None  # static workers; the replicas check the key

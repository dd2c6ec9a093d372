"""`render --target kubernetes`: the manifests, validated offline against Kubernetes' and KEDA's schemas."""

from __future__ import annotations

import importlib.util
import json

import pytest
from kubernetes_support import (
    golden_case,
    keda_fixture,
    objects,
    one,
    render,
    strict_schema,
    validate_builtin,
    validate_scaled_object,
)
from render_plans import gpu_plan, heavy_plan, rehearsal_plan, tp8_plan
from support import require

from r4b_deploy.deployment import ARGS_NAME, MANIFEST_NAME
from r4b_deploy.errors import UsageError
from r4b_deploy.hardware.inventory import GPU
from r4b_deploy.launch.args import CONTAINER_PORT
from r4b_deploy.pins import gpu_pins
from r4b_deploy.render.deployment import render_files
from r4b_deploy.render.dockerfile import GPU_HEALTH_START_PERIOD_S
from r4b_deploy.render.kubernetes import (
    HPA_MANIFEST,
    KEDA_MANIFEST,
    ROUTER_DOCKERFILE,
    render_kubernetes_files,
)
from r4b_deploy.render.kubernetes_values import KubernetesOptions, kubernetes_profile
from r4b_deploy.render.options import RenderOptions

PLANS = {
    "heavy-h100": heavy_plan,
    "tp8-a100": tp8_plan,
    "light-l4": lambda: gpu_plan("light", "L4", 23 * 1024**3, 1, 16384),
}


@pytest.mark.parametrize("case", sorted(PLANS))
def test_every_builtin_object_passes_kubernetes_validate_strict(case: str) -> None:
    files = render(PLANS[case](), replicas=3)
    kinds = []
    for _name, obj in objects(files):
        if obj["kind"] == "ScaledObject":
            continue
        validate_builtin(obj)
        kinds.append(obj["kind"])
    assert sorted(kinds) == sorted(
        ["Deployment", "Service", "PodDisruptionBudget"] * 2
        + ["ServiceAccount", "Role", "RoleBinding", "HorizontalPodAutoscaler"]
    )


def test_the_validator_catches_a_typo_so_passing_means_something() -> None:
    deployment = one(render(), "Deployment", "vllm")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(Exception, match="readinesProbe"):
        validate_builtin(deployment)


@pytest.mark.parametrize("case", sorted(PLANS))
def test_the_scaled_object_passes_kedas_published_crd_schema(case: str) -> None:
    validate_scaled_object(one(render(PLANS[case](), min_replicas=2, max_replicas=6), "ScaledObject"))


def test_the_keda_schema_check_refuses_an_unknown_field_and_an_unknown_trigger_key() -> None:
    require(importlib.util.find_spec("jsonschema") is not None, "jsonschema (comes with kubernetes-validate)")
    import jsonschema

    scaled = one(render(), "ScaledObject")
    scaled["spec"]["maxReplicas"] = 3  # the HPA's spelling, not KEDA's
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(scaled, strict_schema(keda_fixture()["openAPIV3Schema"]))
    scaled = one(render(), "ScaledObject")
    scaled["spec"]["triggers"][0]["metadata"]["serverAdress"] = "http://x"
    with pytest.raises(AssertionError, match="unknown Prometheus trigger key"):
        validate_scaled_object(scaled)


def test_the_keda_fixture_names_its_source() -> None:
    source = keda_fixture()["source"]
    assert source["repository"] == "https://github.com/kedacore/keda" and len(source["commit"]) == 40


def test_autoscaling_reads_vllms_queue_by_model_name_in_both_forms() -> None:
    files = render(min_replicas=2, max_replicas=6)
    scaled, hpa = one(files, "ScaledObject"), one(files, "HorizontalPodAutoscaler")
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert query == 'sum(vllm:num_requests_waiting{model_name="r4b"})'  # vLLM's label is model_name, not model
    target = kubernetes_profile().autoscaling.waiting_requests_per_replica
    assert scaled["spec"]["triggers"][0]["metadata"]["threshold"] == str(target)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": str(target)}
    for spec in (scaled["spec"], hpa["spec"]):
        assert spec["scaleTargetRef"]["name"] == one(files, "Deployment", "vllm")["metadata"]["name"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 6)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    # Two autoscalers on one Deployment fight: they live apart from what `kubectl apply -f DIR` takes.
    assert {KEDA_MANIFEST, HPA_MANIFEST} <= set(files) and all("/" in n for n in (KEDA_MANIFEST, HPA_MANIFEST))


def test_the_replicas_run_the_same_vllm_arguments_as_the_docker_folder() -> None:
    plan, options, k8s = golden_case()
    container = one(render_kubernetes_files(plan, options, k8s), "Deployment", "vllm")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["args"] == render_files(plan, options)[ARGS_NAME].split()


def test_resources_gpus_and_shm_come_from_the_plan_and_pins() -> None:
    plan = tp8_plan()
    pod = one(render(plan), "Deployment", "vllm")["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 8
    mib = 1024**2
    request = int(resources["requests"]["memory"].removesuffix("Mi"))
    limit = int(resources["limits"]["memory"].removesuffix("Mi"))
    assert request * mib >= plan.memory.weights_bytes + kubernetes_profile().vllm.host_memory_overhead_bytes
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]
    assert shm["medium"] == "Memory" and int(shm["sizeLimit"].removesuffix("Mi")) * mib == gpu_pins().shm_size_bytes
    assert limit - request == gpu_pins().shm_size_bytes // mib  # a memory emptyDir counts against the limit
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_probes_use_health_and_the_startup_budget_covers_model_loading() -> None:
    container = one(render(), "Deployment", "vllm")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= GPU_HEALTH_START_PERIOD_S
    assert container["ports"] == [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]


def test_the_secret_is_referenced_never_contained() -> None:
    files = render()
    env = one(files, "Deployment", "vllm")["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env}
    assert refs["VLLM_API_KEY"] == {"name": "r4b-secrets", "key": "VLLM_API_KEY"}
    assert refs["HF_TOKEN"]["optional"] is True
    assert not [obj for _, obj in objects(files) if obj["kind"] == "Secret"]
    assert all("value" not in e for e in env)


def test_node_selection_by_gpu_product_as_feature_discovery_labels_it() -> None:
    def products(plan) -> list[str]:  # type: ignore[no-untyped-def]
        pod = one(render(plan), "Deployment", "vllm")["spec"]["template"]["spec"]
        (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        (expression,) = term["matchExpressions"]
        assert expression["key"] == "nvidia.com/gpu.product" and expression["operator"] == "In"
        return expression["values"]

    # Named from the catalog: every NVML name of the model, spaces as dashes.
    assert products(heavy_plan()) == ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe", "NVIDIA-H100-SXM5-80GB"]
    assert "NVIDIA-A100-SXM4-40GB" in products(tp8_plan())
    # Measured: the GPU's own NVML name.
    measured = heavy_plan().model_copy(
        update={
            "inventory_source": "nvml",
            "gpus": [
                GPU(index=0, name="NVIDIA H100 80GB HBM3", memory_total_bytes=85_520_809_984, compute_capability="9.0")
            ],
        }
    )
    assert products(measured) == ["NVIDIA-H100-80GB-HBM3"]


def test_an_unknown_gpu_needs_gpu_product_and_the_option_wins() -> None:
    custom = gpu_plan("light", "GPU-16384MiB-cc89", 16 * 1024**3, 1, 8192)
    with pytest.raises(UsageError, match="--gpu-product") as info:
        render(custom)
    assert "gpu.product" in str(info.value)
    pod = one(render(custom, gpu_products=["Tesla-T4"]), "Deployment", "vllm")["spec"]["template"]["spec"]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["Tesla-T4"]


def test_the_router_discovers_the_vllm_pods_with_read_access_to_pods_only() -> None:
    files = render(namespace="serving")
    router = one(files, "Deployment", "router")
    vllm = one(files, "Deployment", "vllm")
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    selector = args[args.index("--selector") + 1 : args.index("--service-discovery-port")]
    assert dict(s.split("=", 1) for s in selector) == vllm["spec"]["selector"]["matchLabels"]
    assert args[args.index("--service-discovery-namespace") + 1] == "serving"
    assert args[args.index("--service-discovery-port") + 1] == str(CONTAINER_PORT)
    (rule,) = one(files, "Role")["rules"]
    assert rule == {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    assert router["spec"]["template"]["spec"]["serviceAccountName"] == one(files, "ServiceAccount")["metadata"]["name"]
    assert vllm["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert {obj["metadata"]["namespace"] for _, obj in objects(files)} == {"serving"}


def test_the_routers_flags_parse_with_vllm_routers_own_parser() -> None:
    require(importlib.util.find_spec("vllm_router") is not None, "vllm-router (test extra)")
    from importlib.metadata import version

    from vllm_router.launch_router import parse_router_args

    profile = kubernetes_profile().router
    assert version("vllm-router") == profile.version, "the test extra and profiles/kubernetes.yaml disagree"
    files = render(namespace="serving")
    args = one(files, "Deployment", "router")["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = parse_router_args(args)
    assert parsed.service_discovery and parsed.service_discovery_namespace == "serving"
    assert parsed.selector == one(files, "Deployment", "vllm")["spec"]["selector"]["matchLabels"]
    assert (parsed.port, parsed.prometheus_port, parsed.policy) == (profile.port, profile.metrics_port, profile.policy)
    assert parsed.health_check_interval_secs == profile.health_check_interval_s
    assert f"vllm-router=={profile.version}" in render()[ROUTER_DOCKERFILE]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_replicas": 5, "max_replicas": 2}, "--min-replicas 5 is more than --max-replicas 2"),
        ({"replicas": 9, "max_replicas": 4}, "--replicas 9 is more than --max-replicas 4"),
        ({"namespace": "Bad_NS"}, "--namespace"),
        ({"image": "reg.example.com/r4b:1.0; rm -rf /"}, "--image"),
        ({"prometheus_url": "ftp://x"}, "--prometheus-url"),
        ({"gpu_products": ["NVIDIA H100"]}, "--gpu-product"),
    ],
)
def test_bad_kubernetes_options_are_usage_errors_naming_the_option(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        KubernetesOptions(**kwargs)


def test_replica_defaults_never_contradict_given_values() -> None:
    def counts(**kwargs: int) -> tuple[int, int, int]:
        spec = one(render(**kwargs), "ScaledObject")["spec"]
        replicas = one(render(**kwargs), "Deployment", "vllm")["spec"]["replicas"]
        return replicas, spec["minReplicaCount"], spec["maxReplicaCount"]

    profile = kubernetes_profile()
    assert counts() == (profile.replicas, profile.min_replicas, profile.max_replicas)
    assert counts(replicas=12) == (12, profile.min_replicas, 12)
    assert counts(max_replicas=1) == (1, 1, 1)
    assert counts(min_replicas=3) == (3, 3, profile.max_replicas)


def test_refused_plans_and_docker_only_options() -> None:
    with pytest.raises(UsageError, match="rehearsal"):
        render(rehearsal_plan())
    plan, _, k8s = golden_case()
    with pytest.raises(UsageError, match="--public"):
        render_kubernetes_files(plan, RenderOptions(public=True), k8s)
    with pytest.raises(UsageError, match="local folder"):
        render_kubernetes_files(plan, RenderOptions(model="/models/R-4B"), k8s)


def test_the_default_image_is_the_gpu_images_own_tag() -> None:
    plan, options, _ = golden_case()
    files = render_kubernetes_files(plan, options, KubernetesOptions())
    tag = one(files, "Deployment", "vllm")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert tag == json.loads(render_files(plan, options)[MANIFEST_NAME])["image_tag"]


def test_every_selector_and_named_port_finds_what_it_names() -> None:
    files = render()
    for component in ("vllm", "router"):
        deployment = one(files, "Deployment", component)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        service, budget = one(files, "Service", component), one(files, "PodDisruptionBudget", component)
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        named = {port["name"] for port in container["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= named
        probes = [container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in container]
        assert {probe["httpGet"]["port"] for probe in probes} <= named
    # The router and the replicas never select each other's pods.
    router_pods = one(files, "Deployment", "router")["spec"]["template"]["metadata"]["labels"]
    assert not one(files, "Service", "vllm")["spec"]["selector"].items() <= router_pods.items()

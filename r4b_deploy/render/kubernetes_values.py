"""The facts and user choices behind `render --target kubernetes`, each validated on the way in.

`profiles/kubernetes.yaml` holds the router's pin and flags and the sizing facts the plan lacks;
`KubernetesOptions` holds what the user chose (image, replicas, namespace, ...). Values that land
in a manifest are checked against Kubernetes' own name and label rules here, so the renderer
only formats them.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from r4b_deploy.datafile import StrictModel, validation_problem
from r4b_deploy.errors import UsageError
from r4b_deploy.paths import profiles_dir
from r4b_deploy.render import validate

if TYPE_CHECKING:
    from r4b_deploy.planning.plan import Plan

PROFILE_FILE_NAME = "kubernetes.yaml"
MIB = 1024**2

# Kubernetes' own rules (k8s.io/apimachinery validation): a DNS-1123 label (namespaces, most
# names), a DNS-1123 subdomain (claim names), a label value.
DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
# A Prometheus URL for KEDA: http(s), a host of DNS characters, an optional port and path.
HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?")

# The CLI's name for each option: errors speak the user's language.
OPTION_FLAGS: dict[str, str] = {
    "image": "--image",
    "router_image": "--router-image",
    "replicas": "--replicas",
    "min_replicas": "--min-replicas",
    "max_replicas": "--max-replicas",
    "namespace": "--namespace",
    "prometheus_url": "--prometheus-url",
    "gpu_products": "--gpu-product",
    "hf_cache_pvc": "--hf-cache-pvc",
}


class VllmSizing(StrictModel):
    host_memory_overhead_bytes: int = Field(gt=0)
    cpus_base: int = Field(gt=0)
    cpus_per_gpu: int = Field(ge=0)
    hf_cache_weights_factor: float = Field(ge=1)
    termination_grace_s: int = Field(gt=0)


class RouterProfile(StrictModel):
    base_image: str = Field(pattern=validate.IMAGE_REF.pattern)
    port: int = Field(ge=1, le=65535)
    metrics_port: int = Field(ge=1, le=65535)
    policy: str = Field(pattern=r"[a-z_]+")
    health_check_interval_s: int = Field(gt=0)
    replicas: int = Field(gt=0)
    cpu_request: str = Field(pattern=r"[0-9]+m?")
    memory_request_bytes: int = Field(gt=0)
    memory_limit_bytes: int = Field(gt=0)
    run_as_user: int = Field(gt=0)

    @property
    def package(self) -> str:
        """The pin, from profiles/vllm.yaml router.package (validated where it is read)."""
        from r4b_deploy.pins import router_pin

        package = router_pin().package
        if not validate.PINNED_REQUIREMENT.fullmatch(package):
            from r4b_deploy.errors import ConfigError

            raise ConfigError(f"profiles/vllm.yaml router.package {package!r} is not a pinned requirement")
        return package

    @property
    def version(self) -> str:
        return self.package.split("==", 1)[1]


class AutoscalingProfile(StrictModel):
    waiting_requests_per_replica: int = Field(gt=0)
    prometheus_url: str = Field(pattern=HTTP_URL.pattern)
    vllm_metric: str = Field(pattern=r"[a-z_:]+")
    adapter_metric: str = Field(pattern=r"[a-z_]+")


class KubernetesProfile(StrictModel):
    """`profiles/kubernetes.yaml` as data."""

    app_name: str = Field(pattern=DNS_LABEL.pattern, max_length=40)  # room for "-router-metrics" suffixes
    namespace: str = Field(pattern=DNS_LABEL.pattern)
    replicas: int = Field(gt=0)
    min_replicas: int = Field(gt=0)
    max_replicas: int = Field(gt=0)
    secret_name: str = Field(pattern=DNS_SUBDOMAIN.pattern)
    vllm: VllmSizing
    router: RouterProfile
    autoscaling: AutoscalingProfile
    gpu_product_label: str
    nvml_vendor_prefix: str


@lru_cache(maxsize=1)
def kubernetes_profile() -> KubernetesProfile:
    from r4b_deploy.datafile import load_data_file

    return load_data_file(KubernetesProfile, profiles_dir() / PROFILE_FILE_NAME, "the Kubernetes profile")


class KubernetesOptions(BaseModel):
    """What the user chose for the cluster; None: the profile's default (or, for the image, the
    content-addressed tag `render` gives the GPU image of the same plan)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str | None = None
    router_image: str | None = None
    replicas: int | None = Field(default=None, ge=1)
    min_replicas: int | None = Field(default=None, ge=1)
    max_replicas: int | None = Field(default=None, ge=1)
    namespace: str | None = None
    prometheus_url: str | None = None
    gpu_products: list[str] = []  # nvidia.com/gpu.product values; [] derives them from the plan's GPUs
    hf_cache_pvc: str | None = None  # a PersistentVolumeClaim for the HF cache; None: an emptyDir

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _usage_error(exc) from None

    @field_validator("image", "router_image")
    @classmethod
    def _check_image(cls, value: str | None) -> str | None:
        return _checked(value, validate.IMAGE_REF, "an image reference such as registry.example.com/r4b:1.0")

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str | None) -> str | None:
        return _checked(value, DNS_LABEL, "a namespace name: lower-case letters, digits and -, at most 63")

    @field_validator("hf_cache_pvc")
    @classmethod
    def _check_claim(cls, value: str | None) -> str | None:
        return _checked(value, DNS_SUBDOMAIN, "a PersistentVolumeClaim name: lower-case letters, digits, - and .")

    @field_validator("prometheus_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _checked(value, HTTP_URL, "a URL such as http://prometheus.monitoring.svc:9090")

    @field_validator("gpu_products")
    @classmethod
    def _check_products(cls, value: list[str]) -> list[str]:
        for product in value:
            _checked(product, LABEL_VALUE, "a label value such as NVIDIA-H100-80GB-HBM3 (letters, digits, - _ .)")
        return value

    @model_validator(mode="after")
    def _check_counts(self) -> KubernetesOptions:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise ValueError(f"--min-replicas {low} is more than --max-replicas {high}")
        if self.replicas is not None and high is not None and self.replicas > high:
            raise ValueError(f"--replicas {self.replicas} is more than --max-replicas {high}")
        if self.replicas is not None and low is not None and self.replicas < low:
            raise ValueError(f"--replicas {self.replicas} is less than --min-replicas {low}")
        return self


class ReplicaCounts(BaseModel):
    """The Deployment's replicas and the autoscalers' bounds, defaults filled in."""

    model_config = ConfigDict(frozen=True)

    replicas: int
    min_replicas: int
    max_replicas: int


def replica_counts(options: KubernetesOptions, profile: KubernetesProfile) -> ReplicaCounts:
    """Given values win; a default never contradicts them (the ceiling is at least --replicas)."""
    replicas = options.replicas or max(profile.replicas, options.min_replicas or 0)
    if options.max_replicas is not None:
        replicas = min(replicas, options.max_replicas) if options.replicas is None else replicas
    low = options.min_replicas or min(profile.min_replicas, replicas)
    high = options.max_replicas or max(profile.max_replicas, replicas)
    return ReplicaCounts(replicas=replicas, min_replicas=low, max_replicas=high)


def quantity_mib(size_bytes: int) -> str:
    """A memory quantity in whole MiB, rounded up (never less than asked)."""
    return f"{math.ceil(size_bytes / MIB)}Mi"


def gpu_products(plan: Plan, profile: KubernetesProfile) -> list[str]:
    """`nvidia.com/gpu.product` values for the plan's GPUs: a measured GPU's own NVML name, a
    catalog GPU's NVML names (each variant: an H100 PCIe and an SXM5 are both an H100-80GB)."""
    from r4b_deploy.hardware.catalog import match_catalog

    used = [g for g in plan.gpus if not plan.gpu_indices or g.index in plan.gpu_indices]
    names: list[str] = []
    for gpu in used:
        if plan.inventory_source != "catalog":
            names.append(gpu.name)
            continue
        entry = match_catalog(gpu.name)
        for pattern in entry.nvml_names if entry else ():
            if "*" not in pattern:
                names.append(pattern)
            elif pattern.startswith("*") and "*" not in pattern[1:]:
                names.append(profile.nvml_vendor_prefix + pattern[1:])  # "*H100 PCIe" -> "NVIDIA H100 PCIe"
    products = list(dict.fromkeys(name.replace(" ", "-") for name in names))  # as GFD's productLabel does
    if not products:
        what = ", ".join(sorted({g.name for g in used})) or "none"
        raise UsageError(
            f"no nvidia.com/gpu.product value is known for the plan's GPU ({what})",
            fix="pass --gpu-product VALUE (kubectl get nodes -L nvidia.com/gpu.product shows yours)",
        )
    for product in products:
        if LABEL_VALUE.fullmatch(product) is None:
            raise UsageError(
                f"the GPU name {product!r} is not a label value", fix="pass --gpu-product VALUE for your nodes"
            )
    return products


def _checked(value: str | None, pattern: re.Pattern[str], expected: str) -> str | None:
    if value is None:
        return None
    reason = validate.problem(value, pattern, expected)
    if reason is not None:
        raise ValueError(reason)
    return value


def _usage_error(exc: ValidationError) -> UsageError:
    problem = validation_problem(exc)
    flag = OPTION_FLAGS.get(problem.top_field)
    if flag is None:  # a check across options: its message names them
        return UsageError(problem.message, fix="make --min-replicas <= --replicas <= --max-replicas")
    return UsageError(f"{flag}: {problem.message}", fix=f"give {flag} a valid value (r4b-deploy render --help)")

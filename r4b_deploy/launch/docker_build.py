"""Building a deployment folder's image: the folder is the build context, the tag is content-addressed
(an existing tag means nothing to build), and a failed step's output comes back in the error."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from r4b_deploy.deployment import DOCKERFILE_NAME
from r4b_deploy.errors import EnvironmentProblem, LaunchError
from r4b_deploy.launch.base import BuildLine, BuildResult
from r4b_deploy.launch.docker_client import NO_ENGINE_FIX, EngineConnection, api_explanation, first_line

if TYPE_CHECKING:
    import docker

    from r4b_deploy.deployment import Deployment

# The build's HTTP read timeout: the longest silent step measured was 80 s (copying a 2.45 GB venv
# between stages); a slow disk or a first `pip install vllm` on a GPU image can be far slower.
BUILD_TIMEOUT_S = 3600
BUILD_ERROR_LINES = 50  # a failed build step's output lines in the error
INSTRUCTION_CHARS = 120  # a failing step's instruction is cut to this in the headline


class StepTracker:
    """Follows a classic build's stream: which step runs, whether it came from the cache, its output."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.steps_total: int | None = None
        self.instruction = ""
        self.step_lines: list[str] = []
        self.cached_steps: set[int] = set()
        self.run_steps: set[int] = set()  # non-FROM steps seen
        self.all_lines: list[str] = []
        self.running_container: str | None = None  # the current RUN step's intermediate container

    def feed(self, text: str) -> list[BuildLine]:
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            stripped = line.strip()
            if stripped.startswith("Step ") and " : " in stripped:
                head, _, instruction = stripped.partition(" : ")
                numbers = head.removeprefix("Step ").split("/")
                with contextlib.suppress(ValueError, IndexError):
                    self.step, self.steps_total = int(numbers[0]), int(numbers[1])
                self.instruction = instruction
                self.step_lines = []
                self.running_container = None
                if self.step is not None and not instruction.upper().startswith("FROM "):
                    self.run_steps.add(self.step)
            elif stripped == "---> Using cache" and self.step is not None:
                self.cached_steps.add(self.step)
            elif stripped.startswith("---> Running in "):
                self.running_container = stripped.removeprefix("---> Running in ").strip()
            self.step_lines.append(line)
            self.all_lines.append(line)
            out.append(BuildLine(step=self.step, steps_total=self.steps_total, text=line))
        return out


def build_failed(tracker: StepTracker, message: str) -> LaunchError:
    """The failing step, its output and the daemon's message, with what to do about it."""
    where = f"step {tracker.step}/{tracker.steps_total}" if tracker.step is not None else "the start"
    instruction = tracker.instruction
    if len(instruction) > INSTRUCTION_CHARS:
        instruction = instruction[: INSTRUCTION_CHARS - 3] + "..."
    output = tracker.step_lines[1:] if tracker.step_lines else []  # the step header is in the message
    details = "\n".join([*output[-BUILD_ERROR_LINES:], message.rstrip()])
    headline = f"the image build failed at {where}: {instruction}" if instruction else "the image build failed"
    fix = (
        "the step's output is above; fix its cause (network, disk, a bad --base-image or --vllm-version) "
        "and rerun: finished steps come from the cache"
    )
    if instruction.upper().startswith("FROM "):
        base = instruction.split()[1]
        fix = f"make the base image available (`docker pull {base}`, or load it), or pass another --base-image"
    return LaunchError(headline, details=details, fix=fix)


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def image_size_bytes(client: docker.DockerClient, tag: str) -> int | None:
    import docker

    try:
        return int(client.images.get(tag).attrs.get("Size") or 0) or None
    except docker.errors.DockerException:
        return None


def _remove_build_container(client: docker.DockerClient, container_id: str | None) -> None:
    import docker

    if container_id is None:
        return
    with contextlib.suppress(docker.errors.DockerException, EnvironmentProblem):
        client.containers.get(container_id).remove(force=True)


def build_image(
    engine: EngineConnection,
    deployment: Deployment,
    on_line: Callable[[BuildLine], None] | None,
    timeout_s: float = BUILD_TIMEOUT_S,
) -> BuildResult:
    """Build the folder's image under its tag; LaunchError with the failing step's output."""
    import docker
    import requests

    tag = deployment.image_tag
    tracker = StepTracker()
    started = time.monotonic()
    try:
        stream = engine.client.api.build(
            path=str(deployment.dir),
            tag=tag,
            decode=True,
            rm=True,
            forcerm=True,  # a failed step's intermediate container is removed too
            pull=False,  # the base image is local or pulled by the FROM step; never re-pulled
            timeout=int(timeout_s),
        )
        for item in stream:
            if "stream" in item:
                for line in tracker.feed(str(item["stream"])):
                    if on_line is not None:
                        on_line(line)
            elif "error" in item or "errorDetail" in item:
                message = str(item.get("error") or (item.get("errorDetail") or {}).get("message", ""))
                raise build_failed(tracker, message)
    except KeyboardInterrupt:
        # Closing the connection cancels the build; the running step's container is removed here
        # too rather than trusting the daemon to notice in time.
        engine.reset()
        _remove_build_container(engine.client, tracker.running_container)
        raise
    except requests.exceptions.ReadTimeout as exc:
        engine.reset()
        raise LaunchError(
            f"the image build printed nothing for {timeout_s:.0f} s (at step "
            f"{tracker.step}/{tracker.steps_total}: {tracker.instruction})",
            fix="check the Docker host's disk and network, then rerun; finished steps come from the cache",
            details="\n".join(tracker.step_lines[-BUILD_ERROR_LINES:]) or None,
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise EnvironmentProblem(
            f"lost the connection to the Docker engine during the build: {first_line(str(exc))}", fix=NO_ENGINE_FIX
        ) from exc
    except docker.errors.APIError as exc:
        raise LaunchError(
            f"the Docker engine refused the build: {first_line(api_explanation(exc))}",
            fix=f"check {deployment.dir / DOCKERFILE_NAME} (re-render with r4b-deploy render --force)",
        ) from exc
    if not image_exists(engine.client, tag):
        raise LaunchError(
            f"the image build ended without producing {tag}",
            details="\n".join(tracker.all_lines[-BUILD_ERROR_LINES:]) or None,
            fix="rerun with --debug; the build output above says where it stopped",
        )
    return BuildResult(
        image_tag=tag,
        built=True,
        steps_total=tracker.steps_total or 0,
        steps_cached=len(tracker.cached_steps),
        steps_rebuilt=len(tracker.run_steps - tracker.cached_steps),
        duration_s=round(time.monotonic() - started, 1),
        image_size_bytes=image_size_bytes(engine.client, tag),
    )

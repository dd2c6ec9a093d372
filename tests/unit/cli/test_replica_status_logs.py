"""`status` and `logs` for a deployment with replicas behind vLLM's router, over a fake runtime:
the members table (80 columns, request counts read from each replica's /metrics, unknown when
unreadable), `--json`, and `logs --replica I` / `--router` with their refusals. The docker
runtime that fills the members for real: tests/integration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from r4b_deploy.cli.main import main
from r4b_deploy.deployment import Deployment, manifest_text
from r4b_deploy.errors import ExitCode, UsageError
from r4b_deploy.launch.base import Endpoint, MemberStatus, Runtime, RuntimeStatus, StopResult
from r4b_deploy.planning.plan import PlanRequest
from r4b_deploy.planning.planner import make_plan
from r4b_deploy.render.deployment import write_deployment
from r4b_deploy.render.options import RenderOptions

TERMINAL_COLUMNS = 80
REPLICA_PORTS = (8001, 8002)
REPLICA_URLS = tuple(f"http://127.0.0.1:{port}" for port in REPLICA_PORTS)


def _with_replicas(deployment: Deployment, count: int) -> Deployment:
    """The rendered one-engine deployment as one with `count` replicas and a router (the manifest
    `render` writes for --replicas N; built here so these tests need only the folder's contract)."""
    engine = deployment.container
    replicas = [
        engine.model_copy(
            update={"service": f"replica-{i}", "replica_index": i, "host_port": REPLICA_PORTS[0] + i, "name": f"r{i}"}
        )
        for i in range(count)
    ]
    router = engine.model_copy(update={"role": "router", "service": "router", "name": "router"})
    return deployment.model_copy(update={"replicas": replicas, "router": router})


@pytest.fixture
def one_engine_folder(tmp_path: Path) -> Path:
    deployment = write_deployment(make_plan(PlanRequest(rehearsal=True)), RenderOptions(), tmp_path / "deploy")
    return deployment.dir


@pytest.fixture
def replicas_folder(one_engine_folder: Path) -> Path:
    from r4b_deploy.deployment import load_deployment

    deployment = _with_replicas(load_deployment(one_engine_folder), len(REPLICA_PORTS))
    deployment.manifest_file.write_text(manifest_text(deployment))
    return one_engine_folder


class FakeRuntime(Runtime):
    """Answers `status` with the members it is given and records what `logs` was asked."""

    name = "docker"

    def __init__(self, members: list[MemberStatus] | None = None) -> None:
        self.members = members or []
        self.logs_asked: list[str | None] = []

    def build(self, deployment: Deployment, *, force: bool = False) -> None:
        return None

    def start(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint:
        raise AssertionError("status and logs start nothing")

    def running_endpoint(self, deployment: Deployment, env: Mapping[str, str]) -> Endpoint | None:
        return None

    def is_alive(self, folder: Path) -> bool:
        return True

    def save_failure_log(self, folder: Path) -> Path | None:
        return None

    def stop(self, folder: Path) -> StopResult:
        return StopResult(runtime="docker", stopped=False)

    def status(self, folder: Path) -> RuntimeStatus:
        state = "running" if all(m.state == "running" for m in self.members) else "unhealthy"
        return RuntimeStatus(runtime="docker", state=state, healthy=state == "running", members=self.members)

    def logs(
        self, folder: Path, tail: int | None = None, follow: bool = False, service: str | None = None
    ) -> Iterator[str]:
        self.logs_asked.append(service)
        yield f"a line of {service or 'every container'}"


def _members() -> list[MemberStatus]:
    return [
        MemberStatus(
            service="replica-0",
            container="r4b-0123abcd-replica-0",
            role="replica",
            state="running",
            healthy=True,
            url=REPLICA_URLS[0],
            gpus=["0", "1"],
            detail="healthy",
        ),
        MemberStatus(
            service="replica-1",
            container="r4b-0123abcd-replica-1",
            role="replica",
            state="running",
            healthy=False,
            url=REPLICA_URLS[1],
            gpus=["2", "3"],
            restarts=2,
            detail="restarted after exit 137",
        ),
        MemberStatus(
            service="router",
            container="r4b-0123abcd-router",
            role="router",
            state="running",
            healthy=True,
            url="http://127.0.0.1:8000",
        ),
    ]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    """The fake as every runtime; replica-0's /metrics says 21 requests, replica-1's cannot be read."""
    runtime = FakeRuntime(_members())
    monkeypatch.setattr("r4b_deploy.launch.base.make_runtime", lambda name, **_: runtime)
    counts = {REPLICA_URLS[0]: 21, REPLICA_URLS[1]: None}
    monkeypatch.setattr("r4b_deploy.client.metrics.requests_served", lambda url, *a, **k: counts[url])
    return runtime


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- status


def test_status_lists_every_replica_and_the_router_in_80_columns(
    capsys: pytest.CaptureFixture[str], fake: FakeRuntime, replicas_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(TERMINAL_COLUMNS))
    code, out, err = _run(capsys, "status", "--dir", str(replicas_folder))
    assert code == ExitCode.OK, err  # a replica down is an answer, not a failure: exit 0 as ever
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["replica-0"][1:] == ["running", "healthy", "0,1", "0", "21"]
    assert rows["replica-1"][1:] == ["running", "not", "healthy", "2,3", "2", "unknown"]
    assert rows["router"][-1] == "-"  # the router serves nothing itself
    assert "replica-1: restarted after exit 137" in out
    assert "replica-0: healthy" not in out  # the table says so already
    assert all(len(line) <= TERMINAL_COLUMNS for line in out.splitlines() if "service" in line or "replica" in line)


def test_status_json_carries_the_members_with_their_counts(
    capsys: pytest.CaptureFixture[str], fake: FakeRuntime, replicas_folder: Path
) -> None:
    import json

    code, out, err = _run(capsys, "status", "--dir", str(replicas_folder), "--json")
    assert code == ExitCode.OK, err
    members = json.loads(out)["members"]
    assert [m["service"] for m in members] == ["replica-0", "replica-1", "router"]
    assert [m["requests_served"] for m in members] == [21, None, None]
    assert members[0]["gpus"] == ["0", "1"] and members[1]["restarts"] == 2


def test_a_count_the_runtime_gave_is_not_read_again(
    capsys: pytest.CaptureFixture[str], fake: FakeRuntime, replicas_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.members = [m.model_copy(update={"requests_served": 5}) for m in fake.members[:1]]

    def never(url: str, *args: object, **kwargs: object) -> int:
        raise AssertionError(f"read {url} again")

    monkeypatch.setattr("r4b_deploy.client.metrics.requests_served", never)
    code, out, err = _run(capsys, "status", "--dir", str(replicas_folder))
    assert code == ExitCode.OK, err
    assert out.splitlines()[-1].split()[-1] == "5"


def test_status_of_one_engine_prints_no_members_table(
    capsys: pytest.CaptureFixture[str], fake: FakeRuntime, one_engine_folder: Path
) -> None:
    fake.members = []
    code, out, err = _run(capsys, "status", "--dir", str(one_engine_folder))
    assert code == ExitCode.OK, err
    assert "restarts" not in out and "replica" not in out


# ---------------------------------------------------------------- logs


@pytest.mark.parametrize(("args", "service"), [([], None), (["--replica", "1"], "replica-1"), (["--router"], "router")])
def test_logs_selects_one_container(
    capsys: pytest.CaptureFixture[str],
    fake: FakeRuntime,
    replicas_folder: Path,
    args: list[str],
    service: str | None,
) -> None:
    code, out, err = _run(capsys, "logs", "--dir", str(replicas_folder), "--tail", "5", *args)
    assert code == ExitCode.OK, err
    assert fake.logs_asked == [service]
    assert out == f"a line of {service or 'every container'}\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--replica", "0", "--router"], "give one of them"),
        (["--replica", "2"], "runs 2 replicas, numbered 0 to 1"),
        (["--replica", "-1"], "-1"),  # click's range check: a usage error too
    ],
)
def test_logs_refuses_what_names_no_container(
    capsys: pytest.CaptureFixture[str], fake: FakeRuntime, replicas_folder: Path, args: list[str], says: str
) -> None:
    code, _out, err = _run(capsys, "logs", "--dir", str(replicas_folder), *args)
    assert code == ExitCode.USAGE
    assert says in err
    assert fake.logs_asked == []


@pytest.mark.parametrize("args", [["--replica", "0"], ["--router"]])
def test_logs_of_one_engine_refuses_replica_and_router(
    capsys: pytest.CaptureFixture[str], fake: FakeRuntime, one_engine_folder: Path, args: list[str]
) -> None:
    code, _out, err = _run(capsys, "logs", "--dir", str(one_engine_folder), *args)
    assert code == ExitCode.USAGE
    assert "runs one vLLM engine" in err and "To fix" in err
    assert fake.logs_asked == []


def test_the_process_runtime_names_no_service(tmp_path: Path) -> None:
    from r4b_deploy.launch.process_runtime import ProcessRuntime

    runtime = ProcessRuntime()
    assert runtime.runs_replicas is False
    assert list(runtime.logs(tmp_path)) == []  # no server.log yet: nothing, and no error
    with pytest.raises(UsageError, match="runs one vLLM server"):
        runtime.logs(tmp_path, service="router")

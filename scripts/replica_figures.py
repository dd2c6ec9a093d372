"""Figures: two replicas behind vLLM's router beside one replica alone, on the CPU rehearsal.

What it measures (a script that prints figures, not a test):

1. Throughput at concurrency 4: the router in front of two replicas against replica-0 alone
   (reached on its own loopback port; replica-1 idles meanwhile). On a 2-core box each replica
   has one core and the router and the load generator share them, so no speed-up is expected:
   the figure is there to say so honestly, not to sell replicas.
2. TTFT at concurrency 1: what the router's hop costs one request, router p50 - direct p50 (ms).
3. How the router spread its requests: each replica's `vllm:request_success_total` delta over
   each router bench (warm-up requests included), and the idle replica's delta over each
   direct bench (expected 0).
4. Time to all healthy, from `up`'s report (report/up.json healthy_after_s), when this script
   started the deployment.

The four benches (a) router c=4, (b) replica-0 c=4, (c) router c=1, (d) replica-0 c=1 alternate
in that order for N rounds, each with the same requests count, max tokens (ignore_eos, so every
request generates exactly that many), seed and warm-up; the tables give the median over rounds
and every round's value.

usage (Docker runtime: point the tools at the engine first, e.g. eval "$(r4b-deploy engine env)"):
  python scripts/replica_figures.py                      # up --rehearsal --replicas 2, figures, down
  python scripts/replica_figures.py --dir DIR            # a running deployment with replicas (left up)
  options: --rounds 3 --requests 24 --max-tokens 64 --seed 0 --port P (router P, replica i P+1+i)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "r4b_deploy"]
HIGH_CONCURRENCY, LOW_CONCURRENCY = 4, 1
REPLICAS = 2
DEFAULT_ROUNDS = 3
DEFAULT_REQUESTS = 24
DEFAULT_MAX_TOKENS = 64
PORT_SEARCH_FROM = 18600  # first router port tried when --port is not given
PORT_SEARCH_STEP = 10
PORT_SEARCH_TRIES = 50


@dataclass(frozen=True)
class Bench:
    """One of the four alternating benches: where it sends requests and at what concurrency."""

    key: str
    label: str
    target: str  # "router" or a replica's service name
    concurrency: int


BENCHES = (
    Bench("a", "router, c=4", "router", HIGH_CONCURRENCY),
    Bench("b", "replica-0 alone, c=4", "replica-0", HIGH_CONCURRENCY),
    Bench("c", "router, c=1", "router", LOW_CONCURRENCY),
    Bench("d", "replica-0 alone, c=1", "replica-0", LOW_CONCURRENCY),
)


@dataclass
class Run:
    """One bench's level figures, and each replica's served-requests delta over it."""

    level: dict
    warmup: int
    served_delta: dict[str, int | None] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ports_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_port() -> int:
    """A router port P with P..P+REPLICAS free too (replica i publishes P+1+i)."""
    for i in range(PORT_SEARCH_TRIES):
        port = PORT_SEARCH_FROM + i * PORT_SEARCH_STEP
        if ports_free(port, REPLICAS + 1):
            return port
    raise SystemExit(f"no free run of {REPLICAS + 1} ports from {PORT_SEARCH_FROM}: pass --port")


def cli(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], capture_output=capture, text=True, check=False, cwd=REPO)
    if check and proc.returncode != 0:
        if capture:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"r4b-deploy {args[0]} failed ({proc.returncode})")
    return proc


def start(out_dir: Path, port: int) -> float:
    """`up --rehearsal --replicas 2 --bench none`, its progress on stderr; the wall seconds it took."""
    log(f"up --rehearsal --replicas {REPLICAS} --out {out_dir} --port {port} --bench none ...")
    t0 = time.monotonic()
    up = ["up", "--rehearsal", "--replicas", str(REPLICAS), "--out", str(out_dir), "--port", str(port)]
    proc = subprocess.run(
        [*CLI, *up, "--bench", "none"],
        stdout=sys.stderr,
        stderr=subprocess.STDOUT,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"r4b-deploy up failed ({proc.returncode}); see its output above")
    return time.monotonic() - t0


def members(out_dir: Path) -> tuple[dict, dict[str, dict]]:
    status = json.loads(cli("status", "--dir", str(out_dir), "--json").stdout)
    return status, {m["service"]: m for m in status.get("members") or []}


def served(urls: dict[str, str]) -> dict[str, int | None]:
    sys.path.insert(0, str(REPO))
    from r4b_deploy.client.metrics import requests_served

    return {service: requests_served(url) for service, url in urls.items()}


def delta(before: dict[str, int | None], after: dict[str, int | None]) -> dict[str, int | None]:
    return {
        s: (after[s] - before[s]) if after.get(s) is not None and before.get(s) is not None else None for s in before
    }


def bench(args, out_dir: Path, url: str, concurrency: int, replica_urls: dict[str, str]) -> Run:
    with tempfile.TemporaryDirectory(prefix="replica-figures-") as tmp:
        result = Path(tmp) / "bench.json"
        before = served(replica_urls)
        cli(
            "bench",
            "--url",
            url,
            "--deployment",
            str(out_dir),
            "--concurrency",
            str(concurrency),
            "--requests",
            str(args.requests),
            "--max-tokens",
            str(args.max_tokens),
            "--ignore-eos",
            "--seed",
            str(args.seed),
            "--json",
            str(result),
            "--no-progress",
            "--max-error-rate",
            "1",  # a failing request is a figure to show, not a reason to stop
        )
        after = served(replica_urls)
        data = json.loads(result.read_text())
    return Run(level=data["levels"][0], warmup=int(data.get("warmup_requests") or 0), served_delta=delta(before, after))


def med(runs: list[Run], key: str) -> float:
    values = [r.level.get(key) for r in runs]
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else float("nan")


def every(runs: list[Run], key: str, fmt: str) -> str:
    return ", ".join(format(r.level.get(key, float("nan")), fmt) for r in runs)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def figure(title: str, router: list[Run], direct: list[Run]) -> None:
    print(f"\n## {title}\n")
    print("| target | req/s | out tok/s | TTFT p50 ms | TTFT mean ms | ok / failed | req/s, every round |")
    print("|---|---|---|---|---|---|---|")
    for label, runs in (("router (2 replicas)", router), ("replica-0 alone", direct)):
        ok = sum(r.level.get("completed", 0) for r in runs)
        failed = sum(r.level.get("failed", 0) for r in runs)
        print(
            f"| {label} | {med(runs, 'request_throughput'):.2f} | {med(runs, 'output_throughput'):.0f} | "
            f"{med(runs, 'median_ttft_ms'):.1f} | {med(runs, 'mean_ttft_ms'):.1f} | {ok} / {failed} | "
            f"{every(runs, 'request_throughput', '.2f')} |"
        )
    print(
        f"| router / direct | {ratio(med(router, 'request_throughput'), med(direct, 'request_throughput'))} | "
        f"{ratio(med(router, 'output_throughput'), med(direct, 'output_throughput'))} | "
        f"{ratio(med(router, 'median_ttft_ms'), med(direct, 'median_ttft_ms'))} | "
        f"{ratio(med(router, 'mean_ttft_ms'), med(direct, 'mean_ttft_ms'))} | | |"
    )
    overhead = med(router, "median_ttft_ms") - med(direct, "median_ttft_ms")
    print(
        f"\nrouter - direct, TTFT p50: {overhead:+.1f} ms (TTFT p50 every round: router "
        f"{every(router, 'median_ttft_ms', '.1f')}; direct {every(direct, 'median_ttft_ms', '.1f')})"
    )


def split(runs: dict[str, list[Run]], services: list[str]) -> None:
    print("\n## How the requests spread (each replica's vllm:request_success_total delta, warm-up included)\n")
    print("| bench | round | " + " | ".join(services) + " | sent (requests + warm-up) |")
    print("|---|---|" + "---|" * len(services) + "---|")
    for b in BENCHES:
        for i, run in enumerate(runs[b.key], 1):
            cells = " | ".join("?" if run.served_delta.get(s) is None else str(run.served_delta[s]) for s in services)
            print(
                f"| {b.label} | {i} | {cells} | {run.level.get('completed', 0) + run.level.get('failed', 0)}"
                f" + {run.warmup} |"
            )


def stop_on_term() -> None:
    """SIGTERM ends the script as Ctrl-C does, through the finally that downs the deployment."""

    def handler(signum: int, _frame) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, help="a running deployment with replicas (else this script starts one)")
    p.add_argument("--out", type=Path, help="folder for the deployment it starts (default: a temporary one)")
    p.add_argument("--port", type=int, help="router port of the deployment it starts (replica i: port+1+i)")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    p.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    stop_on_term()
    started = args.dir is None
    out_dir = args.dir or args.out or Path(tempfile.mkdtemp(prefix="replica-figures-deploy-")) / "deploy"
    up_wall_s, healthy_after_s = None, None
    try:
        if started:
            up_wall_s = start(out_dir, args.port or pick_port())
            healthy_after_s = json.loads((out_dir / "report" / "up.json").read_text()).get("healthy_after_s")
        status, by_service = members(out_dir)
        replica_urls = {s: m["url"] for s, m in sorted(by_service.items()) if m.get("role") == "replica"}
        if "router" not in by_service or "replica-0" not in replica_urls:
            raise SystemExit(f"status lists no router or no replica-0: members {sorted(by_service)}")
        log(f"members: {json.dumps({s: m.get('url') for s, m in by_service.items()})}")
        urls = {"router": by_service["router"]["url"], **replica_urls}
        runs: dict[str, list[Run]] = {b.key: [] for b in BENCHES}
        for round_ in range(args.rounds):
            for b in BENCHES:
                log(f"round {round_ + 1}/{args.rounds}: ({b.key}) {b.label} ...")
                runs[b.key].append(bench(args, out_dir, urls[b.target], b.concurrency, replica_urls))
    finally:
        if started:
            log(f"down --dir {out_dir} ...")
            cli("down", "--dir", str(out_dir), check=False)

    print(
        f"# Replicas behind vLLM's router: {len(replica_urls)} replicas, CPU rehearsal, {os.cpu_count()} cores; "
        f"{args.requests} requests per bench, {args.max_tokens} tokens each (ignore_eos), seed {args.seed}, "
        f"median of {args.rounds} rounds"
    )
    print("\nmembers (from `status --json`):")
    for service, m in by_service.items():
        print(f"  {service}: {m.get('role')} {m.get('url')} cpus={m.get('cpus')} healthy={m.get('healthy')}")
    print(f"  status detail: {status.get('detail')}")
    figure(f"Throughput at concurrency {HIGH_CONCURRENCY}", runs["a"], runs["b"])
    figure(f"TTFT at concurrency {LOW_CONCURRENCY} (the router's hop)", runs["c"], runs["d"])
    split(runs, list(replica_urls))
    if started:
        print(
            f"\ntime to all healthy (report/up.json healthy_after_s): {healthy_after_s} s; "
            f"`up` in all (wall, incl. smoke): {up_wall_s:.1f} s"
        )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted (any deployment this script started has been taken down)") from None

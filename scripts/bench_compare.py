"""Figures: `r4b-deploy bench` beside `vllm bench serve`, on the same server and workload.

Two comparisons, printed as tables (a script that prints figures, not a test):

1. Against the tiny vLLM (CPU build): the same closed-loop workload (default 32 requests,
   concurrency 4, 64 output tokens with ignore_eos) through both tools, alternating, N rounds:
   output throughput and TTFT side by side, and their ratios. On a small box the client's CPU
   is taken from the server, so a heavier client shows up as a slower server.
2. Against scripts/zero_work_server.py (no inference): the request rate each client sustains
   at high concurrency, server pinned to one core and client to the other: the load
   generator's own ceiling.

Client CPU is measured from outside with /usr/bin/time (user + sys, start-up included).

usage:
  python scripts/bench_compare.py --start-server            # start the tiny vLLM, compare, stop
  python scripts/bench_compare.py --url http://127.0.0.1:8011 --api-key KEY
  python scripts/bench_compare.py --ceiling-only
  options: --vllm-bin PATH (default: the rehearsal venv's), --tokenizer DIR (default: the tiny model)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIME_BIN = "/usr/bin/time"
TIME_FORMAT = "R4BTIME %U %S %e"
HEALTH_TIMEOUT_S = 600.0
SERVER_CORE, CLIENT_CORE = "0", "1"
DEFAULT_CEILING_PROMPT_WORDS = 48  # the zero-work server ignores the prompt


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} not healthy after {timeout_s:.0f} s")


def pinned(cmd: list[str], core: str | None) -> list[str]:
    if core is not None and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", core, *cmd]
    return cmd


def timed(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run under /usr/bin/time; return the process, CPU seconds (user + sys) and wall seconds."""
    full = [TIME_BIN, "-f", TIME_FORMAT, *cmd] if os.path.exists(TIME_BIN) else cmd
    t0 = time.monotonic()
    proc = subprocess.run(full, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    cpu = float("nan")
    for line in proc.stderr.splitlines():
        if line.startswith("R4BTIME "):
            user, sys_s, wall_s = (float(x) for x in line.split()[1:4])
            cpu, wall = user + sys_s, wall_s
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd[:6])} ...")
    return proc, cpu, wall


def run_vllm_bench(args, url: str, api_key: str | None, concurrency: int, prompts: int, out_len: int, core) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            args.vllm_bin,
            "bench",
            "serve",
            "--backend",
            "openai-chat",
            "--base-url",
            url,
            "--endpoint",
            "/v1/chat/completions",
            "--model",
            args.model,
            "--tokenizer",
            str(args.tokenizer),
            "--dataset-name",
            "random",
            "--random-input-len",
            str(args.input_len),
            "--random-output-len",
            str(out_len),
            "--num-prompts",
            str(prompts),
            "--request-rate",
            "inf",
            "--max-concurrency",
            str(concurrency),
            "--ignore-eos",
            "--percentile-metrics",
            "ttft,tpot,itl,e2el",
            "--metric-percentiles",
            "50,90,95,99",
            "--disable-tqdm",
            "--save-result",
            "--result-dir",
            tmp,
            "--result-filename",
            "vllm.json",
        ]
        env = {**os.environ, **vllm_env()}
        if api_key:
            env["OPENAI_API_KEY"] = api_key  # how vllm bench serve sends a bearer token
        _, cpu, wall = timed(pinned(cmd, core), env)
        result = json.loads((Path(tmp) / "vllm.json").read_text())
    return {"result": result, "cpu_s": cpu, "wall_s": wall}


def run_ours(args, url: str, api_key: str | None, concurrency: int, prompts: int, out_len: int, core) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "r4b_deploy",
        "bench",
        "--url",
        url,
        "--model",
        args.model,
        "--concurrency",
        str(concurrency),
        "--requests",
        str(prompts),
        "--max-tokens",
        str(out_len),
        "--ignore-eos",
        "--prompt-words",
        str(args.prompt_words or DEFAULT_CEILING_PROMPT_WORDS),
        "--warmup",
        "1",
        "--no-progress",
        "--json",
        "-",
        "--max-error-rate",
        "1",
    ]
    env = dict(os.environ)
    env.pop("VLLM_API_KEY", None)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    proc, cpu, wall = timed(pinned(cmd, core), env)
    level = json.loads(proc.stdout)["levels"][0]
    return {"result": level, "cpu_s": cpu, "wall_s": wall}


def vllm_env() -> dict[str, str]:
    sys.path.insert(0, str(REPO))
    from r4b_deploy.rehearsal.vllm_cpu import runtime_env

    return runtime_env()


def start_vllm(args) -> tuple[subprocess.Popen, str, str, Path]:
    """The tiny model served with the rehearsal plan's own flags, on a loopback port."""
    sys.path.insert(0, str(REPO))
    from r4b_deploy.launch.args import vllm_serve_args
    from r4b_deploy.launch.ports import free_port
    from r4b_deploy.planning.plan import PlanRequest
    from r4b_deploy.planning.planner import make_plan

    settings = make_plan(PlanRequest(rehearsal=True)).vllm
    port = free_port()
    served = vllm_serve_args(
        settings,
        model=str(args.tokenizer),
        served_model_name=settings.served_model_name,
        host="127.0.0.1",
        port=port,
    )
    key = secrets.token_urlsafe(24)
    log = Path(tempfile.mkstemp(prefix="bench-compare-vllm-", suffix=".log")[1])
    env = {**os.environ, **vllm_env(), "VLLM_API_KEY": key}
    proc = subprocess.Popen(
        [args.vllm_bin, "serve", *served],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    print(f"starting vLLM: {args.vllm_bin} serve {' '.join(served)}  (log {log})", flush=True)
    wait_http(url + "/health", HEALTH_TIMEOUT_S, proc)
    return proc, url, key, log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def prompt_tokens(url: str, api_key: str | None, model: str, words: int) -> int:
    """The server's prompt-token count of r4b-deploy's text prompt of `words` words (chat template included)."""
    sys.path.insert(0, str(REPO))
    from r4b_deploy.bench.workload import WorkloadSpec, prepare_requests

    body = json.loads(prepare_requests(WorkloadSpec(model=model, prompt_words=words), pool_size=1)[0].body)
    payload = {k: body[k] for k in ("model", "messages", "chat_template_kwargs") if k in body}
    req = urllib.request.Request(url + "/tokenize", data=json.dumps(payload).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(json.loads(resp.read())["count"])


def calibrate_prompt_words(url: str, api_key: str | None, model: str, target_tokens: float) -> int:
    """The prompt size whose token count is closest to `target_tokens` (a tokenizer-specific ratio)."""
    low, high = 1, 1024
    while low < high:  # the smallest word count reaching the target
        mid = (low + high) // 2
        if prompt_tokens(url, api_key, model, mid) < target_tokens:
            low = mid + 1
        else:
            high = mid
    candidates = [w for w in (low - 1, low) if w >= 1]
    return min(candidates, key=lambda w: abs(prompt_tokens(url, api_key, model, w) - target_tokens))


SERVER_SERIES = {"e2el": "vllm:e2e_request_latency_seconds", "ttft": "vllm:time_to_first_token_seconds"}


def server_sums(url: str, api_key: str | None) -> dict[str, tuple[float, float]]:
    """vLLM's own histograms (sum, count) from /metrics: the server's view of each run."""
    req = urllib.request.Request(url + "/metrics")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode()
    out: dict[str, tuple[float, float]] = {}
    for name, series in SERVER_SERIES.items():
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith(series + "_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith(series + "_count"):
                count += float(line.rsplit(" ", 1)[1])
        out[name] = (total, count)
    return out


def server_means_ms(before: dict, after: dict) -> dict[str, float]:
    means = {}
    for name in SERVER_SERIES:
        d_sum = after[name][0] - before[name][0]
        d_count = after[name][1] - before[name][1]
        means[name] = 1000.0 * d_sum / d_count if d_count else float("nan")
    return means


def compare_on_vllm(args, url: str, api_key: str | None) -> None:
    runs: dict[str, list[dict]] = {"vllm bench serve": [], "r4b-deploy bench": []}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds} ...", flush=True)
        conc, n, out = args.concurrency, args.num_prompts, args.output_len
        before = server_sums(url, api_key)
        runs["vllm bench serve"].append(run_vllm_bench(args, url, api_key, conc, n, out, None))
        runs["vllm bench serve"][-1]["server"] = server_means_ms(before, server_sums(url, api_key))
        if round_ == 0 and args.prompt_words is None:
            # Match vLLM's prompt size as the server counts it (its random dataset + the chat template).
            first = runs["vllm bench serve"][0]["result"]
            target = first["total_input_tokens"] / max(1, first["completed"])
            args.prompt_words = calibrate_prompt_words(url, api_key, args.model, target)
            print(f"  r4b-deploy prompts: {args.prompt_words} words ~ {target:.0f} prompt tokens", flush=True)
        before = server_sums(url, api_key)
        runs["r4b-deploy bench"].append(run_ours(args, url, api_key, conc, n, out, None))
        runs["r4b-deploy bench"][-1]["server"] = server_means_ms(before, server_sums(url, api_key))
    print(
        f"\n## Same server, same workload: {args.num_prompts} requests, concurrency {args.concurrency}, "
        f"~{args.input_len} in / {args.output_len} out (ignore_eos), median of {args.rounds} rounds\n"
    )
    print(
        "| tool | out tok/s | TTFT mean ms | TPOT mean ms | E2EL mean ms | server's E2EL / TTFT mean ms "
        "| input tok/req | client CPU s (wall s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    med: dict[str, dict[str, float]] = {}
    for tool, rs in runs.items():
        keys = ("output_throughput", "mean_ttft_ms", "mean_tpot_ms", "mean_e2el_ms")
        m = {k: statistics.median(r["result"][k] for r in rs) for k in keys}
        m["in"] = statistics.median(r["result"]["total_input_tokens"] / max(1, r["result"]["completed"]) for r in rs)
        m["cpu"] = statistics.median(r["cpu_s"] for r in rs)
        m["wall"] = statistics.median(r["wall_s"] for r in rs)
        m["s_e2el"] = statistics.median(r["server"]["e2el"] for r in rs)
        m["s_ttft"] = statistics.median(r["server"]["ttft"] for r in rs)
        med[tool] = m
        print(
            f"| {tool} | {m['output_throughput']:.0f} | {m['mean_ttft_ms']:.1f} | {m['mean_tpot_ms']:.2f} | "
            f"{m['mean_e2el_ms']:.0f} | {m['s_e2el']:.0f} / {m['s_ttft']:.1f} | {m['in']:.0f} | "
            f"{m['cpu']:.1f} ({m['wall']:.1f}) |"
        )
    print("(server's figures: vLLM's own /metrics histograms over each run, warm-up requests included)")
    ours, theirs = med["r4b-deploy bench"], med["vllm bench serve"]
    parts = [
        f"{label} {ratio(ours[key], theirs[key])}"
        for label, key in (
            ("output throughput", "output_throughput"),
            ("TTFT", "mean_ttft_ms"),
            ("TPOT", "mean_tpot_ms"),
        )
    ]
    print("\nratios r4b-deploy / vllm: " + ", ".join(parts))


def compare_ceiling(args) -> None:
    from r4b_deploy.launch.ports import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_cmd = pinned(
        [sys.executable, str(REPO / "scripts" / "zero_work_server.py"), "--port", str(port)], SERVER_CORE
    )
    server = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(url + "/health", 30, server)
        rows = []
        for round_ in range(args.rounds):
            print(f"ceiling round {round_ + 1}/{args.rounds} ...", flush=True)
            n, conc, out = args.ceiling_requests, args.ceiling_concurrency, args.ceiling_output_len
            rows.append(("vllm bench serve", run_vllm_bench(args, url, None, conc, n, out, CLIENT_CORE)))
            rows.append(("r4b-deploy bench", run_ours(args, url, None, conc, n, out, CLIENT_CORE)))
    finally:
        stop(server)
    print(
        f"\n## Load generator ceiling: zero-work server (core {SERVER_CORE}), client on core {CLIENT_CORE}, "
        f"{args.ceiling_requests} requests, concurrency {args.ceiling_concurrency}, "
        f"{args.ceiling_output_len} chunks each\n"
    )
    print("| tool | req/s (median) | req/s (all rounds) | SSE chunks/s | client CPU s (wall s) |")
    print("|---|---|---|---|---|")
    for tool in ("vllm bench serve", "r4b-deploy bench"):
        rs = [r for t, r in rows if t == tool]
        rates = [r["result"]["request_throughput"] for r in rs]
        med = statistics.median(rates)
        chunks = med * (args.ceiling_output_len + 2)  # tokens + the role chunk + the finish chunk
        cpu, wall = statistics.median(r["cpu_s"] for r in rs), statistics.median(r["wall_s"] for r in rs)
        every = ", ".join(f"{x:.0f}" for x in rates)
        print(f"| {tool} | {med:.0f} | {every} | {chunks:.0f} | {cpu:.1f} ({wall:.1f}) |")


def main() -> None:
    sys.path.insert(0, str(REPO))
    from r4b_deploy.rehearsal.vllm_cpu import tiny_model_dir, venv_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running vLLM server (else --start-server)")
    p.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"))
    p.add_argument("--start-server", action="store_true", help="serve the tiny model for the comparison, then stop")
    p.add_argument("--vllm-bin", default=str(venv_dir() / "bin" / "vllm"))
    p.add_argument("--tokenizer", type=Path, default=tiny_model_dir(), help="for vllm bench serve's random dataset")
    p.add_argument("--model", default="r4b")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument(
        "--prompt-words", type=int, help="r4b-deploy's prompt size (default: matched to vLLM's by /tokenize)"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ceiling-requests", type=int, default=4000)
    p.add_argument("--ceiling-concurrency", type=int, default=64)
    p.add_argument("--ceiling-output-len", type=int, default=16)
    p.add_argument("--skip-ceiling", action="store_true")
    p.add_argument("--ceiling-only", action="store_true")
    args = p.parse_args()
    if not Path(args.vllm_bin).exists():
        raise SystemExit(f"no vllm at {args.vllm_bin}: build the rehearsal venv or pass --vllm-bin")
    if not args.ceiling_only:
        proc, log = None, None
        url, key = args.url, args.api_key
        if not url:
            if not args.start_server:
                raise SystemExit("pass --url (and --api-key) of a running server, or --start-server")
            proc, url, key, log = start_vllm(args)
        try:
            compare_on_vllm(args, url, key)
        finally:
            if proc is not None:
                stop(proc)
        if log is not None:
            log.unlink(missing_ok=True)  # kept only when the comparison failed
    if not args.skip_ceiling:
        compare_ceiling(args)


if __name__ == "__main__":
    main()

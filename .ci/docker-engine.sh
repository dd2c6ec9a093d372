#!/usr/bin/env bash
# A real Docker engine for CI on a Debian bookworm machine (root, no GPU, no container registry).
#
#   bash .ci/docker-engine.sh install             # apt: docker.io (dockerd 20.10), docker-compose v1, debootstrap, iptables
#   bash .ci/docker-engine.sh start               # start our own dockerd (idempotent), wait for its API
#   bash .ci/docker-engine.sh base-image          # make the base image locally, only if it is missing
#   eval "$(bash .ci/docker-engine.sh env)"       # export DOCKER_HOST for the docker CLI, docker-py, compose
#   bash .ci/docker-engine.sh status              # is our engine up; which images it holds
#   bash .ci/docker-engine.sh prune               # bound the cache: old rehearsal images, test images, dangling layers
#   bash .ci/docker-engine.sh stop                # remove containers, stop dockerd, undo its network changes
#   Subcommands chain: `bash .ci/docker-engine.sh install start base-image`.
#
# Where things live (override with the variables):
#   R4B_DOCKER_SOCK  socket            /run/r4b-ci/docker.sock   -> DOCKER_HOST=unix:///run/r4b-ci/docker.sock
#   R4B_DOCKER_RUN   exec-root, pidfile /run/r4b-ci
#   R4B_DOCKER_DIR   data-root + log   $R4B_CACHE_DIR/docker-engine, else /var/cache/r4b-deploy-ci/docker
# The data-root is persistent on purpose: the base image (≈ 50 s to make) and the build cache of
# the rehearsal image (≈ 3.5 min cold) survive between CI runs on the same machine. `stop` keeps
# it; `PURGE=1 ... stop` deletes it.
#
# Nothing can be pulled here, so `base-image` makes the production base image name
# (profiles/vllm.yaml gpu.base_image) resolve to a local Debian bookworm minbase with python3,
# curl and the host's CA bundle: the toolkit's real `FROM` line then builds without a registry.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
RUN_DIR=${R4B_DOCKER_RUN:-/run/r4b-ci}
SOCK=${R4B_DOCKER_SOCK:-$RUN_DIR/docker.sock}
if [ -n "${R4B_DOCKER_DIR:-}" ]; then DATA_DIR=$R4B_DOCKER_DIR
elif [ -n "${R4B_CACHE_DIR:-}" ]; then DATA_DIR=$R4B_CACHE_DIR/docker-engine
else DATA_DIR=/var/cache/r4b-deploy-ci/docker; fi
PIDFILE=$RUN_DIR/dockerd.pid      # written by dockerd itself
BGPID=$RUN_DIR/dockerd.started    # the pid we launched: `stop` only ever kills this one
LOG=$DATA_DIR/dockerd.log
LOCK=$RUN_DIR/lock
# Used when the default start fails (no overlayfs in a nested container, no iptables):
FALLBACK_FLAGS=${R4B_DOCKERD_FALLBACK_FLAGS:---storage-driver=vfs --iptables=false --ip-masq=false}
# A local name for the bootstrapped Debian, which the production base name is then tagged as.
LOCAL_BASE=r4b-ci/debian-py:bookworm
API_WAIT_S=60

export DOCKER_HOST=unix://$SOCK
# Prefer the CLI that comes with docker.io: it matches the engine's API version.
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker

log() { printf '[docker-engine %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

base_image_name() {
  # One source of truth: the base image the renderer writes into the Dockerfile.
  awk '/^gpu:/{g=1; next} /^[^ #]/{g=0} g && /base_image:/{gsub(/"/, "", $2); print $2; exit}' \
    "$REPO/profiles/vllm.yaml"
}

api_up() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

do_install() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v docker-compose >/dev/null || need+=(docker-compose)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v iptables >/dev/null || need+=(iptables)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  if [ ${#need[@]} -eq 0 ]; then log "install: docker.io, docker-compose, debootstrap, iptables, gcc present"; return 0; fi
  local t0=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  log "install: ${need[*]} in $((SECONDS - t0)) s"
}

wait_api() {
  local pid=$1 i
  for i in $(seq 1 $((API_WAIT_S * 4))); do
    api_up && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}

launch_dockerd() {
  mkdir -p "$DATA_DIR/data" "$RUN_DIR/exec"
  # setsid: the engine outlives the shell that started it (CI steps, test sessions).
  setsid dockerd \
    --data-root "$DATA_DIR/data" \
    --exec-root "$RUN_DIR/exec" \
    --pidfile "$PIDFILE" \
    -H "unix://$SOCK" \
    "$@" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$BGPID"
}

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  log "dockerd ($pid) ignored SIGTERM for 30 s; sending SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
}

do_start() {
  mkdir -p "$RUN_DIR" "$DATA_DIR"
  if api_up; then log "start: dockerd already answering at $DOCKER_HOST"; return 0; fi
  [ -S "$SOCK" ] && rm -f "$SOCK"   # a stale socket from a crashed engine
  local t0=$SECONDS pid
  launch_dockerd
  pid=$(cat "$BGPID")
  if ! wait_api "$pid"; then
    log "start: default dockerd did not come up; its last lines:"
    tail -n 5 "$LOG" >&2 || true
    stop_pid "$pid"
    log "start: retrying with $FALLBACK_FLAGS"
    # shellcheck disable=SC2086
    launch_dockerd $FALLBACK_FLAGS
    pid=$(cat "$BGPID")
    wait_api "$pid" || { tail -n 20 "$LOG" >&2; die "dockerd did not come up (log: $LOG)"; }
  fi
  log "start: dockerd $("$DOCKER" version --format '{{.Server.Version}}') up in $((SECONDS - t0)) s," \
      "storage $("$DOCKER" info --format '{{.Driver}}'), data-root $DATA_DIR/data, DOCKER_HOST=$DOCKER_HOST"
}

# The Debian mirror this machine's apt already uses, so nothing else is contacted.
debian_mirror() {
  local m=""
  [ -f /etc/apt/sources.list.d/debian.sources ] &&
    m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  [ -z "$m" ] && [ -f /etc/apt/sources.list ] &&
    m=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  echo "${m:-http://deb.debian.org/debian}"
}

do_base_image() {
  api_up || die "base-image: no engine at $DOCKER_HOST (run: $0 start)"
  local base t0=$SECONDS rootfs
  base=$(base_image_name)
  [ -n "$base" ] || die "base-image: no gpu.base_image in $REPO/profiles/vllm.yaml"
  if "$DOCKER" image inspect "$base" >/dev/null 2>&1; then log "base-image: $base present"; return 0; fi
  if ! "$DOCKER" image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/r4b-rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$rootfs'" EXIT
    log "base-image: debootstrap bookworm minbase + python3, curl, ca-certificates (≈ 50 s)"
    debootstrap --variant=minbase --include=python3,curl,ca-certificates \
      bookworm "$rootfs" "$(debian_mirror)" >"$DATA_DIR/debootstrap.log" 2>&1 ||
      { tail -n 20 "$DATA_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $DATA_DIR/debootstrap.log)"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # HTTPS from RUN steps must trust what the host trusts (a TLS-inspecting egress proxy's CA).
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    tar -C "$rootfs" -c . | "$DOCKER" import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
  fi
  "$DOCKER" tag "$LOCAL_BASE" "$base"
  log "base-image: $base -> $LOCAL_BASE in $((SECONDS - t0)) s"
}

do_env() {
  echo "export DOCKER_HOST=$DOCKER_HOST"
}

do_status() {
  if api_up; then
    log "status: dockerd $("$DOCKER" version --format '{{.Server.Version}}') at $DOCKER_HOST, data-root $("$DOCKER" info --format "{{.DockerRootDir}}")"
    "$DOCKER" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' >&2
  else
    log "status: no engine at $DOCKER_HOST"; return 1
  fi
}

do_prune() {
  # Each change to the rendered Dockerfile leaves an image (≈ 2.7 GB) and its build stage (≈ 4.7 GB,
  # an untagged image whose layers are the pip step's cache). Keep the newest R4B_KEEP_IMAGES
  # rehearsal images; drop test images; drop untagged images only once older than R4B_PRUNE_AGE,
  # so the current image's build stage (its cache) survives.
  api_up || { log "prune: no engine at $DOCKER_HOST"; return 0; }
  local keep=${R4B_KEEP_IMAGES:-2} age=${R4B_PRUNE_AGE:-168h}
  "$DOCKER" images --filter 'reference=r4b-test/*' --format '{{.Repository}}:{{.Tag}}' |
    xargs -r "$DOCKER" rmi -f >/dev/null 2>&1 || true
  "$DOCKER" images --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' r4b-deploy/r4b | sort -r |
    tail -n +"$((keep + 1))" | cut -f2 | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
  "$DOCKER" image prune -f --filter "until=$age" >/dev/null
  log "prune: kept the newest $keep r4b-deploy/r4b image(s); $("$DOCKER" system df --format '{{.Type}} {{.Size}}' | tr '\n' ' ')"
}

undo_network() {
  # dockerd leaves its bridge, iptables chains and ip_forward=1 behind.
  ip link del docker0 2>/dev/null || true
  command -v iptables >/dev/null || return 0
  local r
  for r in "-j DOCKER-USER" "-j DOCKER-ISOLATION-STAGE-1" \
           "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" "-o docker0 -j DOCKER" \
           "-i docker0 ! -o docker0 -j ACCEPT" "-i docker0 -o docker0 -j ACCEPT"; do
    # shellcheck disable=SC2086
    iptables -D FORWARD $r 2>/dev/null || true
  done
  for c in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER; do
    iptables -F "$c" 2>/dev/null || true; iptables -X "$c" 2>/dev/null || true
  done
  iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null || true
  iptables -t nat -D OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null || true
  iptables -t nat -D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE 2>/dev/null || true
  iptables -t nat -F DOCKER 2>/dev/null || true; iptables -t nat -X DOCKER 2>/dev/null || true
  echo 0 >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
}

do_stop() {
  local pid=""
  [ -f "$BGPID" ] && pid=$(cat "$BGPID")
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    log "stop: no engine started by this script is running"
    rm -f "$BGPID"
  else
    # Containers and leftover build containers go; images and build cache stay (that is the cache).
    "$DOCKER" ps -aq | xargs -r "$DOCKER" rm -f >/dev/null 2>&1 || true
    stop_pid "$pid"
    rm -f "$BGPID" "$SOCK"
    log "stop: dockerd ($pid) stopped; data-root kept at $DATA_DIR/data"
    undo_network
  fi
  if [ "${PURGE:-0}" = 1 ]; then
    mount | awk -v p="$DATA_DIR/data" 'index($3, p) == 1 {print $3}' | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$DATA_DIR/data"
    log "stop: purged $DATA_DIR/data"
  fi
}

run_locked() {
  # Two CI steps or test sessions starting the engine at once must not start two dockerds.
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK"
  flock 9
  "$@"
  flock -u 9
}

[ $# -gt 0 ] || set -- install start base-image
for cmd in "$@"; do
  case "$cmd" in
    install) do_install ;;
    start) run_locked do_start ;;
    base-image) run_locked do_base_image ;;
    env) do_env ;;
    status) do_status ;;
    prune) run_locked do_prune ;;
    stop) run_locked do_stop ;;
    *) echo "usage: $0 {install|start|base-image|env|status|prune|stop}..." >&2; exit 2 ;;
  esac
done

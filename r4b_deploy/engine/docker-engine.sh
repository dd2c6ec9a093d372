#!/usr/bin/env bash
# A Docker engine of its own for a Debian/Ubuntu machine that has none (root, no GPU needed, no
# container registry needed): CI runs it, and so can a user, as `r4b-deploy engine ...` after
# `pip install` (this file ships inside the package: r4b_deploy/engine/docker-engine.sh).
#
#   r4b-deploy engine install        # apt: docker.io (dockerd 20.10), docker-compose v1, debootstrap,
#                                    # iptables, gcc; compose v2 (Debian's static binary) as a CLI plugin
#   r4b-deploy engine start          # start our own dockerd (idempotent), wait for its API
#   r4b-deploy engine base-image     # make the base image locally, only if it is missing (and the
#                                    # tests' python3+curl image r4b-ci/debian-py:bookworm)
#   eval "$(r4b-deploy engine env)"  # export DOCKER_HOST for the docker CLI, docker-py, compose
#   r4b-deploy engine status         # is our engine up; which images it holds
#   r4b-deploy engine prune          # bound the cache: old rehearsal images, test images, dangling layers
#   r4b-deploy engine stop           # remove containers, stop dockerd, undo its network changes
#   (or `bash r4b_deploy/engine/docker-engine.sh ...` from a checkout; subcommands chain:
#   `... install start base-image`).
#
# Where things live (override with the variables):
#   R4B_DOCKER_SOCK  socket            /run/r4b-ci/docker.sock   -> DOCKER_HOST=unix:///run/r4b-ci/docker.sock
#   R4B_DOCKER_RUN   exec-root, pidfile /run/r4b-ci
#   R4B_DOCKER_DIR   data-root + log   <cache>/docker-engine, <cache> = the toolkit's cache folder:
#                                      $R4B_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/r4b-deploy
# One data root for CI and users alike (the same rule as r4b_deploy/paths.py cache_dir()): an engine
# started by hand finds the base image and the build cache CI made, and the other way round.
# The data-root is persistent on purpose: the base image (≈ 50 s to make) and the build cache of
# the rehearsal image (≈ 6 min cold) survive between runs on the same machine. `stop` keeps
# it; `PURGE=1 ... stop` deletes it.
#
# Nothing can be pulled here, so `base-image` makes the production base image name
# (profiles/vllm.yaml gpu.base_image) resolve to a local stand-in: a Debian bookworm minbase with
# ca-certificates and the host's CA bundle, and nothing else. As bare as the real image, which has
# no Python and no curl (profiles/base-image.yaml says what it has and where that was read): a
# Dockerfile that builds on the stand-in does not lean on anything the real one lacks.
# Still different from the real image: Debian, not Ubuntu; no CUDA toolkit or libraries; no gnupg2.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=${R4B_DOCKER_RUN:-/run/r4b-ci}
SOCK=${R4B_DOCKER_SOCK:-$RUN_DIR/docker.sock}
CACHE_ROOT=${R4B_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/r4b-deploy}
DATA_DIR=${R4B_DOCKER_DIR:-$CACHE_ROOT/docker-engine}
PIDFILE=$RUN_DIR/dockerd.pid      # written by dockerd itself
BGPID=$RUN_DIR/dockerd.started    # the pid we launched: `stop` only ever kills this one
LOG=$DATA_DIR/dockerd.log
LOCK=$RUN_DIR/lock
# Used when the default start fails (no overlayfs in a nested container, no iptables):
FALLBACK_FLAGS=${R4B_DOCKERD_FALLBACK_FLAGS:---storage-driver=vfs --iptables=false --ip-masq=false}
# A local name for the bootstrapped Debian, which the production base name is then tagged as. An
# image of the production name that is neither this nor the tools image below is a real one
# (pulled by a user) and is never replaced.
LOCAL_BASE=r4b-ci/cuda-standin:bookworm-minbase
# Debian with python3 and curl, for the tests' stub servers only (it was the first stand-in).
TOOLS_IMAGE=r4b-ci/debian-py:bookworm
API_WAIT_S=60
# Compose v2 (`docker compose`): Debian packages it as a static binary from trixie on; bookworm has
# only v1. Its .deb comes from the Debian mirror apt already uses, through apt itself (signed
# Release files), into a scratch apt state: the system's sources are not changed.
COMPOSE_V2_SUITE=${R4B_COMPOSE_V2_SUITE:-trixie}
COMPOSE_V2_PLUGIN_DIR=/usr/local/lib/docker/cli-plugins

export DOCKER_HOST=unix://$SOCK
# Prefer the CLI that comes with docker.io: it matches the engine's API version.
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker

log() { printf '[docker-engine %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

base_image_name() {
  # One source of truth: the base image the renderer writes into the Dockerfile (the CLI passes it
  # as R4B_BASE_IMAGE; run by path, read it from the profiles of the wheel or of the checkout).
  if [ -n "${R4B_BASE_IMAGE:-}" ]; then echo "$R4B_BASE_IMAGE"; return; fi
  local f
  for f in "$HERE/../_data/profiles/vllm.yaml" "$HERE/../../profiles/vllm.yaml"; do
    [ -f "$f" ] || continue
    awk '/^[[:space:]]*base_image:/{gsub(/"/, "", $2); print $2; exit}' "$f"
    return
  done
}

api_up() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

do_install() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v docker-compose >/dev/null || need+=(docker-compose)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v iptables >/dev/null || need+=(iptables)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  if [ ${#need[@]} -eq 0 ]; then
    log "install: docker.io, docker-compose, debootstrap, iptables, gcc present"
  else
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    log "install: ${need[*]} in $((SECONDS - t0)) s"
  fi
  install_compose_v2
}

install_compose_v2() {
  # `docker compose` (v2) as a CLI plugin, unless the docker CLI already has one.
  if "$DOCKER" compose version >/dev/null 2>&1; then
    log "install: compose v2 present ($("$DOCKER" compose version --short 2>/dev/null))"; return 0
  fi
  [ "${R4B_COMPOSE_V2:-1}" = 1 ] || { log "install: compose v2 skipped (R4B_COMPOSE_V2=0)"; return 0; }
  local t0=$SECONDS scratch opts deb
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/r4b-compose.XXXXXX")
  mkdir -p "$scratch/lists/partial" "$scratch/cache/archives/partial" "$scratch/x"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) $COMPOSE_V2_SUITE main" \
    >"$scratch/sources.list"
  opts=(-o "Dir::Etc::SourceList=$scratch/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$scratch/lists" -o "Dir::Cache=$scratch/cache"
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null -o APT::Sandbox::User=root)
  if apt-get "${opts[@]}" update -qq >"$scratch/apt.log" 2>&1 &&
     (cd "$scratch" && apt-get "${opts[@]}" download docker-compose >>"$scratch/apt.log" 2>&1); then
    deb=$(ls "$scratch"/docker-compose_2*.deb 2>/dev/null | head -n 1)
  fi
  if [ -z "${deb:-}" ]; then
    tail -n 5 "$scratch/apt.log" >&2 || true
    log "install: compose v2 not installed (no docker-compose 2.x in Debian $COMPOSE_V2_SUITE at $(debian_mirror)); compose v1 remains"
    rm -rf "$scratch"; return 0
  fi
  dpkg-deb -x "$deb" "$scratch/x"
  install -D -m 0755 "$scratch/x/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_V2_PLUGIN_DIR/docker-compose"
  rm -rf "$scratch"
  log "install: compose v2 $("$DOCKER" compose version --short 2>/dev/null || echo '?') from $(basename "$deb")" \
      "-> $COMPOSE_V2_PLUGIN_DIR in $((SECONDS - t0)) s"
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

image_id() { "$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

debootstrap_image() {
  # debootstrap_image NAME INCLUDE: a Debian bookworm minbase (+ INCLUDE) imported as image NAME.
  local name=$1 include=$2 rootfs
  mkdir -p "$DATA_DIR"
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/r4b-rootfs.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$rootfs'" EXIT
  debootstrap --variant=minbase --include="$include" \
    bookworm "$rootfs" "$(debian_mirror)" >"$DATA_DIR/debootstrap.log" 2>&1 ||
    { tail -n 20 "$DATA_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $DATA_DIR/debootstrap.log)"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # HTTPS from RUN steps must trust what the host trusts (a TLS-inspecting egress proxy's CA).
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  if [ "$name" = "$LOCAL_BASE" ]; then
    # As the real image: none of these may be there (a Dockerfile must install what it runs).
    local cmd
    for cmd in python3 python3.11 pip pip3 curl; do
      if chroot "$rootfs" sh -c "command -v $cmd" >/dev/null 2>&1; then
        die "base-image: the stand-in has $cmd; the real base image does not"
      fi
    done
  fi
  tar -C "$rootfs" -c . | "$DOCKER" import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$name" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
}

do_base_image() {
  api_up || die "base-image: no engine at $DOCKER_HOST (run: $0 start)"
  local base t0=$SECONDS id
  base=$(base_image_name)
  [ -n "$base" ] || die "base-image: no gpu.base_image found (set R4B_BASE_IMAGE or reinstall r4b-deploy)"
  # The tests' stub servers (python3, curl for the health check) run on a Debian of their own.
  if [ -z "$(image_id "$TOOLS_IMAGE")" ]; then
    log "base-image: debootstrap bookworm minbase + python3, curl for the tests' stub images (≈ 50 s)"
    debootstrap_image "$TOOLS_IMAGE" python3,curl,ca-certificates
  fi
  id=$(image_id "$base")
  if [ -n "$id" ]; then
    if [ "$id" = "$(image_id "$LOCAL_BASE")" ]; then log "base-image: $base present (the bare stand-in)"; return 0; fi
    if [ "$id" != "$(image_id "$TOOLS_IMAGE")" ]; then
      log "base-image: $base present and not made here (a real image): left as it is"; return 0
    fi
    # The first stand-in was the tools image, with Python and curl (kinder than the real image).
    log "base-image: $base was the stand-in with Python and curl; retagging it to the bare one"
  fi
  if [ -z "$(image_id "$LOCAL_BASE")" ]; then
    log "base-image: debootstrap bookworm minbase + ca-certificates, no python3, no curl (≈ 50 s)"
    debootstrap_image "$LOCAL_BASE" ca-certificates
  fi
  "$DOCKER" tag "$LOCAL_BASE" "$base"
  log "base-image: $base -> $LOCAL_BASE in $((SECONDS - t0)) s"
}

do_env() {
  echo "export DOCKER_HOST=$DOCKER_HOST"
}

do_where() {
  # Where this helper keeps things: for `r4b-deploy engine status` and for people.
  echo "DOCKER_HOST=$DOCKER_HOST"
  echo "data_root=$DATA_DIR/data"
  echo "log=$LOG"
  echo "base_image=$(base_image_name)"
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
  local keep=${R4B_KEEP_IMAGES:-2} keep_gpu=${R4B_KEEP_GPU_IMAGES:-1} age=${R4B_PRUNE_AGE:-168h}
  "$DOCKER" images --filter 'reference=r4b-test/*' --format '{{.Repository}}:{{.Tag}}' |
    xargs -r "$DOCKER" rmi -f >/dev/null 2>&1 || true
  # Counted per flavour: the GPU image (≈ 10 GB, ≈ 10 min cold; the parser check's) is not pushed
  # out by newer rehearsal images.
  "$DOCKER" images --filter label=io.r4b-deploy.flavour=rehearsal --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' r4b-deploy/r4b | sort -r |
    tail -n +"$((keep + 1))" | cut -f2 | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
  "$DOCKER" images --filter label=io.r4b-deploy.flavour=gpu --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' r4b-deploy/r4b | sort -r |
    tail -n +"$((keep_gpu + 1))" | cut -f2 | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
  "$DOCKER" image prune -f --filter "until=$age" >/dev/null
  log "prune: kept the newest $keep rehearsal and $keep_gpu GPU r4b-deploy/r4b image(s); $("$DOCKER" system df --format '{{.Type}} {{.Size}}' | tr '\n' ' ')"
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
    where) do_where ;;
    status) do_status ;;
    prune) run_locked do_prune ;;
    stop) run_locked do_stop ;;
    *) echo "usage: $0 {install|start|base-image|env|where|status|prune|stop}..." >&2; exit 2 ;;
  esac
done

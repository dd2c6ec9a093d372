#!/usr/bin/env bash
# The engine helper ships inside the package (r4b_deploy/engine/docker-engine.sh; installed, it runs
# as `r4b-deploy engine ...`): this path stays for scripts and habits that call it from a checkout.
exec bash "$(cd "$(dirname "$0")/.." && pwd)/r4b_deploy/engine/docker-engine.sh" "$@"

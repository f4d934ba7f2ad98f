#!/usr/bin/env bash
# A private Docker engine for the testcontainers path: `start`, `stop` or `status`.
#
# Its socket, pid and runtime state live in /run/asgi-conformance-docker, its images and
# containers in /var/lib/asgi-conformance-docker, so it never meets a Docker the machine may
# run already. It gets no bridge network and touches no iptables (--bridge=none
# --iptables=false): our containers use the host's network, on free loopback ports.
# `start` installs Debian's docker.io when dockerd is missing, then builds the Redis and
# RabbitMQ images from the machine's Debian packages (ci/debian_rootfs.py; skipped when the
# tags exist): images cannot be pulled here.
#
# When the engine cannot start, `start` prints ONE line saying why and exits 0: the tests say
# so and the plugin uses the local binaries. The engine is stopped by its own pid.
set -uo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=/run/asgi-conformance-docker
DATA_DIR=/var/lib/asgi-conformance-docker
SOCKET="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOG="$RUN_DIR/dockerd.log"
export DOCKER_HOST="unix://$SOCKET"
START_WAIT=30  # seconds for dockerd to answer on its socket

say() { echo "ci/docker-engine: $*"; }
# The one line saying why the engine did not start, kept for `status` (and the tests) to show.
NOT_STARTED="$RUN_DIR/not-started"
give_up() { say "engine not started: $*"; echo "$*" >"$NOT_STARTED" 2>/dev/null; }

answers() { [ -S "$SOCKET" ] && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_engine() {
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    give_up "dockerd is missing and installing docker.io needs root"; return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the package from starting the system-wide engine: we start our own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io >/dev/null; } 2>"$RUN_DIR/install.log"; then
    rm -f /usr/sbin/policy-rc.d
    give_up "apt-get install docker.io failed: $(tail -n 1 "$RUN_DIR/install.log")"; return 1
  fi
  rm -f /usr/sbin/policy-rc.d
}

# Starts dockerd with storage driver $1; succeeds once it answers, or fails once it has exited.
launch() {
  local driver=$1 pid deadline
  rm -f "$SOCKET" "$PIDFILE"
  echo "--- $(date -u +%FT%TZ) starting with storage driver $driver" >>"$LOG"
  setsid dockerd --host "$DOCKER_HOST" --pidfile "$PIDFILE" --data-root "$DATA_DIR" \
    --exec-root "$RUN_DIR/exec" --storage-driver "$driver" --bridge=none --iptables=false \
    --ip-masq=false --userland-proxy=false </dev/null >>"$LOG" 2>&1 9>&- &
  pid=$!
  deadline=$((SECONDS + START_WAIT))
  while [ $SECONDS -lt $deadline ]; do
    answers && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null
  return 1
}

why_not() {  # the engine's last error line: what the one-line report shows
  grep -E 'level=(error|fatal)|failed to start' "$LOG" 2>/dev/null | tail -n 1 | sed -E 's/.*msg="?//; s/"? *$//' | cut -c1-200
}

build_images() {
  local failed=0 image
  for image in redis rabbitmq; do
    python3 ci/debian_rootfs.py "$image" || failed=1
  done
  return $failed
}

start() {
  mkdir -p "$RUN_DIR" 2>/dev/null || { say "engine not started: cannot create $RUN_DIR"; return 0; }
  exec 9>"$RUN_DIR/lock"
  flock -w 60 9 || { give_up "another start holds $RUN_DIR/lock"; return 0; }
  if running_pid >/dev/null && answers; then
    say "already running ($DOCKER_HOST)"
  else
    install_engine || return 0
    mkdir -p "$DATA_DIR"
    local t0=$SECONDS
    if ! launch overlay2 && ! launch vfs; then
      give_up "dockerd (overlay2, then vfs storage) did not answer within ${START_WAIT} s: $(why_not) (log: $LOG)"
      return 0
    fi
    rm -f "$NOT_STARTED"
    say "started ($DOCKER_HOST, $(docker info --format '{{.Driver}}' 2>/dev/null) storage, $((SECONDS - t0)) s)"
  fi
  build_images || say "an image could not be built: the container tests will say which"
  return 0
}

stop() {
  local pid deadline
  pid=$(running_pid) || { say "not running"; return 0; }
  kill -TERM "$pid"
  deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null; break; fi
    sleep 0.1
  done
  rm -f "$SOCKET" "$PIDFILE" "$NOT_STARTED"
  say "stopped (pid $pid)"
}

status() {
  if running_pid >/dev/null && answers; then
    echo "$DOCKER_HOST"
  else
    if [ -s "$NOT_STARTED" ]; then say "not running: $(cat "$NOT_STARTED")"; else say "not running"; fi
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

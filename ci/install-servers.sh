#!/usr/bin/env bash
# Installs the real servers our tests run layers against (Debian's redis-server,
# rabbitmq-server, and for the public layers' matrix postgresql and nats-server), only when missing. Needs root for apt-get; says so clearly otherwise.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)  # redis-cluster: redis-cli --cluster create
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)

if [ ${#missing[@]} -eq 0 ]; then
  echo "ci/install-servers: redis-server, rabbitmq-server, postgresql and nats-server already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ci/install-servers: missing ${missing[*]}; run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "ci/install-servers: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packages from starting system-wide servers: the tests start their own.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "ci/install-servers: done"

#!/usr/bin/env bash
# Debian packages the test suites start as child processes (never as system services):
# Chromium (dashboard page test), MariaDB, Redis and RabbitMQ (target kinds), python3-venv (the
# emulated AWS account's virtualenv). Installs only what is missing, and only as root with apt.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || [ -x /usr/sbin/rabbitmq-server ] || need+=(rabbitmq-server)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing Debian packages: ${need[*]} (install them with apt-get as root; their tests say so and skip outside CI)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101: the packages' post-install scripts must not start system services.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# A service the package started anyway (no systemd here, but be sure) is not ours to keep.
for svc in mariadb redis-server rabbitmq-server; do (service "$svc" stop >/dev/null 2>&1 || true); done

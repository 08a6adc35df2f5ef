#!/usr/bin/env bash
# The peers the benchmark compares against, from Debian: mtail and prometheus-postfix-exporter; and GNU time,
# which measures the peak memory of each command it runs.
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail

missing=()
command -v mtail >/dev/null || missing+=(mtail)
command -v prometheus-postfix-exporter >/dev/null || missing+=(prometheus-postfix-exporter)
[ -x /usr/bin/time ] || missing+=(time)  # GNU time: each command's own peak RSS (bench/procs.py)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing ${missing[*]}"
$sudo apt-get update -qq
# The packages start their services where an init system runs; the benchmark starts its own instances on
# free loopback ports, so a running system service does not get in its way.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Installs the Debian 12 packages Harmonia builds against, if any are missing.
# Run as root (or with sudo available); otherwise prints the command to run.
set -euo pipefail
pkgs=(cmake g++ make pkg-config git
      libopenblas-dev libfftw3-dev nlohmann-json3-dev libcpp-httplib-dev libcli11-dev libstb-dev
      libsentencepiece-dev libpcre2-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
      wamerican)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "harmonia: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
elif command -v sudo >/dev/null 2>&1; then
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "harmonia: run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi

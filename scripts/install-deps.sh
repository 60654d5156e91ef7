#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only if missing.
# Called by `make deps` (and so by `make test` and `make demo`) and by the Dockerfile.
set -euo pipefail
# libjpeg-turbo's development package is named per distribution (the
# Dockerfile builds on Ubuntu, CI runs Debian 12).
# oneDNN (Debian 12: libdnnl2) is opened at run time by the CPU backend's
# opt-in bf16 path only (SDXL_CPU_PRECISION=bf16, src/sd/cpu/bf16.c); the
# Ubuntu-based Docker image leaves it out (bf16 there needs oneDNN added).
jpeg=libjpeg62-turbo-dev dnnl=libdnnl2
[ -r /etc/os-release ] && grep -q '^ID=ubuntu' /etc/os-release && jpeg=libjpeg-turbo8-dev dnnl=
pkgs=(
  build-essential cmake pkg-config clang
  libcurl4-openssl-dev libmicrohttpd-dev libcjson-dev libcmocka-dev
  libopenblas-openmp-dev libssl-dev libpng-dev "$jpeg" libwebp-dev
  ${dnnl:+"$dnnl"}
  libomp-dev
  python3-venv
)
[ "${1:-}" = "--list" ] && { printf '%s\n' "${pkgs[@]}"; exit 0; }
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

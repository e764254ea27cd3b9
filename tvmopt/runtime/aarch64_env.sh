#!/usr/bin/env bash
# Prepare (once, then cached) what ARM artifacts need on this x86 machine:
#  - Debian's aarch64 cross toolchain (to export AArch64 libraries),
#  - QEMU user emulation,
#  - an aarch64 Debian root file system with TVM's runtime in /opt/tvmpy.
# Prints the root file system's path. Emulation is for correctness, never for timing.
# Cache: $TVMOPT_AARCH64_ROOT, default ${XDG_CACHE_HOME:-~/.cache}/tvmopt/aarch64-rootfs.
set -euo pipefail
ROOT=${TVMOPT_AARCH64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/tvmopt/aarch64-rootfs}
PYTHON=${PYTHON:-python3}
STAMP="tvmopt-aarch64-root v2: apache-tvm 0.27.0.post1, rpc server deps"
log() { echo "aarch64_env: $*" >&2; }

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run this script as root"
    exit 1
  fi
  log "installing ${missing[*]} (Debian packages)"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if [ "$(cat "$ROOT/.ready" 2>/dev/null)" != "$STAMP" ]; then
  start=$(date +%s)
  tmp="$ROOT.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$ROOT")"
  log "debootstrap an arm64 bookworm root (minbase + python3) into $ROOT"
  # --foreign: only download and unpack; nothing aarch64 is executed here.
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 bookworm "$tmp" >&2
  for deb in "$tmp"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$tmp"; done
  rm -rf "$tmp"/var/cache/apt/archives/*.deb
  log "pip: aarch64 wheels of TVM's runtime into $ROOT/opt/tvmpy"
  "$PYTHON" -m pip install -q --target "$tmp/opt/tvmpy" \
    --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --python-version 3.11 \
    --implementation cp --only-binary=:all: \
    apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 numpy ml_dtypes typing_extensions \
    psutil cloudpickle tornado >&2  # the last three: TVM's RPC server
  # The runtime is enough to run artifacts; the compiler library is 240 MB.
  rm -f "$tmp"/opt/tvmpy/tvm/lib/libtvm_compiler.so
  echo "$STAMP" > "$tmp/.ready"
  rm -rf "$ROOT"
  mv "$tmp" "$ROOT"
  log "ready in $(( $(date +%s) - start )) s"
fi
echo "$ROOT"

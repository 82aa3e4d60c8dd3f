#!/usr/bin/env bash
# Makes sure the system libraries distill links against are present: OpenBLAS, HDF5 and SQLite
# (Debian packages libopenblas-dev, libhdf5-dev and libsqlite3-dev, found through pkg-config).
# Installs them with apt-get when running as root; otherwise prints the command and stops.
set -euo pipefail

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
for pair in openblas:libopenblas-dev hdf5:libhdf5-dev sqlite3:libsqlite3-dev; do
  pc=${pair%%:*}; pkg=${pair#*:}
  if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "$pc"; then missing+=("$pkg"); fi
done
if ! command -v swift >/dev/null 2>&1; then
  echo "distill: the Swift toolchain (6.0 or newer) is not on PATH; install it from swift.org first." >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "distill: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "distill: missing system packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

#!/usr/bin/env bash
# Installs what sspose needs to build and test on Debian 12 (idempotent).
# Run as root (CI and the dev machines are root); uses only apt-get and pip.
set -euo pipefail
PKGS="build-essential pkg-config libhdf5-dev hdf5-tools libopenmpi-dev openmpi-bin
      libcjson-dev libcairo2-dev libjpeg62-turbo-dev libpng-dev zlib1g-dev libopenblas-dev libopenblas-openmp-dev libdnnl-dev
      python3-torch python3-h5py python3-numpy python3-pil python3-pip
      slurmctld slurmd slurm-client munge"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing
fi
# pycocotools for /usr/bin/python3 (the interpreter Debian's torch and h5py serve)
if ! /usr/bin/python3 -c "import pycocotools" 2>/dev/null; then
  /usr/bin/python3 -m pip install -q --break-system-packages pycocotools
fi
echo "deps ok"

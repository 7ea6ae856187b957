#!/bin/sh
# Installs the Debian 12 packages libldm needs to build, test and benchmark (run as root).
# Idempotent: apt skips what is already there.
set -e
export DEBIAN_FRONTEND=noninteractive
PKGS="build-essential meson ninja-build pkg-config libopenblas-dev libpng-dev zlib1g-dev \
libvulkan-dev glslang-tools spirv-tools mesa-vulkan-drivers vulkan-validationlayers clang python3 python3-numpy binutils"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
fi

#!/bin/sh
# Sets everything up on a fresh Debian 12 machine and runs the main job: a txt2img that writes a
# PNG. Without -m, ldm uses the demo model that ships with it (models/README.md: a small SD 1.x
# layout LDM trained here on captioned shapes), at its own size, 64x64.
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
build/examples/ldm txt2img -p "a red triangle on a yellow background" --seed 42 -o triangle.png
build/tools/ldm-shape-check triangle.png "a red triangle on a yellow background" || true
echo "wrote $(pwd)/triangle.png"

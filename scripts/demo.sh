#!/bin/sh
# Sets everything up on a fresh Debian 12 machine and runs the main job: a txt2img that writes a
# PNG. Until a trained model ships (see the issue tracker), it uses the tiny test checkpoint,
# whose weights are RANDOM: the picture is structured noise, not a horse.
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
echo "NOTE: tests/data/models/sd1-tiny.safetensors has random weights; the image will be noise." >&2
build/examples/ldm txt2img -m tests/data/models/sd1-tiny.safetensors --config tests/data/models/sd1-tiny.json \
  -p "a photograph of an astronaut riding a horse" -W 256 -H 256 --steps 20 --seed 42 -o txt2img.png
echo "wrote $(pwd)/txt2img.png"

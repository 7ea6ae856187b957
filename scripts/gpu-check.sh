#!/bin/sh
# The Vulkan backend on a machine with a real GPU, in one prepared run (issue 4): the Vulkan test
# suite, then the full-size SD 1.5 (random weights) at 512x512 and a 1024x1024 decode that must
# tile within a 4 GiB device budget, and a summary. Under 8 minutes on a datacenter GPU.
#
# Such a machine starts bare and reaches no package registry, so the work is split:
#   scripts/gpu-check.sh prepare [--shared DIR]   here: builds build-gpu/ (release, -Dvulkan=enabled)
#                                                  and packs build-gpu-bundle/ (the binaries, the
#                                                  shared libraries they need except glibc, the
#                                                  SD 1.5 manifest): ~50 MiB to carry
#   scripts/gpu-check.sh run [--out DIR] [--no-full]
#                                                  there, from the repository root, with
#                                                  build-gpu-bundle/ carried along: makes the random
#                                                  checkpoint (make-random-ckpt, no Python needed),
#                                                  runs everything, prints the summary
#                                                  (--no-full: the test suite only, e.g. a dry
#                                                  run on lavapipe)
# The SPIR-V is embedded in the library: nothing compiles shaders on the GPU machine. run uses the
# machine's own Vulkan driver (ICD) through the carried loader; `ldm --list-devices` shows it.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
mode="${1:-}"
[ $# -gt 0 ] && shift
bundle="$repo/build-gpu-bundle"

case "$mode" in
prepare)
    shared="$repo/../shared"
    while [ $# -gt 0 ]; do
        case "$1" in
            --shared) shared="$2"; shift 2 ;;
            *) echo "gpu-check: unknown argument '$1'" >&2; exit 2 ;;
        esac
    done
    set -e
    [ -f "$shared/manifests/sd15.json" ] || { echo "gpu-check: no $shared/manifests/sd15.json" >&2; exit 1; }
    [ -f "$repo/build-gpu/build.ninja" ] || meson setup "$repo/build-gpu" "$repo" --buildtype=release -Dvulkan=enabled
    ninja -C "$repo/build-gpu" -j1 examples/ldm tools/ldm-conform tools/make-random-ckpt tests/conform_test \
        tests/test_vulkan_ops tests/test_vulkan_txt2img tests/test_vulkan_vae_tiling src/libldm.so.0.1.0
    rm -rf "$bundle"
    mkdir -p "$bundle/bin" "$bundle/lib"
    for b in examples/ldm tools/ldm-conform tools/make-random-ckpt tests/conform_test tests/test_vulkan_ops \
             tests/test_vulkan_txt2img tests/test_vulkan_vae_tiling; do
        cp "$repo/build-gpu/$b" "$bundle/bin/"
    done
    cp -L "$repo/build-gpu/src/libldm.so.0" "$bundle/lib/"
    # every shared library the binaries use, except glibc's own (the GPU machine has those)
    for b in "$bundle"/bin/* "$bundle/lib/libldm.so.0"; do
        LD_LIBRARY_PATH="$bundle/lib" ldd "$b" | awk '/=> \// {print $3}'
    done | sort -u | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libldm.so*) ;;
            *) cp -L "$lib" "$bundle/lib/" ;;
        esac
    done
    strip "$bundle"/bin/* "$bundle"/lib/* 2>/dev/null || true
    cp "$shared/manifests/sd15.json" "$bundle/sd15.json"
    du -sh "$bundle"
    echo "gpu-check: carry build-gpu-bundle and run 'scripts/gpu-check.sh run' from the repository root"
    exit 0
    ;;
run)
    out="${TMPDIR:-/tmp}/ldm-gpu-check"
    full=1
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) out="$2"; shift 2 ;;
            --no-full) full=0; shift ;;
            *) echo "gpu-check: unknown argument '$1'" >&2; exit 2 ;;
        esac
    done
    ;;
*)
    sed -n '2,/^set -u/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

# ---- run ----
[ -x "$bundle/bin/ldm" ] || { echo "gpu-check: no $bundle (run 'scripts/gpu-check.sh prepare' first)" >&2; exit 1; }
cd "$repo"
mkdir -p "$out"
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
B="$bundle/bin"
data="$repo/tests/data"
summary="$out/summary.txt"
: >"$summary"
t_start=$(date +%s)
fails=0

# step NAME TIMEOUT_S COMMAND...: runs it with a time limit, logs to OUT/NAME.log, one summary line
step() {
    name=$1
    limit=$2
    shift 2
    log="$out/$(echo "$name" | tr / _).log"
    t0=$(date +%s)
    timeout "$limit" "$@" >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    if [ $rc -eq 0 ]; then res=ok; else res="FAIL (exit $rc)"; fails=$((fails + 1)); fi
    line=$(printf '%-34s %-16s %4ss' "$name" "$res" $((t1 - t0)))
    echo "$line" | tee -a "$summary"
    [ $rc -eq 0 ] || tail -n 8 "$log" | sed 's/^/    /'
    return $rc
}

echo "== devices"
"$B/ldm" --list-devices | tee "$out/devices.txt"
if ! grep -q -E "(discrete|integrated|virtual) GPU" "$out/devices.txt"; then
    echo "gpu-check: no GPU among the Vulkan devices; the checks below run on whatever device there is" | tee -a "$summary"
fi

echo "== Vulkan tests (validation layer: ${LDM_VULKAN_VALIDATION:-off})"
step vulkan_ops 120 "$B/test_vulkan_ops"
step vulkan_txt2img 120 "$B/test_vulkan_txt2img" "$data"
step vulkan_vae_tiling 120 "$B/test_vulkan_vae_tiling" "$data"
for c in text_encoder unet_a unet_b_nonsquare unet_cfg_batch2 unet_mixed_t_batch2 vae_encode vae_encode_nonsquare \
         vae_decode vae_decode_nonsquare vae_taps txt2img_ddim txt2img_euler txt2img_plms txt2img_euler_ancestral \
         txt2img_heun txt2img_dpmpp_2m txt2img_dpmpp_2m_karras txt2img_lms img2img_ddim; do
    [ -f "$data/golden/sd1-tiny/$c.safetensors" ] || continue
    step "sd1-tiny/$c" 60 "$B/conform_test" "$B/ldm-conform" "$data/models/sd1-tiny.safetensors" \
        "$data/golden/sd1-tiny/$c.safetensors" "$out" vulkan
done

[ $full = 1 ] && echo "== full-size SD 1.5, random F16 weights"
model="$out/sd15_rand_f16.safetensors"
[ $full = 0 ] || [ -s "$model" ] || step make_checkpoint 180 "$B/make-random-ckpt" "$bundle/sd15.json" "$model" 0
if [ $full = 1 ] && [ -s "$model" ]; then
    export LDM_VULKAN_STATS=1
    step txt2img_512_vulkan 240 "$B/ldm" txt2img -m "$model" -p "a photograph of an astronaut riding a horse" \
        -W 512 -H 512 --steps 20 --backend vulkan -v -o "$out/sd15_512.png"
    # a 4 GiB device budget: 768x768 txt2img (1 step), then the 1024x1024 decode, which must tile
    step txt2img_768_budget4g 240 env LDM_VULKAN_BUDGET_MB=4096 "$B/ldm" txt2img -m "$model" -p "a photo" \
        -W 768 -H 768 --steps 1 --backend vulkan -v -o "$out/sd15_768.png"
    step txt2img_1024_budget4g 300 env LDM_VULKAN_BUDGET_MB=4096 "$B/ldm" txt2img -m "$model" -p "a photo" \
        -W 1024 -H 1024 --steps 1 --backend vulkan -v -o "$out/sd15_1024.png"
    unset LDM_VULKAN_STATS
    for f in txt2img_512_vulkan txt2img_768_budget4g txt2img_1024_budget4g; do
        [ -f "$out/$f.log" ] && grep -E "ldm vulkan stats|sampling step|wrote" "$out/$f.log" | tail -n 3 | sed "s/^/    $f: /"
    done
fi

t_end=$(date +%s)
echo
echo "== summary ($((t_end - t_start)) s; logs in $out)"
cat "$out/devices.txt"
cat "$summary"
echo "$fails failure(s)"
[ $fails -eq 0 ]

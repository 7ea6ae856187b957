#!/bin/sh
# `ldm upscale` and `ldm info` with the paper's tiny models (tests/data/models): help, usage
# errors, a text-to-image model refused, an ldm-sr and a tiled x4-upscaler run whose PNGs are 4x
# the input (made by `ldm txt2img` with the BERT model), and the families named by `ldm info`.
#
# usage: test_cli_upscale.sh LDM_EXE SCRATCH_DIR MODELS_DIR
set -u

LDM=$1
MODELS=$3
TMP=$(mktemp -d "$2/ldm-cli-upscale.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
    echo "FAIL: $*"
    sed 's/^/    stderr: /' "$TMP/err"
    failures=$((failures + 1))
}

run() {
    "$LDM" "$@" >"$TMP/out" 2>"$TMP/err"
    status=$?
}

expect_status() {
    want=$1
    shift
    run "$@"
    [ "$status" -eq "$want" ] || { fail "ldm $*: exit $status, expected $want"; return 1; }
}

# The width and height of a PNG from its IHDR (bytes 16..23, big-endian).
png_size() {
    od -A n -t u1 -j 16 -N 8 "$1" | awk '{ printf "%dx%d", $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8 }'
}

expect_status 0 upscale --help && grep -q -e '--noise-level' "$TMP/out" || fail "upscale --help lacks --noise-level"
expect_status 2 upscale -m "$MODELS/ldm-sr-tiny.safetensors" -o "$TMP/x.png"
expect_status 2 upscale -m "$MODELS/ldm-sr-tiny.safetensors" -i "$TMP/in.png" --tile -2
expect_status 0 --help && grep -q 'ldm upscale' "$TMP/out" || fail "ldm --help does not list upscale"

# An input image: 64x64 from the BERT txt2img model.
expect_status 0 txt2img -m "$MODELS/ldm-txt2img-tiny.safetensors" --config "$MODELS/ldm-txt2img-tiny.json" \
    -p "a red cube" -W 64 -H 64 --steps 2 --sampler ddim -o "$TMP/in.png"
[ "$(png_size "$TMP/in.png")" = "64x64" ] || fail "txt2img with the BERT model did not write a 64x64 PNG"

expect_status 1 upscale -m "$MODELS/ldm-txt2img-tiny.safetensors" -i "$TMP/in.png" -o "$TMP/no.png" --steps 1
grep -q 'LDM_ERR_UNSUPPORTED' "$TMP/err" || fail "upscale with a txt2img model: no LDM_ERR_UNSUPPORTED"
[ ! -e "$TMP/no.png" ] || fail "a refused upscale wrote a file"

expect_status 0 upscale -m "$MODELS/ldm-sr-tiny.safetensors" --config "$MODELS/ldm-sr-tiny.json" -i "$TMP/in.png" \
    -o "$TMP/sr.png" --steps 2 --seed 3
[ "$(png_size "$TMP/sr.png")" = "256x256" ] || fail "ldm-sr: output is $(png_size "$TMP/sr.png"), not 256x256"

expect_status 0 upscale -m "$MODELS/x4-upscaler-tiny.safetensors" --config "$MODELS/x4-upscaler-tiny.json" \
    -i "$TMP/in.png" -o "$TMP/x4.png" --steps 2 -p "a red cube" --noise-level 30 --tile 32 --tile-overlap 8
[ "$(png_size "$TMP/x4.png")" = "256x256" ] || fail "x4-upscaler (tiled): output is $(png_size "$TMP/x4.png")"

for pair in "ldm-sr-tiny:ldm-sr" "x4-upscaler-tiny:x4-upscaler" "ldm-txt2img-tiny:ldm-txt2img"; do
    model=${pair%%:*}
    family=${pair#*:}
    expect_status 0 info "$MODELS/$model.safetensors" && grep -q "^family: *$family " "$TMP/out" ||
        fail "ldm info $model does not say family $family"
done

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "all upscale CLI checks passed"

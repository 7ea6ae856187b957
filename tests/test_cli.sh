#!/bin/sh
# Tests of the ldm command-line program that need no model: --version/--help, usage errors
# (exit 2, exactly one "ldm: error:" line), and library/file errors (exit 1 with a message).
#
# With a (tiny) model it also generates: info, txt2img with a batch, the PNG's parameters,
# seed+i reproducibility, and Ctrl-C (exit 130, nothing written).
#
# usage: test_cli.sh LDM_EXE VERSION [SCRATCH_DIR [MODEL]]   (run by meson: meson test --suite cli)
set -u

LDM=$1
VERSION=$2
MODEL=${4:-}
TMP=$(mktemp -d "${3:-${TMPDIR:-/tmp}}/ldm-cli.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
    echo "FAIL: $*"
    sed 's/^/    stderr: /' "$TMP/err"
    failures=$((failures + 1))
}

# Runs ldm; leaves stdout, stderr and the exit status in $TMP/out, $TMP/err and $status.
run() {
    "$LDM" "$@" >"$TMP/out" 2>"$TMP/err"
    status=$?
}

expect_status() {
    want=$1
    shift
    run "$@"
    if [ "$status" -ne "$want" ]; then
        fail "ldm $*: exit $status, expected $want"
        return 1
    fi
    return 0
}

stdout_has() { # a fixed string
    grep -q -F -e "$1" "$TMP/out" || fail "stdout of the last command lacks '$1'"
}

# A usage error: exit 2, and stderr is one line starting "ldm: error: ".
expect_usage_error() {
    expect_status 2 "$@" || return
    lines=$(wc -l <"$TMP/err")
    if [ "$lines" -ne 1 ] || ! grep -q '^ldm: error: ' "$TMP/err"; then
        fail "ldm $*: expected one 'ldm: error:' line on stderr, got $lines line(s)"
    fi
}

# A failure past argument parsing: exit 1 with an "ldm: error:" line containing $1.
expect_failure() {
    needle=$1
    shift
    expect_status 1 "$@" || return
    grep -q '^ldm: error: ' "$TMP/err" || fail "ldm $*: no 'ldm: error:' line"
    grep -q -e "$needle" "$TMP/err" || fail "ldm $*: stderr lacks '$needle'"
}

# --- version and help ------------------------------------------------------------------------
if expect_status 0 --version; then
    [ "$(cat "$TMP/out")" = "ldm $VERSION" ] || fail "--version printed '$(cat "$TMP/out")'"
fi
expect_status 0 -V && stdout_has "ldm $VERSION"

expect_status 0 --help && {
    stdout_has 'ldm txt2img'
    stdout_has 'ldm img2img'
    stdout_has 'ldm inpaint'
    stdout_has 'ldm upscale'
    stdout_has 'ldm info'
    stdout_has '--list-samplers'
}
expect_status 0 help && stdout_has 'ldm txt2img'
expect_status 0 txt2img --help && {
    for opt in --model --prompt --negative-prompt --width --height --steps --cfg-scale --sampler \
        --scheduler --seed --rng --batch-count --clip-skip --eta --threads --backend --device \
        --config --prediction --output --verbose; do
        stdout_has "$opt"
    done
    stdout_has 'euler' # the sampler list comes from the library
}
expect_status 0 txt2img -m x -h && stdout_has 'usage: ldm txt2img'
stdout_has '--sampling-method'
expect_status 0 img2img --help && {
    for opt in --model --init-img --strength --prompt --steps --sampler --sampling-method \
        --scheduler --seed --rng --batch-count --output; do
        stdout_has "$opt"
    done
    stdout_has 'default: 0.75'
    ! grep -q -e '--width' "$TMP/out" || fail "img2img --help offers --width (the size is the init image's)"
}
# The sampler names come from the library, one per line.
expect_status 0 --list-samplers && {
    stdout_has 'euler_ancestral'
    stdout_has 'ddim'
    [ "$(wc -l <"$TMP/out")" -ge 7 ] || fail "--list-samplers printed $(wc -l <"$TMP/out") names"
}
expect_status 0 inpaint --help && {
    for opt in --model --init-img --mask --outpaint --overlap --mask-blur --fill --no-composite \
        --strength --prompt --steps --sampler --seed --clip-skip --prediction --output; do
        stdout_has "$opt"
    done
    stdout_has 'latent-noise'
    ! grep -q -e '--width' "$TMP/out" || fail "inpaint --help offers --width (the size is the image's)"
}
expect_status 0 info --help && { stdout_has 'usage: ldm info'; stdout_has '--device'; }
expect_status 0 upscale --help && { stdout_has 'usage: ldm upscale'; stdout_has '--device'; }
expect_status 0 help txt2img && stdout_has 'usage: ldm txt2img'

# --- usage errors: exit 2 ----------------------------------------------------------------------
expect_status 2 # no command: usage, then the error
grep -q '^ldm: error: ' "$TMP/err" || fail "no command: no 'ldm: error:' line"
expect_usage_error frobnicate
expect_usage_error --bogus
expect_usage_error help frobnicate
expect_usage_error info

M="$TMP/model.safetensors" # never created: these must fail before looking for it
expect_usage_error txt2img -m "$M"
expect_usage_error txt2img -m "$M" -p cat --bogus
expect_usage_error txt2img -m "$M" -p cat -x
expect_usage_error txt2img -m "$M" -p
expect_usage_error txt2img -m "$M" -p cat extra-argument
expect_usage_error txt2img -m "$M" -p cat --verbose=1
expect_usage_error txt2img -m "" -p cat
expect_usage_error txt2img -m "$M" -p cat -o ""
for bad in abc -8 100 12x "" " 64" +64 16392 99999999999999999999; do
    expect_usage_error txt2img -m "$M" -p cat -W "$bad"
done
expect_usage_error txt2img -m "$M" -p cat --height=513

# Without -m the demo model is used (found beside the program: build/models), at its own size.
if "$LDM" txt2img -p "a red circle on a blue background" --steps 2 -o "$TMP/demo.png" 2>"$TMP/err"; then
    # PNG IHDR: width and height, big-endian, at bytes 16..23
    size=$(od -An -tu1 -j16 -N8 "$TMP/demo.png" | tr -s ' ')
    [ "$size" = " 0 0 0 64 0 0 0 64" ] || fail "default model: the PNG is not 64x64 (IHDR:$size)"
else
    fail "txt2img without -m (the demo model): $(cat "$TMP/err")"
fi
expect_usage_error txt2img -m "$M" -p cat --steps 0
expect_usage_error txt2img -m "$M" -p cat --steps 1001
expect_usage_error txt2img -m "$M" -p cat --batch-count 0
for bad in nan inf 1e999 7,5 -1 abc ""; do
    expect_usage_error txt2img -m "$M" -p cat --cfg-scale "$bad"
done
for bad in abc -2 -0 1.5 " 5" +5 0x10 18446744073709551616 99999999999999999999999; do
    expect_usage_error txt2img -m "$M" -p cat --seed "$bad"
done
expect_usage_error txt2img -m "$M" -p cat --scheduler foo
expect_usage_error txt2img -m "$M" -p cat --rng gpu
expect_usage_error txt2img -m "$M" -p cat --backend metal
expect_usage_error txt2img -m "$M" -p cat --prediction x
expect_usage_error txt2img -m "$M" -p cat --sampler no-such-sampler
expect_usage_error txt2img -m "$M" -p cat -t -1
expect_usage_error txt2img -m "$M" -p cat --sampling-method no-such-sampler
expect_usage_error img2img -m "$M" -p cat                  # no -i
expect_usage_error img2img -m "$M" -i x.png                # no -p
for bad in 1.5 -0.1 abc nan ""; do
    expect_usage_error img2img -m "$M" -i x.png -p cat --strength "$bad"
done
expect_usage_error img2img -m "$M" -i x.png -p cat -W 64   # the size is the init image's
expect_usage_error img2img -m "$M" -i x.png -p cat --sampler no-such-sampler
expect_usage_error inpaint -m "$M" -i x.png -p cat                       # no --mask / --outpaint
expect_usage_error inpaint -m "$M" -i x.png -p cat --mask m.png --outpaint 8
for bad in abc 1,2 1,2,3,4,5 -8 8,-8,0,0 "" 99999; do
    expect_usage_error inpaint -m "$M" -i x.png -p cat --outpaint "$bad"
done
expect_usage_error inpaint -m "$M" -i x.png -p cat --mask m.png --fill blur
expect_usage_error inpaint -m "$M" -i x.png -p cat --mask m.png --mask-blur -1
# --device N: an index (-1 = the best device) that selects a Vulkan device, so not with --backend cpu.
for bad in -2 x 1.5 ''; do
    expect_usage_error txt2img -m "$M" -p cat --device "$bad"
done
expect_usage_error txt2img -m "$M" -p cat --backend cpu --device 0
expect_usage_error img2img -m "$M" -i x.png -p cat --backend cpu --device 0
expect_usage_error inpaint -m "$M" -i x.png -p cat --mask m.png --backend cpu --device 1
expect_usage_error upscale -m "$M" -i x.png --backend cpu --device 0
expect_usage_error info --backend cpu --device 0 "$M"

# --- failures after parsing: exit 1 -------------------------------------------------------------
# These parse, so they also prove the values above the error cases are accepted: the largest
# seed, a random seed, bundled and attached short options, --opt=value, case-insensitive choices.
OUT="$TMP/out.png"
expect_failure 'LDM_ERR_' txt2img -m "$M" -p cat --backend cpu --seed 18446744073709551615 -o "$OUT"
expect_failure 'LDM_ERR_' txt2img -m "$M" -p cat --backend cpu --seed -1 -W512 --height=768 \
    --scheduler Karras --rng CPU --cfg-scale 1 --eta 0.5 --clip-skip 2 -vv -o "$OUT"
expect_failure 'LDM_ERR_' info --backend cpu "$M"
# --device -1 (the default) and --backend cpu parse; an index past the devices is an error
# (LDM_ERR_BACKEND) when the context is made, before the model is looked at, in every build:
# a CPU-only build has no Vulkan devices at all. With --device the backend is Vulkan even
# when it was auto, so a bad index never falls back to the CPU quietly.
expect_failure 'LDM_ERR_' txt2img -m "$M" -p cat --backend cpu --device -1 -o "$OUT"
expect_failure 'LDM_ERR_BACKEND' txt2img -m "$M" -p cat --device 1024 -o "$OUT"
expect_failure 'LDM_ERR_BACKEND' info --device 1024 "$M"
# Vulkan devices present (a Vulkan build with a driver: CI's lavapipe): the message names the
# index and the count, and device 0 runs (below, with the model).
n_devices=0
if expect_status 0 --list-devices && grep -q '^0: ' "$TMP/out"; then
    n_devices=$(grep -c '^[0-9][0-9]*: ' "$TMP/out")
    expect_failure "device index $n_devices requested, $n_devices device(s) found" \
        txt2img -m "$M" -p cat --device "$n_devices" -o "$OUT"
fi
# Peer spellings parse: --sampling-method with an alias, every scheduler name.
for sch in discrete karras exponential simple sgm_uniform; do
    expect_failure 'LDM_ERR_' txt2img -m "$M" -p cat --backend cpu --sampling-method euler_a \
        --scheduler "$sch" -o "$OUT"
done
# img2img: an unreadable init image fails before the model is loaded.
expect_failure "$TMP/none.png" img2img -m "$M" -i "$TMP/none.png" -p cat --strength 0.5 -o "$OUT"
printf 'this is not a safetensors file' >"$TMP/garbage.safetensors"
expect_failure 'LDM_ERR_' info --backend cpu "$TMP/garbage.safetensors"
expect_failure 'LDM_ERR_' txt2img -m "$TMP/garbage.safetensors" -p cat --backend cpu -o "$OUT"
[ ! -e "$OUT" ] || fail "a failed run wrote $OUT"
# The output directory is checked before the (slow) model load.
expect_failure 'cannot write to directory' txt2img -m "$M" -p cat -o "$TMP/no/such/dir/x.png"

# --- end to end with a real (tiny) model ---------------------------------------------------------
file_has() { # FILE STRING: the bytes of FILE contain STRING
    grep -q -a -F -e "$2" "$1" || fail "$1 lacks '$2'"
}

# Ctrl-C during sampling: the run must stop by itself with 130 and write nothing. The job is
# started with SIGINT at its default (a background job of a script would inherit it ignored,
# which ldm respects), and it is polled rather than waited on, so a hang fails instead of
# blocking the suite.
# Its stderr goes to a file of its own that exists empty before the start: polling the shared
# $TMP/err raced with the child's truncation of it, found the previous command's "step" line and
# signalled before ldm had installed its handler (the signal was then ignored or fatal).
test_interrupt() {
    : >"$TMP/int.err"
    env --default-signal=INT "$LDM" txt2img -m "$MODEL" -p cat -W 32 -H 32 --steps 1000 \
        --backend cpu -o "$TMP/int.png" >"$TMP/out" 2>"$TMP/int.err" &
    pid=$!
    n=0
    while ! grep -q 'step ' "$TMP/int.err" && kill -0 "$pid" 2>/dev/null && [ $n -lt 120 ]; do
        sleep 1
        n=$((n + 1))
    done
    kill -INT "$pid" 2>/dev/null
    n=0
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 60 ]; do
        sleep 1
        n=$((n + 1))
    done
    cp "$TMP/int.err" "$TMP/err" # what fail() shows
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        fail "ldm did not stop within 60s of SIGINT"
    fi
    wait "$pid"
    status=$?
    [ "$status" -eq 130 ] || fail "SIGINT: exit $status, expected 130"
    grep -q '^ldm: interrupted' "$TMP/err" || fail "SIGINT: no 'ldm: interrupted' message"
    [ ! -e "$TMP/int.png" ] || fail "SIGINT: an image was written anyway"
}

if [ -n "$MODEL" ] && [ -f "$MODEL" ]; then
    if expect_status 0 info "$MODEL"; then
        stdout_has 'family:          sd1'
        stdout_has 'prediction:      eps (family default)'
        stdout_has 'latent channels: 4'
        stdout_has 'downscale:       8'
    fi

    G="$TMP/gen.png"
    if expect_status 0 txt2img -m "$MODEL" -p "a red cube" -n blurry -W 32 -H 32 --steps 1 \
        --seed 7 --batch-count 2 --backend cpu -t 2 -o "$G"; then
        grep -q -F "wrote $G (seed 7)" "$TMP/err" || fail "no 'wrote $G (seed 7)' on stderr"
        grep -q -F "wrote $TMP/gen_1.png (seed 8)" "$TMP/err" || fail "no gen_1.png (seed 8) line"
        grep -q 'step 1/1' "$TMP/err" || fail "no progress line on stderr"
        for f in "$G" "$TMP/gen_1.png"; do
            [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
                fail "$f is not a PNG"
        done
        file_has "$G" "a red cube
Negative prompt: blurry
Steps: 1, Sampler: euler, CFG scale: 7.5, Seed: 7, Size: 32x32, Model: sd1-tiny, RNG: cuda"
        file_has "$TMP/gen_1.png" "Seed: 8, Size: 32x32"
        file_has "$G" "libldm $VERSION"
    fi
    # Batch item i uses seed+i: the second image of seed 7 is byte-identical to seed 8 alone
    # (same pixels, same parameters text).
    if expect_status 0 txt2img -m "$MODEL" -p "a red cube" -n blurry -W 32 -H 32 --steps 1 \
        --seed 8 --backend cpu -t 2 -o "$TMP/eight.png"; then
        cmp -s "$TMP/gen_1.png" "$TMP/eight.png" || fail "batch item 1 of seed 7 differs from seed 8"
    fi
    # img2img from the first image: the output has its size, the PNG records the strength, and
    # batch item 1 of seed 7 equals seed 8 alone.
    if expect_status 0 img2img -m "$MODEL" -i "$G" -p "a blue cube" --strength 0.5 --steps 2 \
        --sampling-method euler_a --rng cpu --seed 7 --batch-count 2 --backend cpu -t 2 \
        -o "$TMP/i2i.png"; then
        grep -q 'step 1/1' "$TMP/err" || fail "img2img: no progress line for int(0.5 * 2) = 1 step"
        file_has "$TMP/i2i.png" "Steps: 2, Sampler: euler_ancestral, CFG scale: 7.5, Seed: 7, Size: 32x32, Model: sd1-tiny, Denoising strength: 0.5, RNG: cpu"
        if expect_status 0 img2img -m "$MODEL" -i "$G" -p "a blue cube" --strength 0.5 \
            --steps 2 --sampler euler_a --rng cpu --seed 8 --backend cpu -t 2 -o "$TMP/i2i8.png"; then
            cmp -s "$TMP/i2i_1.png" "$TMP/i2i8.png" || fail "img2img batch item 1 of seed 7 differs from seed 8"
        fi
    fi
    # inpaint: the image as its own mask (same size), and outpainting 32x32 by 32 pixels on the
    # left (the canvas grows to 64x64: multiples of 64); a mask of another size is refused.
    if expect_status 0 inpaint -m "$MODEL" -i "$G" --mask "$G" -p "a door" --steps 1 --seed 3 \
        --fill latent-noise --backend cpu -t 2 -o "$TMP/inp.png"; then
        file_has "$TMP/inp.png" "Steps: 1, Sampler: euler, CFG scale: 7.5, Seed: 3, Size: 32x32, Model: sd1-tiny, Denoising strength: 1, Mask blur: 4, RNG: cuda"
    fi
    if expect_status 0 inpaint -m "$MODEL" -i "$G" --outpaint 32,0,0,0 -p "a door" --steps 1 \
        --backend cpu -t 2 -o "$TMP/outp.png"; then
        file_has "$TMP/outp.png" "Size: 64x64"
        expect_failure 'same size' inpaint -m "$MODEL" -i "$G" --mask "$TMP/outp.png" -p x \
            --backend cpu -o "$TMP/never.png"
    fi
    # A random seed is reported, and recorded in the PNG.
    if expect_status 0 txt2img -m "$MODEL" -p cube -W 32 -H 32 --steps 1 --seed -1 \
        --backend cpu -o "$TMP/random.png"; then
        seed=$(sed -n 's/^ldm: wrote .* (seed \([0-9]*\))$/\1/p' "$TMP/err")
        [ -n "$seed" ] || fail "--seed -1: no seed reported"
        [ -z "$seed" ] || file_has "$TMP/random.png" "Seed: $seed,"
    fi
    # upscale reads its input first: with a real PNG, a bad --device fails at the context.
    [ ! -s "$G" ] || expect_failure 'LDM_ERR_BACKEND' upscale -m "$M" -i "$G" --backend vulkan \
        --device=1024 -o "$TMP/never.png"
    # --device 0 on the first Vulkan device (lavapipe in CI) generates, on Vulkan.
    if [ "$n_devices" -gt 0 ]; then
        if expect_status 0 txt2img -m "$MODEL" -p "a red cube" -W 32 -H 32 --steps 1 --seed 7 \
            --device 0 -v -o "$TMP/dev0.png"; then
            grep -q 'using the Vulkan device' "$TMP/err" || fail "--device 0: no 'using the Vulkan device' line"
            grep -q '(sd1) in .* on vulkan$' "$TMP/err" || fail "--device 0: the model was not loaded on vulkan"
            [ -s "$TMP/dev0.png" ] || fail "--device 0: no image written"
        fi
    else
        echo "SKIP: --device 0 run (no Vulkan device)"
    fi
    if env --default-signal=INT true 2>/dev/null; then
        test_interrupt
    else
        echo "SKIP: Ctrl-C test (env --default-signal unsupported)"
    fi
else
    echo "SKIP: end-to-end tests (no model at '${MODEL}')"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "cli: all checks passed"

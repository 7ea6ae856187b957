#!/bin/sh
# Runs bench-sd on a full-size random-weight SD 1.5 checkpoint, then (when the CLI is built) one
# short end-to-end `ldm txt2img` under /usr/bin/time -v. See bench/README.md.
#
# usage: bench/run_bench.sh [--shared DIR] [--out DIR] [--model FILE] [--build DIR]
#                           [--cli PATH|--no-cli] [-- BENCH_SD_ARGS...]
#   --shared DIR  the shared data dir (default: <repo>/../shared)
#   --out DIR     where the checkpoint and the logs go (default: ${TMPDIR:-/tmp}/ldm-bench);
#                 the checkpoint (2.1 GB) is made there once and reused. Never inside the repo.
#   --model FILE  the checkpoint to use (default: OUT/sd15_rand_f16.safetensors; made if missing)
#   --build DIR   meson build dir (default: <repo>/build-bench; set up and built when needed)
#   --cli PATH    the ldm CLI to time (default: <build>/examples/ldm, then <repo>/build/examples/ldm)
#   --no-cli      skip the end-to-end CLI run
#   after --      arguments for bench-sd, e.g. -- --sizes 256 --threads 2
# The environment passes through: OpenBLAS 0.3.21 does not recognise some recent Xeons and falls
# back to its SSE3 "Prescott" kernels (bench-sd prints a warning); compare with
#   OPENBLAS_CORETYPE=SkylakeX bench/run_bench.sh --out /tmp/ldm-bench/skx --model /tmp/ldm-bench/sd15_rand_f16.safetensors
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
shared="$repo/../shared"
out="${TMPDIR:-/tmp}/ldm-bench"
build="$repo/build-bench"
model=""
cli=""
run_cli=1

while [ $# -gt 0 ]; do
    case "$1" in
        --shared) shared="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        --build) build="$2"; shift 2 ;;
        --cli) cli="$2"; shift 2 ;;
        --no-cli) run_cli=0; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

mkdir -p "$out"
[ -n "$model" ] || model="$out/sd15_rand_f16.safetensors"

# 1. The checkpoint: the real SD 1.5 layout (1143 tensors), random F16 weights, seed 0.
if [ ! -s "$model" ]; then
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    if ! "$py" -c 'import numpy' 2>/dev/null; then
        echo "run_bench.sh: $py lacks numpy (apt-get install -y python3-numpy)" >&2
        exit 1
    fi
    echo "== making $model (about 2.1 GB, 20-30 s)"
    "$py" "$shared/tools/make_random_checkpoint.py" "$shared/manifests/sd15.json" "$model.part" --dtype f16 --seed 0
    mv "$model.part" "$model"
fi

# 2. Build (one job: the machine is shared).
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$repo"
fi
ninja -C "$build" -j1 bench/bench-sd
if [ "$run_cli" = 1 ] && [ -z "$cli" ]; then
    ninja -C "$build" -j1 examples/ldm >/dev/null 2>&1 || true
fi

# 3. The benchmark.
echo "== bench-sd $model $*"
{
    rc=0
    "$build/bench/bench-sd" "$model" "$@" || rc=$?
    echo "$rc" >"$out/bench-sd.rc"
} | tee "$out/bench-sd.txt"
status=$(cat "$out/bench-sd.rc")

# 4. End to end through the CLI, when it exists.
if [ "$run_cli" = 1 ]; then
    if [ -z "$cli" ]; then
        for c in "$build/examples/ldm" "$repo/build/examples/ldm"; do
            if [ -x "$c" ]; then cli="$c"; break; fi
        done
    fi
    if [ -n "$cli" ] && [ -x "$cli" ]; then
        echo
        echo "== end to end: $cli txt2img -m MODEL -p \"a photo\" -W 256 -H 256 --steps 2 -o $out/x.png"
        if /usr/bin/time -v "$cli" txt2img -m "$model" -p "a photo" -W 256 -H 256 --steps 2 -o "$out/x.png" \
            >"$out/cli.out" 2>"$out/cli.time"; then
            echo "exit status 0"
        else
            echo "exit status $? (output below)"
            tail -n 5 "$out/cli.out"
        fi
        grep -E "Elapsed \(wall clock\)|Maximum resident set size|User time|System time|Percent of CPU" "$out/cli.time" |
            sed 's/^[[:space:]]*/  /'
        grep -v -E "^[[:space:]]" "$out/cli.time" | tail -n 5 || true
    else
        echo "== no ldm CLI built (examples/ldm); end-to-end run skipped"
    fi
fi
exit "$status"

#!/usr/bin/env bash
# The engine's GPU checks, prepared here and run in one call on a lent CUDA machine (about 8 minutes).
#
#   bash bench/gpu.sh prepare    # here: the lab's Python dependencies as wheels in .whl/, MNIST in .gpu-data/
#   bash bench/gpu.sh run        # there, with .whl and .gpu-data carried: everything below, output in $OUT
#
# The CUDA machine brings its own CUDA build of PyTorch (its python3); `run` installs the lab's other
# dependencies from the wheels beside it (never replacing torch or numpy), then:
#   1. the CUDA tests: every test that skips without a CUDA device (engine, export, batched ≡ solo);
#   2. bench.engine: MNIST-FC fastfood, linear and RFF, d = 100, 300, 750, 1000, batch 128 and 32;
#   3. bench.sweep: li-mnist-fc's 21 runs × 1 epoch of 60,000 in one process, serial against batched (K = 21),
#      whose per-epoch wall time × 100 projects the 100-epoch sweep on one GPU;
#   4. bench.worker_sweep: the same 21 runs through a real worker, K = 1 against K = 21.
# Each step has its own time limit, so a slow one cannot take the others' time; all output is in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    python3 - <<'PY'
import subprocess, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
skip = ("torch", "numpy")   # the CUDA machine's own
wanted = [r for r in project["dependencies"] + project["optional-dependencies"]["server"]
          + ["pytest>=8", "pytest-timeout>=2.2", "httpx>=0.27"] if not r.startswith(skip)]
platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28, 31, 34)] + ["--platform=manylinux2014_x86_64"]
subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version", "3.12",
                "--implementation", "cp", *platforms, "-d", ".whl", *wanted], check=True)
PY
    rm -f .whl/numpy-*.whl .whl/torch-*.whl
    mkdir -p .gpu-data/MNIST/raw
    cp "${IDLAB_DATA_DIR:-../shared/data}"/MNIST/raw/*.gz .gpu-data/MNIST/raw/
    du -sh .whl .gpu-data    # both ignored by git (.gitignore); the device call carries them
}

step() {   # step NAME SECONDS COMMAND...: one check, its output in $OUT/NAME.log
    local name=$1 seconds=$2
    shift 2
    echo "== $name ($(date +%T), at most ${seconds} s)"
    timeout "$seconds" "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? after $SECONDS s in all"
    tail -n 25 "$OUT/$name.log"
}

run() {
    : "${OUT:?run on the CUDA machine, where \$OUT is set}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:$PWD" IDLAB_DATA_DIR="$PWD/.gpu-data" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
    step cuda-tests 120 python3 -m pytest -q -p no:cacheprovider -o addopts="" -rs \
        tests/engine/test_export.py tests/engine/test_projection.py tests/engine/test_training.py \
        tests/engine/test_batched.py -k "cuda or device"
    for b in 128 32; do
        step "engine-b$b" 90 python3 -m bench.engine --models fc --projections fastfood --augmentations linear rff \
            --ds 100 300 750 1000 --device cuda --seconds 1 --batch-size "$b" --json
    done
    step sweep 120 python3 -m bench.sweep --device cuda --epochs 1 --train-size 60000 --test-size 10000 --k 21 --json
    step worker-sweep 150 python3 -m bench.worker_sweep --device cuda --batch-runs 1 21 --epochs 1 \
        --train-size 60000 --test-size 10000 --json
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash bench/gpu.sh prepare|run" >&2; exit 2 ;;
esac

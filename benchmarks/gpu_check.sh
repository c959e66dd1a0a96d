#!/usr/bin/env bash
# Everything GPU-related in one run, on a machine with a CUDA GPU, from the project's root:
#
#   benchmarks/gpu_check.sh [DATA_DIR] [LOG_DIR] [SECONDS]
#   PARTS="test_gpu performance" benchmarks/gpu_check.sh ...   # only these parts
#
# DATA_DIR defaults to ../shared/data/cats_vs_dogs (where the slow tests look too), LOG_DIR to gpu_check/.
# In order, each part bounded so that the whole ends within SECONDS (default 480): the GPU, the GPU tests
# (tests/test_gpu.py), the benchmark table (benchmarks/performance.py, which then times everything on the GPU),
# a 5-epoch fit under Lightning's simple profiler, the fast test suite, torch.compile's train step, the slow
# suite. Logs go to LOG_DIR.
set -u
DATA=${1:-../shared/data/cats_vs_dogs}
LOGS=${2:-gpu_check}
BUDGET=${3:-480}
PARTS=${PARTS:-test_gpu performance profile tests_fast compile tests_slow}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1

left() { echo $((BUDGET - SECONDS)); }
part() {  # part NAME SECONDS COMMAND...: run COMMAND for at most SECONDS (or what is left), log to LOG_DIR/NAME
    local name=$1 limit=$2
    shift 2
    [[ " $PARTS " == *" $name "* ]] || return
    ((limit > $(left))) && limit=$(left)
    if ((limit < 10)); then
        echo "== $name: skipped, out of time"
        return
    fi
    echo "== $name (at most ${limit} s)"
    local start=$SECONDS
    timeout -s KILL "$limit" "$@" >"$LOGS/$name.log" 2>&1  # KILL: Lightning catches SIGTERM and carries on
    echo "   exit $?, $((SECONDS - start)) s"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    nproc
    python -c "import sys, torch, lightning, torchvision, torchmetrics; print(sys.version.split()[0], 'torch', \
torch.__version__, 'lightning', lightning.__version__, 'torchvision', torchvision.__version__, 'torchmetrics', \
torchmetrics.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())"
    echo "data: $(find "$DATA/" -name '*.jpg' | wc -l) photos in $DATA"
    TIMEFORMAT="python -c 'import catdog_pl.cli': %R s"
    time python -c "import catdog_pl.cli"
} 2>&1 | tee "$LOGS/machine.txt"

# The GPU tests, and the CPU-written ones whose devices matter: predict, and the console script.
part test_gpu 90 python -m pytest tests/test_gpu.py tests/test_prediction.py tests/test_cli.py -k "gpu or predict or help" \
    -q -rs -p no:cacheprovider
tail -n 3 "$LOGS/test_gpu.log" 2>/dev/null
# Two runs of each loop in fresh processes, not four: each pays ~11 s of imports there. Rows print as measured.
part performance 270 python benchmarks/performance.py --data_dir "$DATA" --repeats 2
grep '^|' "$LOGS/performance.log" 2>/dev/null
part profile 60 python -m catdog_pl fit --config configs/cnn.yaml --data.data_dir "$DATA" --trainer.max_epochs 5 \
    --trainer.profiler simple --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir "$(mktemp -d)"
sed -n '/Profiler Report/,$p' "$LOGS/profile.log" 2>/dev/null | grep '^|' | head -n 30  # sorted by total time
part tests_fast 150 python -m pytest -q -p no:cacheprovider
tail -n 5 "$LOGS/tests_fast.log" 2>/dev/null
part compile 90 python benchmarks/performance.py --data_dir "$DATA" --sections step --compile
grep '^|' "$LOGS/compile.log" 2>/dev/null
part tests_slow 300 python -m pytest -m slow -q -p no:cacheprovider
tail -n 5 "$LOGS/tests_slow.log" 2>/dev/null

#!/usr/bin/env bash
# Everything GPU-related in one run, on a machine with a CUDA GPU, from the project's root:
#
#   benchmarks/gpu_check.sh [DATA_DIR] [LOG_DIR] [SECONDS]
#   PARTS="test_gpu performance" benchmarks/gpu_check.sh ...   # only these parts
#
# DATA_DIR defaults to ../shared/data/cats_vs_dogs (where the slow tests look too), LOG_DIR to gpu_check/.
# In order, each part bounded so that the whole ends within SECONDS (default 480): the GPU, the GPU tests
# (tests/test_gpu.py), the benchmark table (benchmarks/performance.py: data, step, eval on the GPU and the fit of
# configs/cnn.yaml for 3 seeds; denormals is a CPU section and skips itself), a 5-epoch fit under Lightning's simple
# profiler, the fast test suite, torch.compile's train step, each config's fit and accuracy (benchmarks/models.py),
# the slow suite. Logs go to LOG_DIR, with a copy of the results CSV the benchmarks wrote
# (benchmarks/results/<machine>.csv, e.g. gpu-nvidia-h200.csv). benchmarks/compare_fit.py is not run here: it needs
# the git history for its worktree.
set -u
DATA=${1:-../shared/data/cats_vs_dogs}
LOGS=${2:-gpu_check}
BUDGET=${3:-480}
PARTS=${PARTS:-test_gpu performance profile tests_fast compile models tests_slow}
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
# Rows print as measured and are written to the results CSV at once, so a part cut short keeps its rows.
part performance 240 python benchmarks/performance.py --data_dir "$DATA"
grep '^|' "$LOGS/performance.log" 2>/dev/null
part profile 60 python -m catdog_pl fit --config configs/cnn.yaml --data.data_dir "$DATA" --trainer.max_epochs 5 \
    --trainer.profiler simple --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir "$(mktemp -d)"
sed -n '/Profiler Report/,$p' "$LOGS/profile.log" 2>/dev/null | grep '^|' | head -n 30  # sorted by total time
part tests_fast 150 python -m pytest -q -p no:cacheprovider
tail -n 5 "$LOGS/tests_fast.log" 2>/dev/null
part compile 90 python benchmarks/performance.py --data_dir "$DATA" --sections step --compile
grep '^|' "$LOGS/compile.log" 2>/dev/null
part models 150 python benchmarks/models.py --data_dir "$DATA"
grep '^|\|skipped' "$LOGS/models.log" 2>/dev/null | tail -n 8
part tests_slow 300 python -m pytest -m slow -n 0 -q -p no:cacheprovider
tail -n 5 "$LOGS/tests_slow.log" 2>/dev/null
cp benchmarks/results/*.csv "$LOGS/" 2>/dev/null

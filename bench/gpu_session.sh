#!/usr/bin/env bash
# One lent GPU's 15 minutes in one prepared call (issues 20, 21, 23), in the order of value:
# what limits an update there, the training speed at more games per update, seeds side by side,
# learning per env step of the GPU recipe against the default's, then the longest 20x20 run the
# time left allows (stopped with Ctrl-C, which keeps a checkpoint) and its evaluation.
#
#   bash bench/gpu_session.sh                    # on the device machine; logs under $OUT
#   SMOKE=1 OUT=/tmp/gpu bash bench/gpu_session.sh   # on a CPU: every stage, tiny budgets
#
# Each stage has its own time limit, so a slow stage costs itself, not the session; every log is
# written under $OUT (it comes back) and its last lines are printed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
RUNS=$(mktemp -d)  # checkpoints stay on the machine: only the logs come back
BUDGET_S=${BUDGET_S:-540}  # the whole script: one device call runs at most 600 s
if [[ -n "${SMOKE:-}" ]]; then
  LEARN_STEPS=131072 BIG_ENVS=64 SEEDS="1 2" EPISODES=20 ROUNDS=1
else
  LEARN_STEPS=10000000 BIG_ENVS=4096 SEEDS="1 4 16" EPISODES=1000 ROUNDS=3
fi

stage() {  # stage NAME LIMIT_S COMMAND...: run it, log it, show its end
  local name=$1 limit=$2
  shift 2
  echo "== $(date +%T) $name (limit ${limit} s): $*" | tee -a "$OUT/stages.txt"
  timeout -s INT -k 30 "$limit" "$@" >"$OUT/$name.txt" 2>&1
  echo "   exit $?" | tee -a "$OUT/stages.txt"
  tail -n 15 "$OUT/$name.txt"
}

{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
  python -c "import jax; print('jax', jax.__version__, jax.devices())"; } | tee "$OUT/machine.txt"

stage breakdown 45 python -m bench.update_breakdown --rounds "$ROUNDS"
stage train_speed 90 python -m bench.bench_train --only "default (Muon)" "Adam" \
  --case "NUM_ENVS=$BIG_ENVS" --case "NUM_ENVS=$BIG_ENVS NUM_MINIBATCHES=32" --rounds "$ROUNDS"
stage seed_scaling 75 python -m bench.seed_scaling --seeds $SEEDS --rounds "$ROUNDS"
for envs in 256 "$BIG_ENVS"; do  # the same env steps: does the GPU recipe learn as much?
  stage "learn_envs_$envs" 45 python train_snake_purejaxrl.py --num-envs "$envs" \
    --total-timesteps "$LEARN_STEPS" --checkpoint-dir "$RUNS/envs_$envs" --quiet
  stage "eval_envs_$envs" 30 python train_snake_purejaxrl.py --eval "$RUNS/envs_$envs" \
    --eval-episodes "$EPISODES"
done
# 20x20: what the budget leaves (45 s kept for its evaluation); Ctrl-C at the limit keeps the last
# chunk's checkpoint (chunks of 10 updates, so the stop comes soon). The 20x20 line's flags but the
# kept mean, which needs a known length.
G20_S=$((BUDGET_S - SECONDS - 45))
((G20_S < 30)) && G20_S=30
stage learn_20x20 "$G20_S" python train_snake_purejaxrl.py --grid-size 20 \
  --hunger --starvation-is-death --num-envs "$BIG_ENVS" --total-timesteps 2000000000 \
  --checkpoint-every 10 --checkpoint-dir "$RUNS/g20" --metrics-out "$OUT/g20_rows.jsonl" --quiet
stage eval_20x20 45 python train_snake_purejaxrl.py --eval "$RUNS/g20" --eval-episodes "$EPISODES"

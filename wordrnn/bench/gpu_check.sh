#!/usr/bin/env bash
# The GPU check: the parity suite (both contexts), two training epochs of PyTorch and JAX in each context,
# bench.speed at both sizes and contexts, and the poem-context scaling sweep (streams up to 1,024, H up to 1,024;
# float32, TF32 off), the poem context at few and many streams and mingru's parallel scan beside the LSTM and GRU
# (chunks of 35 and 256), all on one NVIDIA GPU, each step under a time limit (10.5 minutes in all); one JSON
# ($OUT/gpu_check.json), one log ($OUT/gpu_check.log) and the sweep's picture ($OUT/scaling_gpu.png and .json).
#
#   PYTHONPATH=. OUT=/some/dir bash wordrnn/bench/gpu_check.sh            # on the GPU machine
#   PYTHONPATH=. OUT=/tmp/dry bash wordrnn/bench/gpu_check.sh --device cpu  # dry run: the same steps, CPU, small sizes
#
# It needs no network and no corpus: the corpora are the seeded synthetic ones (wordrnn.bench.synthetic), written
# to a temporary folder. A step that fails or runs out of time is recorded (its exit status, 124 for a timeout)
# and the next one runs; the script's own status is 0 when every step passed.
set -u

DEVICE=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="${2:?--device takes cuda or cpu}"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1; use --device cuda|cpu" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in
  cuda) ACCELERATOR=gpu ;;
  cpu) ACCELERATOR=cpu ;;
  *) echo "error: --device takes cuda or cpu, got $DEVICE" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/wordrnn_gpu_check.XXXXXX)"
LOG="$OUT/gpu_check.log"
STEPS="$WORK/steps.jsonl"
: > "$LOG"
: > "$STEPS"

if [ "$DEVICE" = cuda ]; then
  # the user's size, and a corpus shaped like the benchmark's (poems-100: about 1,800 words, 30k windows)
  LARGE=(--large-vocab 16000 --large-tokens 500000)
  BENCH_CORPUS=(--vocab-size 1900 --train-tokens 33000)
  EPOCH_CORPUS=(--vocab-size 16000 --train-tokens 200000)
  SPEED_BENCHMARK=(--steps 10 --tokens 50 --repeats 3 --context both)
  SPEED_LARGE=(--steps 5 --tokens 30 --repeats 3 --context both)
  PARITY=()
  SCALING=(--impls torch,jax --steps 2 --repeats 3 --precision float32)  # NumPy: minutes on the host per point
  # seconds for: machine, corpora, parity, torch epochs, jax epochs, torch poem epochs, jax poem epochs,
  # speed benchmark, speed large, scaling (sum 480: the 8 minutes)
  LIMITS=(15 20 100 35 35 30 30 65 65 85)
else
  LARGE=(--large-vocab 400 --large-tokens 8000)
  BENCH_CORPUS=(--vocab-size 200 --train-tokens 4000)
  EPOCH_CORPUS=(--vocab-size 300 --train-tokens 6000)
  SPEED_BENCHMARK=(--steps 2 --tokens 5 --repeats 1 --cells rnn --context both)
  SPEED_LARGE=("${SPEED_BENCHMARK[@]}")
  PARITY=(--cells rnn)
  SCALING=(--impls torch,jax --vocab-size 300 --streams 8,16 --hidden 16,32 --batch-size 8 --hidden-size 16
           --bptt 5 --steps 1 --repeats 1 --precision float32)
  LIMITS=(60 60 300 120 120 120 120 300 300 300)
fi
# Many streams and mingru's parallel scan (bench.speed, poem context, large size: real epochs' chunks, poems starting
# inside them): PyTorch and JAX at few and many streams; mingru (--linear-scan parallel, and sequential for the
# comparison) beside the LSTM and GRU at chunk lengths 35 and 256.
if [ "$DEVICE" = cuda ]; then
  SCAN_SIZE=("${LARGE[@]}" --steps 3 --tokens 10 --repeats 3)
  STREAMS_FEW=32 STREAMS_MANY=1024 CHUNK_SHORT=35 CHUNK_LONG=256
  # seconds for: few streams, many streams, chunk 35, chunk 256 parallel, chunk 256 sequential (sum 150)
  SCAN_LIMITS=(25 40 25 35 25)
else
  SCAN_SIZE=("${LARGE[@]}" --steps 1 --tokens 5 --repeats 1)
  STREAMS_FEW=4 STREAMS_MANY=16 CHUNK_SHORT=5 CHUNK_LONG=16
  SCAN_LIMITS=(120 120 120 120 120)
fi
# JAX would otherwise take most of the GPU's memory at start, leaving PyTorch (same process in bench.speed) little
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# step NAME LIMIT COMMAND...: run it under `timeout`, its output to the log, one line of record to $STEPS
step() {
  local name="$1" limit="$2"
  shift 2
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local started rc ms
  started=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.out" 2>&1
  rc=$?
  cat "$WORK/$name.out" >> "$LOG"
  ms=$(( ($(date +%s%N) - started) / 1000000 ))
  echo "=== $name: exit $rc after ${ms} ms" | tee -a "$LOG"
  "$PYTHON" -c 'import json, sys; print(json.dumps({"name": sys.argv[1], "rc": int(sys.argv[2]),
"seconds": int(sys.argv[3]) / 1e3, "command": sys.argv[4:]}))' "$name" "$rc" "$ms" "$@" >> "$STEPS"
}

step machine "${LIMITS[0]}" bash -c 'nvidia-smi || true; '"$PYTHON"' -c "import jax, torch; print(jax.devices(), torch.cuda.is_available())"'
step corpora "${LIMITS[1]}" bash -c "$PYTHON -m wordrnn.bench.synthetic $WORK/benchmark.txt ${BENCH_CORPUS[*]} &&
                         $PYTHON -m wordrnn.bench.synthetic $WORK/large.txt ${EPOCH_CORPUS[*]}"
step parity "${LIMITS[2]}" "$PYTHON" -m wordrnn.bench.parity --device "$DEVICE" ${PARITY[@]+"${PARITY[@]}"}
step torch_epochs "${LIMITS[3]}" "$PYTHON" -m torchmodels.train --data "$WORK/large.txt" --epochs 2 \
  --device "$DEVICE" --threads 1 --out "$WORK/runs/torch" --quiet
step jax_epochs "${LIMITS[4]}" "$PYTHON" -m jaxmodels.train --data "$WORK/large.txt" --epochs 2 \
  --accelerator "$ACCELERATOR" --threads 1 --out "$WORK/runs/jax" --quiet
step torch_poem_epochs "${LIMITS[5]}" "$PYTHON" -m torchmodels.train --data "$WORK/large.txt" --epochs 2 \
  --context poem --device "$DEVICE" --threads 1 --out "$WORK/runs/torch_poem" --quiet
step jax_poem_epochs "${LIMITS[6]}" "$PYTHON" -m jaxmodels.train --data "$WORK/large.txt" --epochs 2 \
  --context poem --accelerator "$ACCELERATOR" --threads 1 --out "$WORK/runs/jax_poem" --quiet
step speed_benchmark "${LIMITS[7]}" "$PYTHON" -m wordrnn.bench.speed --size benchmark --data "$WORK/benchmark.txt" \
  --min-freq 1 --device "$DEVICE" "${SPEED_BENCHMARK[@]}" --json "$WORK/speed_benchmark.json"
step speed_large "${LIMITS[8]}" "$PYTHON" -m wordrnn.bench.speed --size large "${LARGE[@]}" --device "$DEVICE" \
  "${SPEED_LARGE[@]}" --json "$WORK/speed_large.json"
step scaling "${LIMITS[9]}" "$PYTHON" -m wordrnn.bench.scaling --device "$DEVICE" "${SCALING[@]}" \
  --out "$OUT/scaling_${ACCELERATOR}.png"

POEM_SPEED=(--size large --context poem --models embedding --device "$DEVICE" "${SCAN_SIZE[@]}")
step streams_few "${SCAN_LIMITS[0]}" "$PYTHON" -m wordrnn.bench.speed "${POEM_SPEED[@]}" --impls torch,jax \
  --cells lstm --batch-size "$STREAMS_FEW" --json "$WORK/streams_few.json"
step streams_many "${SCAN_LIMITS[1]}" "$PYTHON" -m wordrnn.bench.speed "${POEM_SPEED[@]}" --impls torch,jax \
  --cells lstm --batch-size "$STREAMS_MANY" --json "$WORK/streams_many.json"
step scan_short "${SCAN_LIMITS[2]}" "$PYTHON" -m wordrnn.bench.speed "${POEM_SPEED[@]}" --impls torch,jax \
  --cells mingru,lstm,gru --bptt "$CHUNK_SHORT" --linear-scan parallel --json "$WORK/scan_short.json"
step scan_long "${SCAN_LIMITS[3]}" "$PYTHON" -m wordrnn.bench.speed "${POEM_SPEED[@]}" --impls torch,jax \
  --cells mingru,lstm,gru --bptt "$CHUNK_LONG" --linear-scan parallel --json "$WORK/scan_long.json"
step scan_long_sequential "${SCAN_LIMITS[4]}" "$PYTHON" -m wordrnn.bench.speed "${POEM_SPEED[@]}" --impls jax \
  --cells mingru --bptt "$CHUNK_LONG" --linear-scan sequential --json "$WORK/scan_long_sequential.json"

# -- bfloat16 (--precision bfloat16): its own block. Two poem epochs of each framework in bfloat16 (the run's
# metrics beside the float32 runs'), bench.speed's large size in both precisions side by side (each row against its
# precision's product peak, peak memory beside tokens/s), and the scaling sweep in bfloat16 (its own picture).
if [ "$DEVICE" = cuda ]; then
  BF16_SPEED=(--steps 5 --repeats 3 --models embedding --cells lstm,gru)
  BF16_SCALING=(--impls torch,jax --steps 2 --repeats 3)
  BF16_LIMITS=(35 35 90 90)  # torch epochs, jax epochs, speed, scaling
else
  BF16_SPEED=(--steps 1 --repeats 1 --models embedding --cells lstm)
  BF16_SCALING=("${SCALING[@]/float32/bfloat16}")
  BF16_LIMITS=(120 120 300 300)
fi
step torch_bf16_poem_epochs "${BF16_LIMITS[0]}" "$PYTHON" -m torchmodels.train --data "$WORK/large.txt" --epochs 2 \
  --context poem --precision bfloat16 --device "$DEVICE" --threads 1 --out "$WORK/runs/torch_bf16_poem" --quiet
step jax_bf16_poem_epochs "${BF16_LIMITS[1]}" "$PYTHON" -m jaxmodels.train --data "$WORK/large.txt" --epochs 2 \
  --context poem --precision bfloat16 --accelerator "$ACCELERATOR" --threads 1 --out "$WORK/runs/jax_bf16_poem" --quiet
step speed_bf16 "${BF16_LIMITS[2]}" "$PYTHON" -m wordrnn.bench.speed --size large "${LARGE[@]}" --context poem \
  --impls torch,jax --precision both --device "$DEVICE" "${BF16_SPEED[@]}" --json "$WORK/speed_bf16.json"
step scaling_bf16 "${BF16_LIMITS[3]}" "$PYTHON" -m wordrnn.bench.scaling --device "$DEVICE" "${BF16_SCALING[@]}" \
  --precision bfloat16 --out "$OUT/scaling_bf16_${ACCELERATOR}.png"

# one JSON: every step's record and the end of its output, the epochs' metrics, both speed results (whatever
# finished)
"$PYTHON" - "$WORK" "$OUT/gpu_check.json" "$DEVICE" <<'EOF'
import json, sys
from pathlib import Path

work, out, device = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]


def read_json(path):
    return json.loads(path.read_text()) if path.is_file() else None


steps = [json.loads(line) for line in (work / "steps.jsonl").read_text().splitlines() if line.strip()]
for s in steps:  # the end of each step's output (the parity table, an error message)
    output = work / f"{s['name']}.out"
    s["output_tail"] = output.read_text(errors="replace")[-4000:] if output.is_file() else ""
epochs = {}
for run in ("torch", "jax", "torch_poem", "jax_poem", "torch_bf16_poem", "jax_bf16_poem"):
    metrics = work / "runs" / run / "metrics.jsonl"
    epochs[run] = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()] if metrics.is_file() else None
doc = {
    "device": device,
    "passed": all(s["rc"] == 0 for s in steps),
    "steps": steps,
    "epochs": epochs,
    "speed": {"benchmark": read_json(work / "speed_benchmark.json"), "large": read_json(work / "speed_large.json"),
              "bfloat16": read_json(work / "speed_bf16.json")},
    "scaling": {path.stem: read_json(path) for path in sorted(out.parent.glob("scaling_*.json"))},
    "many_streams": {k: read_json(work / f"streams_{k}.json") for k in ("few", "many")},
    "linear_scan": {k: read_json(work / f"scan_{k}.json") for k in ("short", "long", "long_sequential")},
}
tmp = out.with_suffix(".json.tmp")
tmp.write_text(json.dumps(doc, indent=2) + "\n")
tmp.replace(out)
print(f"wrote {out}: " + ", ".join(f"{s['name']} {'ok' if s['rc'] == 0 else 'exit ' + str(s['rc'])}" for s in steps))
sys.exit(0 if doc["passed"] else 1)
EOF

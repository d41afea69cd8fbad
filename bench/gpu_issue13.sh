#!/usr/bin/env bash
# Issue 13 item 3 on one GPU, as one command (not run yet: no GPU was lent when it was written):
#
#     bash bench/gpu_issue13.sh [OUT]          # OUT defaults to gpu_results/; logs go there
#
# PARTS="train vs" (the default) picks the parts; STEPS (default 30) the train.py steps; VS_ARGS extra arguments
# of vs_transformers.py, e.g. VS_ARGS="--families deepseek_v2 --repeats 5". Everything takes longer than one
# 10-minute call: run PARTS=train first, then PARTS=vs one family at a time.
#
# 1. The generated train.py, bf16 autocast, --compile, on DeepSeek-V2-Lite (real widths and expert counts,
#    3 of 27 layers: 1.67B parameters, 16 bytes each of fp32 weights, gradients and AdamW state = 25 GiB) and
#    Mixtral-8x7B (2 of 32 layers: 3.1B parameters, 47 GiB): tokens/s and MFU as the trainer prints them
#    (FLOPs per token from moezoo's accounting). Needs only torch where gpu_builds/ was made beforehand with
#    moezoo (the script builds it when moezoo is importable).
# 2. bench/vs_transformers.py --gpu: the same kind of model from transformers and from moezoo, same weights,
#    interleaved train step / prefill / cached decode in bf16 autocast, with MFU. Needs moezoo and transformers
#    (pip install -e '.[test]'); skipped with a note when transformers is missing.
# Both sides of step 2 are resident at once (about 50 GiB for the DeepSeek-V2-Lite family): an 80 GiB H100
# fits each family alone; on a smaller GPU pass fewer --families or a smaller --batch via VS_ARGS.
set -u
out=${1:-gpu_results}
steps=${STEPS:-30}
parts=${PARTS:-train vs}
runs=${RUNS:-/tmp/gpu_runs}  # train.py checkpoints (up to 37 GiB for Mixtral): outside OUT, deleted after each run
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"

if [ ! -d gpu_builds ] && python -c "import moezoo" 2>/dev/null; then
    python -m moezoo.cli build deepseek_v2_lite --set num_layers=3 -o gpu_builds
    python -m moezoo.cli build mixtral_8x7b --set num_layers=2 -o gpu_builds
fi
for name in deepseek_v2_lite mixtral_8x7b; do
    case " $parts " in *" train "*) ;; *) break ;; esac
    if [ -f "gpu_builds/$name/train.py" ]; then
        for mode in "" "--compile"; do
            echo "== train.py $name $mode" | tee -a "$out/train.txt"
            python "gpu_builds/$name/train.py" --device cuda --dtype bfloat16 $mode --batch-size 4 --seq-len 2048 \
                --steps "$steps" --eval-every 0 --ckpt-every 0 --no-progress --out "$runs/$name$mode" \
                2>&1 | tail -n 15 | tee -a "$out/train.txt"
            cp "$runs/$name$mode/metrics.csv" "$out/metrics_${name}${mode:+_compiled}.csv" 2>/dev/null
            rm -rf "$runs/$name$mode"
        done
    else
        echo "gpu_builds/$name missing: run 'moezoo build $name --set num_layers=N -o gpu_builds' where moezoo is installed" | tee -a "$out/train.txt"
    fi
done

case " $parts " in *" vs "*) ;; *) exit 0 ;; esac
if python -c "import transformers, moezoo" 2>/dev/null; then
    python bench/vs_transformers.py --gpu ${VS_ARGS:-} 2>&1 | tee "$out/vs_transformers_gpu.txt"
    python bench/vs_transformers.py --gpu --compile --works train,prefill --no-memory ${VS_ARGS:-} 2>&1 \
        | tee "$out/vs_transformers_gpu_compile.txt"
else
    echo "transformers or moezoo not importable: bench/vs_transformers.py --gpu skipped" | tee "$out/vs_transformers_gpu.txt"
fi

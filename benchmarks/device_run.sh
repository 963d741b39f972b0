#!/usr/bin/env bash
# Issue 18's GPU work in three back-to-back `run` calls of the device tool (a machine goes
# back after 30 s idle, so fire each call as soon as the previous one returns). Prepare here
# first (see benchmarks/pack_for_device.py):
#   python benchmarks/pack_for_device.py wheels
#   python benchmarks/pack_for_device.py data ../shared/data/brain_tumor_mri brain
#   python benchmarks/pack_for_device.py data ../shared/data/chest_xray_224 chest --side 232
# then, each call with its own carry (64 MiB per call, the 7 MB tree included):
#   1. carry [".device/wheels"]  command: bash benchmarks/device_run.sh setup   (~2 min)
#   2. carry [".device/brain"]   command: bash benchmarks/device_run.sh brain   (~5 min)
#   3. carry [".device/chest"]   command: bash benchmarks/device_run.sh chest   (~5 min)
# Issue 27's detector benchmark (benchmarks/unfamiliar_real.py), likewise back to back:
#   python benchmarks/pack_for_device.py wheels
#   python benchmarks/pack_for_device.py foreign
#   python benchmarks/pack_for_device.py data ../shared/data/brain_tumor_mri brain --quality 85
#   python benchmarks/pack_for_device.py data ../shared/data/chest_xray_224 chest --side 232
#   1. carry [".device/wheels"]  command: bash benchmarks/device_run.sh install     (~2 min)
#   2. carry [".device/brain", ".device/foreign"]
#      command: bash benchmarks/device_run.sh unfamiliar-brain                      (~4 min)
#   3. carry [".device/chest", ".device/foreign/mris", ".device/foreign/digits",
#             ".device/foreign/photos"]
#      command: bash benchmarks/device_run.sh unfamiliar-chest                      (~3 min)
# Each step writes its log and the run folders' summaries as one .tar.gz under $OUT (at
# most 8 files come back); unpack them into benchmarks/result_runs/ and regenerate
# RESULTS.md with benchmarks/results.py. The timings in the comments are estimates from
# the H100 runs of 2026-11-22 (Lite0 about 800 images/s there).
set -euo pipefail
step=${1:?usage: device_run.sh setup|brain|chest|install|unfamiliar-brain|unfamiliar-chest}
export PYTHONPATH="$PWD/.device/site:$PWD/src" PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
log="$OUT/$step.log"

summaries() {  # the files benchmarks/results.py reads, of every run folder under runs/
    find runs -name '*.json' -o -name 'config.yaml' | grep -v -e checkpoints -e explanations \
        | tar czf "$OUT/$step-runs.tar.gz" -T -
}

latest() {  # the newest run folder of output name $1
    ls -d "runs/$1"/*/ | tail -n 1
}

# What the detector benchmark does not need: test-time augmentation, label issues,
# corruptions and explanation maps (the detectors are fitted and measured without them).
light=(--set evaluate.tta=null --set evaluate.label_issues=null
       --set 'evaluate.robustness={}' --set evaluate.explain.images=0 --set train.progress=lines)
# A smoke test of these steps on a CPU: EXTRA_SETS="--set train.epochs=1 ..." (more --set).
read -r -a extra <<< "${EXTRA_SETS:-}"
light+=("${extra[@]}")

install() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -m pip install --no-index --no-deps --target .device/site .device/wheels/*.whl -q
    python3 -c "import torch, timm, visionbench; print('torch', torch.__version__, \
'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
}

case "$step" in
install)
    install 2>&1 | tee "$log"
    ;;
unfamiliar-brain)
    {
        # The brain recipe's recommended model against X-rays, digits and photos (under the
        # profiler: what the trust checks cost beside training); then the same model
        # trained without no_tumor, which is its near-foreign set.
        python3 benchmarks/profile_run.py brain_tumor --model best --top 15 \
            --set data.path=.device/brain --set output.name=brain_unfamiliar "${light[@]}"
        python3 -m visionbench run brain_tumor --model best --set data.path=.device/brain \
            --set output.name=brain_near "${light[@]}" --set data.labels.positive_group=null \
            --set 'data.labels.select=[glioma_tumor,meningioma_tumor,pituitary_tumor]'
        python3 benchmarks/unfamiliar_real.py "$(latest brain_unfamiliar)" \
            --foreign "chest X-rays=.device/foreign/xrays" \
            --foreign "MNIST digits=.device/foreign/digits" \
            --foreign "photos=.device/foreign/photos" --json "$OUT/brain.json"
        python3 benchmarks/unfamiliar_real.py "$(latest brain_near)" \
            --foreign "no_tumor, Testing=.device/brain/Testing/no_tumor" \
            --foreign "no_tumor, Training=.device/brain/Training/no_tumor" \
            --json "$OUT/brain_near.json"
        summaries
    } 2>&1 | tee "$log"
    ;;
unfamiliar-chest)
    {
        python3 -m visionbench run chest_xray --model best --set data.path=.device/chest \
            --set output.name=chest_unfamiliar "${light[@]}"
        python3 benchmarks/unfamiliar_real.py "$(latest chest_unfamiliar)" \
            --foreign "brain MRIs=.device/foreign/mris" \
            --foreign "MNIST digits=.device/foreign/digits" \
            --foreign "photos=.device/foreign/photos" --json "$OUT/chest.json"
        summaries
    } 2>&1 | tee "$log"
    ;;
setup)
    {
        install
        # §6: visionbench's loop against a hand loop, ResNet-18/50 at 224 px, bf16,
        # channels-last, batch 256.
        python3 benchmarks/train_speed.py --gpu --device cuda
    } 2>&1 | tee "$log"
    ;;
brain)
    {
        # §5: the recipe's own model and its larger one (TTA, temperature, conformal sets and
        # label issues come with the recipe), then where a run's time goes (§6).
        python3 -m visionbench run brain_tumor --model best --model large \
            --set data.path=.device/brain --set output.name=brain_gpu
        # The study's small RGB CNN: seconds of training, so what is not training shows.
        python3 benchmarks/profile_run.py brain_tumor --model cnn_rgb \
            --set data.path=.device/brain --set output.name=brain_profile --top 30
        summaries
    } 2>&1 | tee "$log"
    ;;
chest)
    {
        python3 -m visionbench run chest_xray --model best --model robust --model large \
            --set data.path=.device/chest --set output.name=chest_gpu
        summaries
    } 2>&1 | tee "$log"
    ;;
*)
    echo "unknown step $step: setup, brain, chest, install, unfamiliar-brain or unfamiliar-chest" >&2
    exit 2
    ;;
esac

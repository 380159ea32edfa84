#!env bash
# Run by snakemake (--sdm conda) once, inside the freshly created pipeline.yaml env ($CONDA_PREFIX).
# mediapipe and lpips without their dependency pins, exactly as the Makefile's install target does:
# mediapipe 0.10.21 pins numpy<2 (wrong for our use), lpips pulls torchvision (breaks diffusers).
set -euo pipefail
"$CONDA_PREFIX/bin/python" -m pip install --no-deps mediapipe==0.10.21 lpips==0.1.4
if "$CONDA_PREFIX/bin/python" -c "import torchvision" 2>/dev/null; then
    echo "torchvision is installed in $CONDA_PREFIX: it breaks diffusers; remove it" >&2
    exit 1
fi

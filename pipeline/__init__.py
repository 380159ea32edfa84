"""gaitfidelity: the importable package behind the Snakemake workflow.

Each workflow stage has one module (or sub-package) here with the same name as its rule file in
``workflow/rules``; rules only call into this package. The package is grouped by concern (see
docs/architecture.md, "Package layout and layers").

Importing the package pins the CPU instruction set that PyTorch's oneDNN and MKL kernels may use to
AVX2 (unless the caller set ``ONEDNN_MAX_CPU_ISA`` / ``MKL_CBWR`` already). Both libraries pick
their kernels by the CPU they run on, and AVX-512 kernels sum in another order than AVX2 ones: the
same seed then trained a DeepGaitV2 to 93.1 % Rank-1 on one machine and 91.0 % on another. With the
pin every x86-64 CPU with AVX2 runs the same kernels and gives the same bits (measured: forcing SSE4.1
changes a conv3d forward/backward and a matmul, AVX2 leaves them unchanged on an AVX2 machine; see
docs/architecture.md, "Reproducibility"). It must happen before torch first runs a kernel, hence here:
every job enters through ``pipeline.cli``.
"""

import os

__version__ = "0.1.0"

# Reproducible numerics across machines (read by oneDNN at its first dispatch, by MKL at its init).
NUMERICS_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
for _key, _value in NUMERICS_ENV.items():
    os.environ.setdefault(_key, _value)

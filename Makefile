# Two entry points: `make demo` (the whole study on the embedded synthetic world, config/demo.yaml) and
# `make test`. Your own study: config/config.yaml (see README.md).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
export PATH := $(abspath $(BIN)):$(PATH)
# The demo study replaces (not extends) config/config.yaml, which holds your study.
DEMO := --configfile config/demo.yaml --replace-workflow-config
# Local (non-SLURM) runs: snakemake imports the installed SLURM executor plugin on every invocation, and
# the plugin runs `scontrol show config` at import time, which waits up to 10 s (its timeout) on a
# machine whose SLURM client cannot reach a controller. SLURM_CONF=/dev/null makes scontrol fail at
# once; local runs never use SLURM. Set LOCAL_SLURM_CONF= (empty) to keep your SLURM_CONF.
LOCAL_SLURM_CONF ?= /dev/null
LOCAL := $(if $(LOCAL_SLURM_CONF),SLURM_CONF=$(LOCAL_SLURM_CONF))

.PHONY: demo test install lint dryrun clean bench test-slurm gaitcrafter-checkpoint

$(BIN)/.installed: pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The torch pin first: on this CPU machine it takes the local CPU wheel, on a cluster the CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[ml,dev]"
	# mediapipe's numpy<2 pin is wrong for us and lpips would pull torchvision: both without deps.
	$(BIN)/pip install -q --no-deps mediapipe==0.10.21 lpips==0.1.4
	@! $(BIN)/python -c "import torchvision" 2>/dev/null || { echo "torchvision is installed: it breaks diffusers; remove it"; exit 1; }
	touch $@

install: $(BIN)/.installed

# After a crash (kill -9, OOM, power loss) the same command finishes the study: unlock-stale removes
# the dead run's locks (refusing while any process of a run still works here) and --rerun-incomplete
# re-runs exactly the interrupted jobs.
demo: install
	$(BIN)/python -m pipeline.cli unlock-stale
	$(LOCAL) $(BIN)/snakemake --cores $(CORES) $(DEMO) --rerun-triggers mtime params input code --rerun-incomplete

# The GaitCrafter the demo ships (pretrained/gaitcrafter/world-default, see docs/architecture.md): the
# demo's own train_gaitcrafter job with the shipped checkpoint switched off (config/gaitcrafter-checkpoint.yaml),
# then its EMA weights and fingerprint exported. The demo uses it only while the world and the training
# config still match that fingerprint. Training costs about 10 CPU minutes on one core.
GC_CHECKPOINT ?= pretrained/gaitcrafter/world-default
gaitcrafter-checkpoint: install
	$(LOCAL) $(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml config/gaitcrafter-checkpoint.yaml \
		--replace-workflow-config results/gaitcrafter/world/model.json --rerun-triggers mtime params input code
	$(BIN)/python -m pipeline.gaitcrafter.pretrained --model results/gaitcrafter/world/model.json \
		--out $(GC_CHECKPOINT) --made-by "make gaitcrafter-checkpoint"

test: install
	$(LOCAL) $(BIN)/python -m pytest -q tests

# A single-node SLURM (with accounting) on this machine and the tiny study through `--profile slurm`:
# needs root and up to half an hour on 2 cores; not part of `make test` (README, "Running on a SLURM
# cluster").
test-slurm: install
	PYTHON=$(abspath $(BIN))/python bash benchmarks/slurm_local.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check workflow
	$(LOCAL) $(BIN)/snakemake --lint --cores 1 $(DEMO)

dryrun: install
	$(LOCAL) $(BIN)/snakemake -n --cores $(CORES) $(DEMO)

bench: install
	for f in benchmarks/*.py; do echo "== $$f"; $(LOCAL) $(BIN)/python $$f || exit 1; done

clean:
	rm -rf results/* logs .snakemake
	git checkout -- results/README.md

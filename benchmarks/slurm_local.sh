#!/usr/bin/env bash
# A single-node SLURM cluster with accounting on this machine, and the tiny study run through it
# exactly as a user would: `snakemake --profile slurm` from the repository root.
#
#     sudo make test-slurm          (or: sudo bash benchmarks/slurm_local.sh)
#
# Needs root (it installs Debian packages if missing and runs the daemons) and a few minutes to half an
# hour on 2 cores. NOT part of `make test`. Everything it writes lives in one temp folder (configs,
# database, state, logs, the runs' --directory), printed at the start and kept at the end; SLURM_CONF
# points the daemons and clients at the temp slurm.conf, and /etc/slurm/slurm.conf is a link to it
# while the script runs (see below why; restored on exit). It starts munged,
# mariadbd, slurmdbd, slurmctld and slurmd, records their PIDs and stops only those on exit.
#
# Phases (each a fresh --directory with .test/config.yaml plus an overlay giving `cluster:` keys):
#   full     the whole tiny study; every job COMPLETED (sacct), resources as configured (account,
#            partition, memory, time limit, the GPU job's gres), then `-n` says there is nothing to do
#   nolocal  a small target (up to the sweep plan) with workflow/rules/localrules.smk left out
#   local    the same target as shipped (local rules on the submitting host): overhead before/after
#   cancel   a small target; one running job is scancel'led: it must be retried and the run must end
#   fail     a config whose dataset root does not exist: the failing job must be reported with its logs
# Environment: PYTHON (default .venv/bin/python), PHASES (default "full nolocal local cancel fail"),
# KEEP_GOING_ON_FAILED_CHECK=1 to run the remaining phases after a failed check.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
PHASES=${PHASES:-probe full nolocal local cancel fail}
CLUSTER=gaitlocal
ACCOUNT=gaitlab
DB_PORT=${DB_PORT:-3307}
CTLD_PORT=${CTLD_PORT:-16817}
SLURMD_PORT=${SLURMD_PORT:-16818}
DBD_PORT=${DBD_PORT:-16819}

[ "$(id -u)" = 0 ] || { echo "slurm_local.sh: run as root (it installs packages and starts daemons)" >&2; exit 2; }
[ -x "$PYTHON" ] || { echo "slurm_local.sh: $PYTHON not found (make install, or set PYTHON)" >&2; exit 2; }

# ---- packages ---------------------------------------------------------------------------------
PACKAGES="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
missing=$(for p in $PACKAGES; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "== installing:" $missing
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing || exit 2
fi

# ---- the cluster --------------------------------------------------------------------------------
T=$(mktemp -d /tmp/slurm_local.XXXXXX)
chmod 755 "$T"
mkdir -p "$T"/{etc,munge,run,log,state,spool,mysql}
echo "== work folder: $T"
PIDS=()
NOLOCAL_SNAKEFILE="$ROOT/workflow/.Snakefile-nolocalrules"
FAILED_CHECKS=0

cleanup() {
    set +e
    if [ -n "${SNAKEMAKE_PID:-}" ] && kill -0 "$SNAKEMAKE_PID" 2>/dev/null; then kill "$SNAKEMAKE_PID"; fi
    if [ -f "$T/etc/slurm.conf" ] && [ ${#PIDS[@]} -gt 0 ]; then
        scancel --user=root >/dev/null 2>&1  # SLURM_CONF: this cluster's jobs only
        sleep 2
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
    for _ in $(seq 20); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.5
    done
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && kill -9 "$pid"; done
    rm -f "$NOLOCAL_SNAKEFILE"
    if [ -n "${ETC_LINKED:-}" ]; then
        rm -f "$ETC_CONF"
        if [ -e "$ETC_BACKUP" ] || [ -L "$ETC_BACKUP" ]; then mv "$ETC_BACKUP" "$ETC_CONF"; fi
    fi
    echo "== stopped daemons (PIDs ${PIDS[*]:-none}); logs and runs kept in $T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() {  # start NAME CMD...: a daemon in the foreground of a background job, its PID recorded
    local name=$1
    shift
    "$@" >"$T/log/$name.out" 2>&1 &
    PIDS+=($!)
    echo "$name $!" >>"$T/run/pids"
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq $((limit * 2))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "slurm_local.sh: timed out waiting for $what (logs in $T/log)" >&2
    exit 1
}

HOST=$(hostname -s)
NODE=$(slurmd -C | head -1 | sed -E 's/ RealMemory=([0-9]+)//')
MEM=$(slurmd -C | head -1 | sed -E 's/.*RealMemory=([0-9]+).*/\1/')
MEM=$((MEM - 1024))  # leave the submitting snakemake and the daemons some room

cp /etc/munge/munge.key "$T/munge/munge.key"
chmod 400 "$T/munge/munge.key"
cat >"$T/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$T/munge/munge.socket
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$T/munge/munge.socket
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu,gres/gpu:a100
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
JobCompType=jobcomp/none
$NODE RealMemory=$MEM Gres=gpu:a100:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=ALL MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
EOF
# A fake GPU (the jobs run CPU torch): slurmd 22.05 ignores a Count-only gpu line, so File=/dev/null.
echo "NodeName=$HOST Name=gpu Type=a100 File=/dev/null" >"$T/etc/gres.conf"
cat >"$T/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$T/munge/munge.socket
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$T/log/slurmdbd.log
PidFile=$T/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmlocal
StorageLoc=slurm_acct_db
EOF
chmod 600 "$T/etc/slurmdbd.conf"
export SLURM_CONF=$T/etc/slurm.conf
# SLURM_CONF reaches sbatch, squeue, sacct and the job itself, but snakemake-executor-plugin-slurm-jobstep
# (0.6.1) drops every SLURM_* variable but a few before its nested `srun`, SLURM_CONF included: srun
# then reads /etc/slurm/slurm.conf. So that path is a link to ours for the duration of the run (an
# existing file is moved aside and put back on exit).
ETC_CONF=/etc/slurm/slurm.conf
ETC_BACKUP=$ETC_CONF.slurm_local.bak
mkdir -p /etc/slurm
if [ -e "$ETC_CONF" ] || [ -L "$ETC_CONF" ]; then mv "$ETC_CONF" "$ETC_BACKUP"; fi
ln -s "$SLURM_CONF" "$ETC_CONF"
ETC_LINKED=1

echo "== starting munged, mariadbd, slurmdbd, slurmctld, slurmd"
start munged munged -F --force --key-file="$T/munge/munge.key" --socket="$T/munge/munge.socket" \
    --pid-file="$T/munge/munged.pid" --log-file="$T/log/munged.log" --seed-file="$T/munge/munged.seed"
mariadb-install-db --datadir="$T/mysql" --user=root --auth-root-authentication-method=socket >"$T/log/mariadb-install.log" 2>&1 \
    || { echo "mariadb-install-db failed (see $T/log/mariadb-install.log)" >&2; exit 1; }
start mariadbd mariadbd --no-defaults --datadir="$T/mysql" --socket="$T/mysql.sock" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$T/run/mariadbd.pid" --log-error="$T/log/mariadbd.err" --user=root \
    --innodb-buffer-pool-size=64M
wait_for 60 "munged" munge -S "$T/munge/munge.socket" -n
wait_for 60 "mariadbd" mariadb --no-defaults -S "$T/mysql.sock" -u root -e "select 1"
mariadb --no-defaults -S "$T/mysql.sock" -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmlocal';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmlocal';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || exit 1
start slurmdbd slurmdbd -D
wait_for 60 "slurmdbd" sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account "$ACCOUNT" Description="gait study" Organization=local >/dev/null
# root keeps its default account `root`: a job submitted without -A would show up as account root.
sacctmgr -i add user root account="$ACCOUNT" >/dev/null
start slurmctld slurmctld -D
wait_for 60 "slurmctld" scontrol ping
start slurmd slurmd -D
wait_for 60 "the node" bash -c "sinfo -h -N -o %t | grep -qx idle"
sinfo
echo "== pids: $(tr '\n' ' ' <"$T/run/pids")"

# ---- helpers for the runs ----------------------------------------------------------------------
export PATH="$(dirname "$PYTHON"):$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the jobs import this checkout's pipeline
cat >"$T/cluster.yaml" <<EOF
cluster: {account: $ACCOUNT, cpu_partition: cpu, gpu_partition: gpu, gpu_model: a100}
gaitcrafter:
  resources: {gpu: 1, mem_mb: 3000, runtime: 20}
EOF
SMALL_TARGET=results/sweep/tiny/plan.parquet
SACCT_FORMAT=JobIDRaw,JobName%40,Comment%120,Account,Partition,State,ReqMem,Timelimit,AllocTRES%80,ElapsedRaw,Submit,Start,End
SUMMARY=()

check() {  # check DESCRIPTION CMD...
    local what=$1
    shift
    if "$@"; then
        echo "   ok    $what"
    else
        echo "   FAIL  $what"
        FAILED_CHECKS=$((FAILED_CHECKS + 1))
        [ "${KEEP_GOING_ON_FAILED_CHECK:-0}" = 1 ] || exit 1
    fi
}

run_snakemake() {  # run_snakemake NAME [SNAKEMAKE ARGS...]: from the repository root, into $T/NAME
    local name=$1
    shift
    mkdir -p "$T/$name"
    date -u +%Y-%m-%dT%H:%M:%S >"$T/$name.start"
    local t0=$(date +%s.%N)
    (cd "$ROOT" && timeout "${RUN_TIMEOUT:-5400}" "$PYTHON" -m snakemake --profile slurm \
        --configfile .test/config.yaml "$T/cluster.yaml" --directory "$T/$name" "$@") >"$T/$name.log" 2>&1 &
    SNAKEMAKE_PID=$!
    wait "$SNAKEMAKE_PID"
    local rc=$?
    SNAKEMAKE_PID=
    echo "$(date +%s.%N) - $t0" | bc >"$T/$name.wall"
    sleep 1
    sacct -X -n -P --starttime "$(cat "$T/$name.start")" --format=$SACCT_FORMAT >"$T/$name.sacct"
    return $rc
}

stats() {  # stats NAME: jobs, wall, job-seconds, per-job overhead from sacct + snakemake's log
    "$PYTHON" - "$T" "$1" <<'EOF'
import re, sys
from datetime import datetime
T, name = sys.argv[1], sys.argv[2]
fields = "jobid name comment account partition state reqmem timelimit tres elapsed submit start end".split()
jobs = [dict(zip(fields, line.split("|"))) for line in open(f"{T}/{name}.sacct").read().splitlines() if line]
ts = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").timestamp()
last, submitted, finished, local = None, {}, {}, 0
for line in open(f"{T}/{name}.log"):
    line = line.rstrip("\n")
    m = re.fullmatch(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line)
    if m:
        last = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
    if m := re.search(r"Job (\d+) has been submitted with SLURM jobid (\d+)", line):
        submitted[m.group(2)] = m.group(1)
    if m := re.match(r"Finished jobid: (\d+)", line):
        finished[m.group(1)] = last
    if line.startswith("localrule "):
        local += 1
over = []
for j in jobs:
    sm = submitted.get(j["jobid"])
    if sm in finished and j["end"] not in ("Unknown", ""):
        over.append(finished[sm] - ts(j["submit"]) - int(j["elapsed"]))
wall = float(open(f"{T}/{name}.wall").read())
jobsec = sum(int(j["elapsed"]) for j in jobs)
mean_run = jobsec / len(jobs) if jobs else 0
mean_over = sum(over) / len(over) if over else float("nan")
print(f"{name}: {len(jobs)} SLURM jobs + {local} local jobs, wall {wall:.0f} s, job-seconds {jobsec} "
      f"(mean {mean_run:.1f} s/job inside SLURM), per-job overhead {mean_over:.1f} s "
      f"(submit -> snakemake sees it finished, minus the job's elapsed; n={len(over)})")
EOF
}

all_completed() { awk -F'|' '$6 != "COMPLETED" {bad = 1; print "      not completed: " $0} END {exit bad}' "$1"; }
all_accounted() { awk -F'|' -v a="$ACCOUNT" '$4 != a || ($5 != "cpu" && $5 != "gpu") {bad = 1; print "      " $0} END {exit bad}' "$1"; }
rule_has() {  # rule_has SACCT RULE FIELD-AWK-CONDITION: every job of RULE satisfies it, and one exists
    awk -F'|' -v r="rule_$2" "index(\$3, r) == 1 { n++; if (!($3)) { bad = 1; print \"      \" \$0 } } END { exit bad || !n }" "$1"
}

# ---- phases ------------------------------------------------------------------------------------
for phase in $PHASES; do
case $phase in
full)
    echo "== full: the tiny study through --profile slurm (several minutes to ~20 min on 2 cores)"
    run_snakemake full
    rc=$?
    check "full run exits 0" test $rc = 0
    check "every SLURM job COMPLETED" all_completed "$T/full.sacct"
    check "every SLURM job has account $ACCOUNT and partition cpu|gpu" all_accounted "$T/full.sacct"
    check "train_gaitcrafter: partition gpu, 3000M, 00:20:00, one a100" \
        rule_has "$T/full.sacct" train_gaitcrafter '$5 == "gpu" && $7 == "3000M" && $8 == "00:20:00" && $9 ~ /gres\/gpu:a100=1/'
    check "train_recogniser: partition cpu, 8000M, 04:00:00, no GPU" \
        rule_has "$T/full.sacct" train_recogniser '$5 == "cpu" && $7 == "8000M" && $8 == "04:00:00" && $9 !~ /gpu/'
    check "pose: partition cpu, 6000M, 02:00:00" rule_has "$T/full.sacct" pose '$5 == "cpu" && $7 == "6000M" && $8 == "02:00:00"'
    check "no local rule was submitted" bash -c "! grep -E 'rule_(world_spec|stage_summary|sweep_plan|sweep_sheet|gaitcrafter_augmentation)' '$T/full.sacct'"
    check "no 'No SLURM account given'" bash -c "! grep -q 'No SLURM account given' '$T/full.log'"
    (cd "$ROOT" && "$PYTHON" -m snakemake --profile slurm --configfile .test/config.yaml "$T/cluster.yaml" \
        --directory "$T/full" -n) >"$T/full-rerun.log" 2>&1
    check "a re-run has nothing to do" grep -q "Nothing to be done" "$T/full-rerun.log"
    SUMMARY+=("$(stats full)")
    ;;
nolocal | local)
    snakefile=()
    if [ $phase = nolocal ]; then
        sed '/rules\/localrules.smk/d' "$ROOT/workflow/Snakefile" >"$NOLOCAL_SNAKEFILE"
        snakefile=(--snakefile "$NOLOCAL_SNAKEFILE")
    fi
    echo "== $phase: $SMALL_TARGET ${snakefile[*]}"
    run_snakemake $phase "${snakefile[@]}" "$SMALL_TARGET"
    rc=$?
    check "$phase run exits 0" test $rc = 0
    check "$phase: every SLURM job COMPLETED" all_completed "$T/$phase.sacct"
    if [ $phase = local ]; then
        check "$phase: every SLURM job has account and partition" all_accounted "$T/$phase.sacct"
    else  # world_spec sets no resources: it relies on being a local rule
        awk -F'|' '{print "      " $3 " account=" $4 " partition=" $5}' "$T/$phase.sacct" | grep world_spec
    fi
    SUMMARY+=("$(stats $phase)")
    rm -f "$NOLOCAL_SNAKEFILE"
    ;;
cancel)
    echo "== cancel: scancel one running pose job; it must be retried and the run must end"
    (
        for _ in $(seq 600); do
            id=$(squeue -h -t RUNNING -o '%i %k' | awk '$2 ~ /^rule_pose_/ {print $1; exit}')
            if [ -n "$id" ]; then sleep 2; scancel "$id"; echo "$id" >"$T/cancelled"; exit 0; fi
            sleep 0.5
        done
    ) &
    canceller=$!
    RUN_TIMEOUT=900 run_snakemake cancel results/perception/tiny/pose/summary.parquet
    rc=$?
    wait $canceller
    check "cancel run ends (no hang) and exits 0 (rc=$rc)" test $rc = 0
    check "a pose job was cancelled" test -s "$T/cancelled"
    cancelled=$(cat "$T/cancelled" 2>/dev/null)
    check "sacct shows job $cancelled CANCELLED" bash -c "grep -E '^$cancelled\|' '$T/cancel.sacct' | grep -q CANCELLED"
    check "the cancelled job was resubmitted with 2x memory (12000M) and completed" \
        bash -c "grep -E 'rule_pose_' '$T/cancel.sacct' | grep -q '|COMPLETED|12000M|04:00:00|'"
    grep -E "SLURM-job '$cancelled'|Trying to restart" "$T/cancel.log" | sed 's/^/      /' | head -5
    SUMMARY+=("$(stats cancel)")
    ;;
fail)
    echo "== fail: a dataset whose root does not exist; the failing job is reported with its logs"
    printf 'datasets:\n  broken: {kind: custom, root: %s/no-such-videos}\n' "$T" >"$T/broken.yaml"
    cat "$T/cluster.yaml" >>"$T/broken.yaml"
    (cd "$ROOT" && "$PYTHON" -m snakemake --profile slurm --configfile .test/config.yaml "$T/broken.yaml" \
        --directory "$T/fail" results/manifests/broken.parquet) >"$T/fail.log" 2>&1
    rc=$?
    check "the run fails (rc=$rc)" test $rc != 0
    check "snakemake names the rule and its log" grep -q "logs/index_dataset/broken.log" "$T/fail.log"
    check "snakemake names the SLURM log" grep -Eq "slurm_logs/rule_index_dataset/broken/[0-9]+\.log" "$T/fail.log"
    check "the rule's log says why" grep -q "no-such-videos" "$T/fail/logs/index_dataset/broken.log"
    grep -E "Error in rule|log: |SLURM-job|slurm_logs" "$T/fail.log" | sed 's/^/      /' | head -8
    ;;
probe)
    echo "== probe: snakemake -n --quiet on the tiny config, 3 runs each"
    sed -E "s/^SlurmctldPort=.*/SlurmctldPort=$((CTLD_PORT + 100))/" "$T/etc/slurm.conf" >"$T/etc/unreachable.conf"
    for conf in "$SLURM_CONF" "$T/etc/unreachable.conf" /dev/null; do
        times=$(for _ in 1 2 3; do
            s=$(date +%s.%N)
            (cd "$ROOT" && SLURM_CONF=$conf "$PYTHON" -m snakemake -n --quiet --cores 1 \
                --configfile .test/config.yaml --directory "$T/probe") >/dev/null 2>&1
            printf '%.1f ' "$(echo "$(date +%s.%N) - $s" | bc)"
        done)
        case $conf in "$SLURM_CONF") label="controller up" ;; /dev/null) label="SLURM_CONF=/dev/null" ;; *) label="controller unreachable" ;; esac
        SUMMARY+=("probe, $label: snakemake -n took ${times}s")
        echo "   $label: ${times}s"
    done
    ;;
esac
done

echo "== summary (work folder $T)"
for line in "${SUMMARY[@]}"; do echo "   $line"; done
echo "   failed checks: $FAILED_CHECKS"
[ $FAILED_CHECKS = 0 ]

"""The workflow end to end on the tiny CI world, plus lint and dry-run checks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.contracts import MANIFEST, read_frame_store, read_table
from pipeline.runner import STAGE_STATUS

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile")]
# No test talks to SLURM: SLURM_CONF=/dev/null makes the SLURM plugin's import-time `scontrol show
# config` fail at once instead of waiting up to 10 s for an unreachable controller (README).
NO_SLURM = {"SLURM_CONF": os.devnull}


def snakemake(
    workdir: Path, *args: str, config: Path = ROOT / ".test" / "config.yaml"
) -> subprocess.CompletedProcess:
    env = {**os.environ, **NO_SLURM, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(config), "--cores", "2", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("tiny")
    result = snakemake(workdir, "-q")
    if result.returncode != 0:
        logs = "\n".join(p.read_text()[-2000:] for p in (workdir / "logs").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{logs}")
    return workdir


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_is_snakefmt_formatted():
    """The workflow catalog's formatting rule (snakefmt, pinned in the dev extras)."""
    snakefmt = Path(sys.executable).with_name("snakefmt")
    assert snakefmt.is_file(), f"{snakefmt} missing: `make install` installs the dev extras"
    result = subprocess.run([str(snakefmt), "--check", "workflow"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_lists_every_stage(tmp_path):
    result = snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr
    for rule in (
        "world_spec",
        "render_world_shard",
        "index_world",
        "pose",
        "masks",
        "silhouettes",
        "skeleton_maps",
        "crops",
        "guidance",
    ):
        assert f"rule {rule}:" in result.stdout


def test_malformed_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (ROOT / ".test" / "config.yaml").read_text().replace("frames: 12", "frames: 12\n    framez: 3")
    bad.write_text(text)
    result = snakemake(tmp_path, "-n", config=bad)
    assert result.returncode != 0
    assert "framez" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_tiny_world_manifest(tiny_run):
    world = json.loads((tiny_run / "results/world/tiny/world.json").read_text())
    manifest = pl.from_arrow(read_table(tiny_run / "results/manifests/tiny.parquet", MANIFEST))
    # 4 base identities + 1 motion-only twin, 3 conditions, 1 view.
    assert len(world["identities"]) == 5 and manifest.height == 15
    assert manifest["error"].null_count() == manifest.height
    assert set(manifest["role"]) == {"train", "gallery", "probe"}
    assert (manifest.filter(pl.col("role") == "gallery")["condition"] == "nm-01").all()
    assert (manifest["frame_count"] == 12).all() and (manifest["width"] == 128).all()
    twin = manifest.filter(pl.col("subject") == "w005")["attributes"][0]
    assert json.loads(twin)["twin_kind"] == "motion_only"
    store = read_frame_store(manifest["path_groundtruth"][0])
    assert store.get(manifest["sequence_id"][0], "keypoints2d").shape == (12, 17, 3)


@pytest.mark.slow
def test_tiny_world_perception(tiny_run):
    base = tiny_run / "results/perception/tiny"
    statuses = {}
    for stage in (
        "pose",
        "masks",
        "silhouettes",
        "skeleton_maps",
        "crops",
        "guidance/openpose",
        "guidance/densepose",
        "guidance/smpl",
    ):
        tables = [
            pl.from_arrow(read_table(p, STAGE_STATUS)) for p in sorted((base / stage).glob("shard-*.parquet"))
        ]
        statuses[stage] = pl.concat(tables)
        assert statuses[stage].height == 15, stage
    ok_pose = set(statuses["pose"].filter(pl.col("error").is_null())["sequence_id"])
    assert len(ok_pose) >= 8, statuses["pose"]
    # A sequence flagged upstream is skipped downstream with the upstream reason.
    for stage in ("silhouettes", "skeleton_maps", "crops"):
        ok = set(statuses[stage].filter(pl.col("error").is_null())["sequence_id"])
        assert ok <= ok_pose
        flagged = statuses[stage].filter(pl.col("error").is_not_null())
        assert all("pose:" in e or "masks:" in e or "silhouettes" in e for e in flagged["error"])
    sid = sorted(ok_pose)[0]
    shard = next(p for p in (base / "silhouettes").glob("*.npz") if sid in read_frame_store(p))
    sils = read_frame_store(shard).get(sid, "sil")
    assert sils.shape == (12, 64, 64) and sils.dtype == np.uint8 and sils.max() == 255
    maps = read_frame_store(base / "skeleton_maps" / shard.name).get(sid, "skeleton_map")
    assert maps.shape == (12, 2, 64, 64)
    crops = read_frame_store(base / "crops" / shard.name)
    assert crops.get(sid, "rgb").shape[1:] == (112, 56, 3)  # .test/config.yaml perception.crops
    smpl = read_frame_store(base / "guidance/smpl" / shard.name).get(sid, "smpl_mm")
    assert 2000 < np.median(smpl[..., 2]) < 12000  # camera-space depth in millimetres


def test_real_embeddings_hold_the_test_split_only(tiny_run):
    """Retrieval never ranks train rows, so `embed` does not compute them; every test row is there."""
    manifest = pl.from_arrow(read_table(tiny_run / "results/manifests/tiny.parquet", MANIFEST))
    test_ids = set(manifest.filter(pl.col("role") != "train")["sequence_id"])
    assert test_ids and manifest.filter(pl.col("role") == "train").height
    for recogniser in (tiny_run / "results/embeddings/tiny").iterdir():
        shards = sorted(recogniser.glob("shard-*.parquet"))
        table = pl.concat([pl.read_parquet(p) for p in shards])
        assert set(table["role"]) <= {"gallery", "probe"}, recogniser.name
        assert set(table["sequence_id"]) == test_ids, recogniser.name


@pytest.mark.slow
def test_rerun_is_a_no_op(tiny_run):
    result = snakemake(tiny_run, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_no_torchvision():
    assert shutil.which("python") is not None
    result = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True)
    assert result.returncode != 0, "torchvision is installed: it breaks diffusers on CPU torch"


def dry_run_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, wildcards line) for every job a dry-run lists."""
    jobs, rule = [], None
    for line in output.splitlines():
        if line.startswith("rule ") and line.endswith(":"):
            rule = line[5:-1]
            jobs.append((rule, ""))
        elif rule and line.strip().startswith("wildcards:"):
            jobs[-1] = (rule, line.strip())
    return jobs


@pytest.mark.slow
def test_adding_a_model_runs_only_its_jobs(tiny_run, tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    config["models"]["static-b"] = {"generator": "static"}
    config["sweep"]["models"].append("static-b")
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tiny_run, "-n", config=path)
    assert result.returncode == 0, result.stderr
    jobs = dry_run_jobs(result.stdout)
    assert jobs, result.stdout
    for rule, wildcards in jobs:
        if rule in ("all", "sweep_sheet", "aggregate", "analyses", "report"):
            continue  # the aggregations that list every model
        assert "static-b" in wildcards, (rule, wildcards)
    assert {rule for rule, _ in jobs} >= {"generate", "perceive_generated", "metrics", "evaluate_generated"}
    assert not {"world_spec", "render_world_shard", "index_world", "sweep_plan"} & {rule for rule, _ in jobs}


def test_slurm_profile_dry_run(tmp_path):
    """`--profile slurm` resolves from the repository root; GPU models get gpu/partition resources."""
    import yaml

    config = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    config["cluster"] = {
        "account": "labacct",
        "cpu_partition": "cpuq",
        "gpu_partition": "gpuq",
        "gpu_model": "a100",
    }
    config["models"]["magicanimate"] = {
        "generator": "magicanimate",
        "checkout": "/opt/magic-animate",
        "python": "/opt/envs/ma/bin/python",
        "resources": {"gpu": 1, "mem_mb": 32000, "runtime": 240},
    }
    config["sweep"]["models"] = ["magicanimate"]
    config["sweep"].pop("guidance_ablation")  # its posewarp arms are CPU generate jobs
    config["gaitcrafter"]["resources"] = {"gpu": 1, "mem_mb": 16000, "runtime": 120}  # its training job
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, **NO_SLURM, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # From the repository root, exactly as users type it (the profile deploys no software, so this
    # works without conda); --directory keeps outputs out of the checkout.
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n",
         "--configfile", str(path), "--directory", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    generate = [block for block in result.stdout.split("\n\n") if "rule generate:" in block]
    assert generate, result.stdout[-2000:]
    assert all("gpu=1" in b and "slurm_partition=gpuq" in b and "gpu_model=a100" in b for b in generate)
    assert all("slurm_account=labacct" in b for b in generate)
    (train,) = [block for block in result.stdout.split("\n\n") if "rule train_gaitcrafter:" in block]
    assert "gpu=1" in train and "slurm_partition=gpuq" in train and "mem_mb=16000" in train
    cpu = [block for block in result.stdout.split("\n\n") if "rule gaitcrafter_augment:" in block]
    assert cpu and not any("gpu=" in b or "gpuq" in b for b in cpu)
    assert "--gres" not in result.stdout
    # Every job that is submitted (not a local rule) carries the account and a partition.
    local = set(re.findall(r"^    (\w+),$", (ROOT / "workflow/rules/localrules.smk").read_text(), re.M))
    assert "world_spec" in local
    jobs = re.findall(r"^rule (\w+):\n(.*?)(?=\n\n|\Z)", result.stdout, re.M | re.S)
    submitted = [(rule, block) for rule, block in jobs if rule not in local and rule != "all"]
    assert submitted
    for rule, block in submitted:
        assert "slurm_account=labacct" in block and "slurm_partition=" in block, (rule, block)


@pytest.mark.slow
def test_tiny_study_tables_and_report(tiny_run):
    from pipeline.study.aggregate import BIOMETRIC_TABLE, VISUAL_TABLE

    visual = pl.from_arrow(read_table(tiny_run / "results/aggregate/visual.parquet", VISUAL_TABLE))
    biometric = pl.from_arrow(read_table(tiny_run / "results/aggregate/biometric.parquet", BIOMETRIC_TABLE))
    arms = {"posewarp-sparse@groundtruth", "posewarp-sparse@estimated"}  # sweep.guidance_ablation
    assert set(visual["model"]) == {"oracle", "static", "gaitcrafter", *arms}
    assert set(biometric["recogniser"]) == {"deepgaitv2", "skeletongait", "skeletongait++", "biggait"}
    html = (tiny_run / "results/report/report.html").read_text()
    assert "<img" in html and 'src="http' not in html
    for plot in ("bars", "visual_vs_biometric", "strips"):
        assert (tiny_run / f"results/report/plots/{plot}.png").stat().st_size > 0


@pytest.mark.slow
def test_tiny_beyond_the_paper(tiny_run):
    """The guidance-source ablation, the predictors (with the joint-angle DTW) and the cross-domain table
    run in the tiny study and reach the report's summary."""
    from pipeline.study.analyses import (
        ABLATION_TABLE,
        DOMAIN_TABLE,
        MOTION_TABLE,
        PREDICTOR_TESTS,
        PREDICTORS_TABLE,
    )

    base = tiny_run / "results/analyses"
    for arm in ("groundtruth", "estimated"):
        rows = read_table(
            tiny_run / f"results/generated/tiny/posewarp-sparse@{arm}/restoration/baseline/shard-0000/manifest.parquet",
            MANIFEST,
        ).to_pylist()
        assert rows and all(json.loads(r["attributes"])["notes"]["guidance"] == arm for r in rows if not r["error"])
    videos = pl.read_parquet(tiny_run / "results/aggregate/videos.parquet").filter(pl.col("model").str.contains("@"))
    by_arm = videos.pivot(on="model", index="job_id", values="ssim").drop_nulls()
    assert by_arm.height > 0
    # the two arms read different keypoints, so they paint different videos
    assert (by_arm["posewarp-sparse@groundtruth"] != by_arm["posewarp-sparse@estimated"]).any()
    ablation = pl.from_arrow(read_table(base / "guidance_ablation.parquet", ABLATION_TABLE))
    assert set(ablation["model"]) == {"posewarp-sparse"} and set(ablation["scenario"]) == {"baseline", "all"}
    rank1 = ablation.filter(pl.col("quantity") == "Rank-1")
    assert set(rank1["recogniser"]) >= {"deepgaitv2"} and (rank1["n"] > 0).all()
    motion = pl.from_arrow(read_table(base / "motion.parquet", MOTION_TABLE))
    dtw = {m: motion.filter(pl.col("model") == m)["motion_dtw"].drop_nulls().median() for m in ("oracle", "static")}
    # the oracle moves like its driving video, the static reference does not move at all
    assert dtw["oracle"] is not None and dtw["static"] is not None and dtw["oracle"] < dtw["static"], dtw
    predictors = pl.from_arrow(read_table(base / "predictors.parquet", PREDICTORS_TABLE))
    assert set(predictors["kind"]) == {"visual", "temporal", "diagnostic"}
    assert {"motion_dtw", "ssim"} <= set(predictors["predictor"]) and set(predictors["level"]) == {"video", "cell"}
    assert read_table(base / "predictor_tests.parquet", PREDICTOR_TESTS).num_rows > 0
    domain = pl.from_arrow(read_table(base / "domain.parquet", DOMAIN_TABLE))
    cross = domain.filter(pl.col("domain") == "cross-domain")
    assert set(cross["scored"]) == {"tinyb"} and set(cross["trained_on"]) == {"tiny"}
    assert {"real", "oracle / baseline"} <= set(cross["probes"])
    html = (tiny_run / "results/report/report.html").read_text()
    assert 'id="analyses"' in html
    for sentence in ("Guidance-source ablation: ", "Temporal predictors", "Cross-domain: recognisers trained on tiny"):
        assert f"<li>{sentence}" in html, sentence
    assert (tiny_run / "results/report/plots/guidance_ablation.png").stat().st_size > 0


@pytest.mark.slow
def test_changing_a_metric_parameter_does_not_regenerate(tiny_run, tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    config["metrics"] = {"policy": "real"}
    path = tmp_path / "metric.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tiny_run, "-n", config=path)
    assert result.returncode == 0, result.stderr
    rules = {rule for rule, _ in dry_run_jobs(result.stdout)}
    assert "metrics" in rules
    assert rules <= {"metrics", "aggregate", "analyses", "report", "all"}, rules


@pytest.mark.slow
def test_tiny_gaitcrafter(tiny_run):
    """GaitCrafter end to end: training with the gallery enrolled, the sweep through silhouette
    perception (DeepGaitV2 ranks it, the others say why not), null RGB metrics, the experiments."""
    from pipeline.evaluation.metrics import VISUAL_METRICS
    from pipeline.evaluation.retrieval import PROBE_RESULTS
    from pipeline.gaitcrafter import NO_POSE_REASON
    from pipeline.gaitcrafter.stage import AUGMENTATION, NOVELTY, QUALITY

    base = tiny_run / "results/gaitcrafter/tiny"
    model = json.loads((base / "model.json").read_text())
    assert model["train_identities"] == ["w001", "w002"] and model["enrolled_identities"] == [
        "w003",
        "w004",
        "w005",
    ]
    assert model["step"] == 3
    variants = set(read_table(base / "augmentation.parquet", AUGMENTATION).column("variant").to_pylist())
    assert variants == {"real", "real+novel"}
    assert read_table(base / "quality.parquet", QUALITY).num_rows > 0
    assert read_table(base / "novelty.parquet", NOVELTY).num_rows > 0
    source = "gen/tiny/gaitcrafter/transfer/transfer/shard-0000"
    generated = read_table(
        tiny_run / f"results/generated/{source[4:]}/manifest.parquet", MANIFEST
    ).to_pylist()
    assert generated and all(r["error"] is None for r in generated)
    notes = [json.loads(r["attributes"])["notes"] for r in generated]
    assert all(n["output"] == "silhouette" and n["identity_from"] == "reference" for n in notes)
    pose = read_table(
        tiny_run / f"results/perception/{source}/pose/shard-0000.parquet", STAGE_STATUS
    ).to_pylist()
    assert all(r["error"] == NO_POSE_REASON for r in pose)
    masks = read_table(
        tiny_run / f"results/perception/{source}/masks/shard-0000.parquet", STAGE_STATUS
    ).to_pylist()
    assert {r["backend"] for r in masks} == {"from_video"}
    probes = read_table(
        tiny_run / f"results/retrieval/{source}/probe_results.parquet", PROBE_RESULTS
    ).to_pylist()
    by = {(r["recogniser"], r["job_id"]): r for r in probes}
    for job in (r["sequence_id"] for r in generated):
        assert (
            "pose" in by[("skeletongait", job)]["error"] and "no RGB to crop" in by[("biggait", job)]["error"]
        )
    sils = read_table(tiny_run / f"results/perception/{source}/silhouettes/shard-0000.parquet", STAGE_STATUS)
    usable = {r["sequence_id"] for r in sils.to_pylist() if r["error"] is None}
    assert all(by[("deepgaitv2", job)]["error"] is None for job in usable)  # ranked like any other probe
    visual = read_table(tiny_run / f"results/metrics/{source}/visual.parquet", VISUAL_METRICS).to_pylist()
    assert all(r["error"] is None and r["ssim"] is None and "not applicable" in r["notes"] for r in visual)
    html = (tiny_run / "results/report/report.html").read_text()
    assert 'id="gaitcrafter"' in html and "Augmentation experiment" in html


def test_a_killed_run_resumes_to_the_same_tables(tiny_run, tmp_path):
    """kill -9 of the whole run (Snakemake and its jobs) in the middle of recogniser training; then what
    `make demo` does (unlock-stale, --rerun-incomplete) finishes the study with the uninterrupted run's
    tables, bit for bit (which is also the same-seed repeat-run check)."""
    import signal
    import time

    workdir = tmp_path / "killed"
    workdir.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(ROOT / ".test" / "config.yaml"),
               "--cores", "2", "-q"]  # fmt: skip
    run = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    training = workdir / "logs" / "train_recogniser"
    while time.monotonic() < deadline and run.poll() is None and not training.exists():
        time.sleep(0.5)
    assert run.poll() is None, "the run ended before it could be killed"
    time.sleep(2)  # well inside a training job
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert any((workdir / ".snakemake" / "locks").glob("*.lock")), "the killed run left no lock"

    unlock = subprocess.run([sys.executable, "-m", "pipeline.cli", "unlock-stale", "--directory", str(workdir)],
                            capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip
    assert unlock.returncode == 0 and "removed its" in unlock.stdout
    resumed = snakemake(workdir, "-q", "--rerun-incomplete")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for table in sorted((tiny_run / "results" / "aggregate").glob("*.parquet")):
        again = pl.read_parquet(workdir / "results" / "aggregate" / table.name)
        assert again.equals(pl.read_parquet(table)), table.name


def test_unlock_stale_refuses_while_a_run_is_alive(tmp_path):
    from pipeline.runs import RunStillAlive, clear_stale_locks

    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # pipeline.cli"], cwd=tmp_path)
    try:
        with pytest.raises(RunStillAlive, match=f"pid {alive.pid}"):
            clear_stale_locks(tmp_path)
        assert (locks / "0.input.lock").exists()
    finally:
        alive.kill()
        alive.wait()
    assert clear_stale_locks(tmp_path) == [locks / "0.input.lock"] and not any(locks.iterdir())

"""GaitCrafter in the workflow: the sweep adapter, silhouette-video perception and its skip reasons,
metrics of silhouette output, the training / augmentation stages, the report section, the config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.contracts import MANIFEST, read_frame_store, read_table, write_frame_store, write_table
from pipeline.runner import STAGE_STATUS
from tests.test_gaitcrafter import MICRO, _walker

TRAIN = ("s01", "s02", "s03")
TEST = ("t01", "t02", "t03")
VIEWS = ("000", "090")
FRAMES = 8


def _row(subject: str, condition: str, view: str, split: str, role: str, **extra) -> dict:
    return {
        "dataset": "toy",
        "subject": subject,
        "condition": condition,
        "view": view,
        "sequence_id": f"{subject}/{condition}/{view}",
        "split": split,
        "role": role,
        "frame_count": FRAMES,
        "attributes": json.dumps({"coat": condition.startswith("cl"), "bag": condition.startswith("bg")}),
        **extra,
    }


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A toy dataset with a train split (3 identities) and a test split (gallery nm-01, probes nm-02 / cl-01)."""
    root = tmp_path_factory.mktemp("gc_toy")
    rows, arrays = [], {}
    identities = [(s, "train", ("nm-01", "nm-02", "cl-01")) for s in TRAIN]
    identities += [(s, "test", ("nm-01", "nm-02", "cl-01")) for s in TEST]
    for k, (subject, split, conditions) in enumerate(identities):
        for condition in conditions:
            for view in VIEWS:
                role = "train" if split == "train" else ("gallery" if condition == "nm-01" else "probe")
                row = _row(subject, condition, view, split, role)
                rows.append(row)
                width = 5 + 2 * k + (3 if condition == "cl-01" else 0)
                arrays[row["sequence_id"]] = {
                    "sil": _walker(width, 0.4 * k, FRAMES),
                    "valid": np.ones(FRAMES, dtype=bool),
                }
    store = write_frame_store(root / "silhouettes" / "shard-0000.npz", arrays)
    manifest = write_table(rows, root / "manifest.parquet", MANIFEST)
    return {"root": root, "manifest": manifest, "store": store, "rows": rows}


@pytest.fixture(scope="module")
def trained_stage(toy: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The training stage on the toy dataset, enrolling the test gallery; returns model.json's content."""
    from pipeline.gaitcrafter.stage import train_stage

    out = tmp_path_factory.mktemp("gc_stage")
    # 6-frame clips: synthetic clips must reach the recognisers' 5-frame minimum.
    settings = {**{k: v for k, v in MICRO.as_plain().items() if k != "views"}, "frames": 6}
    info = train_stage(
        manifest=str(toy["manifest"]), silhouettes=[str(toy["store"])], out_dir=str(out),
        model=str(out / "model.json"), dataset="toy", preset="tiny", settings=settings, enrol="gallery",
    )  # fmt: skip
    return {"info": info, "out": out, "settings": settings}


# ---------------------------------------------------------------------------------------------
# Training stage: enrolment and resumption


def test_train_stage_enrols_the_gallery_and_resumes(trained_stage: dict, toy: dict) -> None:
    from pipeline.gaitcrafter.stage import train_stage
    from pipeline.gaitcrafter.train import load_gaitcrafter

    info = trained_stage["info"]
    assert info["train_identities"] == list(TRAIN) and info["enrolled_identities"] == list(TEST)
    assert info["step"] == MICRO.steps and info["resumed_from"] == 0 and info["seconds"] > 0
    # train split (3 conditions x 2 views) + one gallery sequence per view of each test identity
    assert info["sequences"] == len(TRAIN) * 3 * 2 + len(TEST) * 2
    model, _ = load_gaitcrafter(info["checkpoint"])
    assert set(model.vocabulary.identities) == set(TRAIN) | set(TEST)
    on_disk = json.loads((trained_stage["out"] / "model.json").read_text())
    assert on_disk["checkpoint"] == info["checkpoint"]
    # More steps: the same run folder, resumed from the last checkpoint.
    longer = train_stage(
        manifest=str(toy["manifest"]), silhouettes=[str(toy["store"])], out_dir=str(trained_stage["out"]),
        model=str(trained_stage["out"] / "model2.json"), dataset="toy", preset="tiny",
        settings={**trained_stage["settings"], "steps": MICRO.steps + 2}, enrol="gallery",
    )  # fmt: skip
    assert longer["run"] == info["run"] and longer["resumed_from"] == MICRO.steps
    assert longer["step"] == MICRO.steps + 2
    # Without enrolment the test identities are unknown.
    alone = train_stage(
        manifest=str(toy["manifest"]), silhouettes=[str(toy["store"])], out_dir=str(trained_stage["out"]),
        model=str(trained_stage["out"] / "model3.json"), dataset="toy", preset="tiny",
        settings=trained_stage["settings"], enrol="none",
    )  # fmt: skip
    assert alone["run"] != info["run"] and alone["enrolled_identities"] == []


def test_shipped_checkpoint_is_used_only_when_its_fingerprint_matches(trained_stage: dict, toy: dict) -> None:
    from pipeline.gaitcrafter.pretrained import (
        ENROL_SELECTION,
        WEIGHTS_FILE,
        PretrainedError,
        export_from_model_json,
        read_pretrained,
    )
    from pipeline.gaitcrafter.sample import sample
    from pipeline.gaitcrafter.stage import ENROL, enrol_selection, train_stage
    from pipeline.gaitcrafter.train import load_gaitcrafter

    assert {e: enrol_selection(e) for e in ENROL} == ENROL_SELECTION
    out, settings = trained_stage["out"], trained_stage["settings"]
    world = {"seed": 7, "identities": 6}
    common = {"manifest": str(toy["manifest"]), "silhouettes": [str(toy["store"])], "dataset": "toy",
              "preset": "tiny", "enrol": "gallery"}  # fmt: skip
    made = train_stage(**common, out_dir=str(out / "made"), model=str(out / "made.json"), settings=settings,
                       world=world)  # fmt: skip
    assert made["source"]["kind"] == "trained" and made["cpu_seconds"] > 0
    shipped = export_from_model_json(out / "made.json", out / "shipped", "pytest")
    info = read_pretrained(shipped)
    assert info["step"] == made["step"] and info["fingerprint"] == made["fingerprint"]
    # Same world and training config: the shipped weights are used, nothing is trained.
    used = train_stage(**common, out_dir=str(out / "use"), model=str(out / "use.json"), settings=settings,
                       world=world, pretrained=str(shipped))  # fmt: skip
    assert used["source"]["kind"] == "pretrained" and used["source"]["made_by"] == "pytest"
    assert used["step"] == made["step"] and used["first_loss"] is None
    model, _ = load_gaitcrafter(used["checkpoint"])
    reference, _ = load_gaitcrafter(made["checkpoint"])
    cond = model.conditions(["s01"], ["000"], ["normal"], ["none"])
    a = sample(model, cond, n_frames=3, steps=2, seed=5).soft
    b = sample(reference, cond, n_frames=3, steps=2, seed=5).soft
    assert np.abs(a - b).max() < 0.05  # float16 storage: rounding only
    # Another world or another training config (steps): trained, and model.json says why.
    for changed, key in (
        ({"world": {**world, "seed": 8}}, "world"),
        ({"settings": {**settings, "steps": 3}}, "steps"),
    ):
        kwargs = {"settings": settings, "world": world, **changed}
        other = train_stage(**common, out_dir=str(out / key), model=str(out / f"{key}.json"),
                            pretrained=str(shipped), **kwargs)  # fmt: skip
        assert other["source"]["kind"] == "trained" and key in other["source"]["not_used_because"]
    (shipped / WEIGHTS_FILE).write_bytes(b"not weights")
    with pytest.raises(PretrainedError, match="sha256 differs"):
        read_pretrained(shipped)


def test_identity_bootstrap_widens_with_fewer_identities() -> None:
    from pipeline.gaitcrafter.stage import identity_bootstrap

    hits = np.array([1, 1, 0, 1] * 10, dtype=float)
    mean, low, high = identity_bootstrap(hits, [f"p{i % 10}" for i in range(40)])
    assert mean == 75.0 and low <= mean <= high
    _, low2, high2 = identity_bootstrap(hits, [f"p{i % 2}" for i in range(40)])
    assert (high2 - low2) >= (high - low)
    assert identity_bootstrap(hits, ["one"] * 40)[1:] == (None, None)
    # All probes of one identity right, the other's wrong: the interval spans nearly 0..100.
    _, low3, high3 = identity_bootstrap(np.array([1.0] * 5 + [0.0] * 5), ["a"] * 5 + ["b"] * 5)
    assert low3 == 0.0 and high3 == 100.0


# ---------------------------------------------------------------------------------------------
# The sweep adapter


def _job(toy: dict, task: str, driving: str, reference_subject: str, seed: int = 4, **params):
    from pipeline.generation.generators import Driving, GenerationJob, Reference

    rows = {r["sequence_id"]: r for r in toy["rows"]}
    driving_row = rows[driving]
    plan = {
        "job_id": f"x/{driving}",
        "dataset": "toy",
        "task": task,
        "scenario": "x",
        "driving_sequence": driving,
        "driving_subject": driving_row["subject"],
        "reference_sequence": f"{reference_subject}/nm-01/000",
        "reference_subject": reference_subject,
        "reference_frame": 0,
        "seed": seed,
        "shard": "shard-0000",
    }
    return GenerationJob(
        job_id=plan["job_id"],
        reference=Reference(image=np.zeros((96, 64, 3), np.uint8)),
        driving=Driving(keypoints=np.zeros((10, 17, 3), np.float32), height=96, width=64, fps=25.0),
        seed=seed,
        params={"steps": 2, **params},
        context={"plan": plan, "driving_row": driving_row},
    )


def test_silhouette_generators_constant_matches_the_registry() -> None:
    from pipeline.gaitcrafter import SILHOUETTE_GENERATORS
    from pipeline.generation.generators import REGISTRY, output_of

    assert {name for name, factory in REGISTRY.items() if output_of(factory) == "silhouette"} == set(
        SILHOUETTE_GENERATORS
    )


def test_gaitcrafter_adapter_conditions_restoration_and_transfer(trained_stage: dict, toy: dict) -> None:
    from pipeline.generation.generators import GenerationError, make_generator

    generator = make_generator("gaitcrafter", checkpoint=str(trained_stage["out"] / "model.json"))
    generator.load()
    try:
        restored = generator.generate(_job(toy, "restoration", "t02/cl-01/090", "t02"))
        transferred = generator.generate(_job(toy, "transfer", "t02/cl-01/090", "t03"))
        again = generator.generate(_job(toy, "transfer", "t02/cl-01/090", "t03"))
        chosen = generator.generate(_job(toy, "transfer", "t02/cl-01/090", "t03", identity_from="driving"))
        with pytest.raises(GenerationError, match="'s09' .*not a GaitCrafter training identity"):
            generator.generate(_unknown(toy))
        missing = _job(toy, "restoration", "t02/cl-01/090", "t02")
        missing.context = {}
        with pytest.raises(GenerationError, match="lacks its plan row"):
            generator.generate(missing)
    finally:
        generator.close()
    # Silhouette output at the driving size and length, binary, with the conditioning in the notes.
    assert restored.frames.shape == (10, 96, 64, 3) and set(np.unique(restored.frames)) <= {0, 255}
    assert restored.notes["output"] == "silhouette" and restored.fps == 25.0
    assert restored.notes["identity"] == "t02" and restored.notes["identity_from"] == "driving"
    # Transfer: the reference identity's token with the driving sequence's covariates.
    assert transferred.notes["identity"] == "t03" and transferred.notes["identity_from"] == "reference"
    assert transferred.notes["covariates"] == {"view": "090", "clothing": "coat", "bag": "none"}
    assert chosen.notes["identity"] == "t02"
    assert np.array_equal(transferred.frames, again.frames)  # the job's seed fixes the sample
    assert not np.array_equal(transferred.frames, restored.frames)


def _unknown(toy: dict):
    job = _job(toy, "restoration", "t02/cl-01/090", "t02")
    job.context = {**job.context, "plan": {**job.context["plan"], "driving_subject": "s09"}}
    return job


def test_render_silhouette_frames_round_trips_through_a_mask() -> None:
    import cv2

    from pipeline.generation.generators.gaitcrafter import render_silhouette_frames
    from pipeline.perception.segmentation import VideoSegmentationBackend

    clip = _walker(6, 0.0, 3)[:, :, 10:54]
    frames, placement = render_silhouette_frames(clip, 192, 256)
    assert frames.shape == (3, 192, 256, 3) and placement["scale"] == 3.0
    masks = VideoSegmentationBackend().segment(frames).masks
    top, left, h, w = placement["box"]
    assert not masks[:, :, :left].any() and not masks[:, :, left + w :].any()
    back = np.stack([cv2.resize(m[top : top + h, left : left + w].astype(np.uint8) * 255, (44, 64),
                                interpolation=cv2.INTER_NEAREST) for m in masks])  # fmt: skip
    assert np.array_equal(back, clip)
    with pytest.raises(ValueError, match=r"uint8 RGB"):
        VideoSegmentationBackend().segment(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="threshold"):
        VideoSegmentationBackend(threshold=1.5)


# ---------------------------------------------------------------------------------------------
# Perception of a silhouette video: masks from the video, no pose, skip reasons


@pytest.fixture(scope="module")
def silhouette_source(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One generated silhouette video (white walker on black) run through the five perception stages."""
    from pipeline.gaitcrafter import NO_POSE_REASON
    from pipeline.generation.generators.gaitcrafter import render_silhouette_frames
    from pipeline.io.video import write_video
    from pipeline.perception.crops import run_crops_stage
    from pipeline.perception.masks import run_masks_stage
    from pipeline.perception.pose import run_pose_stage
    from pipeline.perception.silhouettes import run_silhouettes_stage
    from pipeline.perception.skeleton_maps import run_skeleton_maps_stage

    root = tmp_path_factory.mktemp("gc_sil")
    frames, _ = render_silhouette_frames(_walker(7, 0.0, 12)[:, :, 10:54], 96, 128)
    video = write_video(root / "v.mp4", frames, 25.0)
    row = {
        **_row("t01", "nm-02", "090", "test", "probe"),
        "sequence_id": "baseline/t01/nm-02/090",
        "path_video": str(video),
        "frame_count": 12,
        "fps": 25.0,
        "width": 128,
        "height": 96,
        "attributes": json.dumps({"model": "gaitcrafter", "notes": {"output": "silhouette"},
                                  "driving_sequence": "t01/nm-02/090", "task": "restoration"}),
    }  # fmt: skip
    p = {
        s: (str(root / f"{s}.npz"), str(root / f"{s}.parquet"))
        for s in ("pose", "masks", "sil", "skel", "crops")
    }
    run_pose_stage([row], backend="none", store=p["pose"][0], status=p["pose"][1], min_valid_frames=6,
                   reason=NO_POSE_REASON)  # fmt: skip
    run_masks_stage(
        [row], backend="from_video", store=p["masks"][0], status=p["masks"][1], min_valid_frames=6
    )
    masks = {"masks_store": p["masks"][0], "masks_status": p["masks"][1]}
    run_silhouettes_stage([row], **masks, store=p["sil"][0], status=p["sil"][1], min_valid_frames=6)
    run_skeleton_maps_stage([row], pose_store=p["pose"][0], pose_status=p["pose"][1], store=p["skel"][0],
                            status=p["skel"][1], min_valid_frames=6)  # fmt: skip
    run_crops_stage(
        [row], **masks, store=p["crops"][0], status=p["crops"][1], min_valid_frames=6, size=(64, 32)
    )
    return {"row": row, "paths": p, "frames": frames}


def _status(path: str) -> dict:
    (row,) = read_table(path, STAGE_STATUS).to_pylist()
    return row


def test_silhouette_video_perception_and_skip_reasons(silhouette_source: dict) -> None:
    from pipeline.gaitcrafter import NO_POSE_REASON
    from pipeline.recognisers.data import GaitDataset

    p, sid = silhouette_source["paths"], silhouette_source["row"]["sequence_id"]
    assert _status(p["pose"][1])["error"] == NO_POSE_REASON
    assert _status(p["pose"][1])["backend"] == "none"
    masks = _status(p["masks"][1])
    assert masks["error"] is None and masks["valid_frames"] == 12 and masks["backend"] == "from_video"
    sil = read_frame_store(p["sil"][0]).get(sid, "sil")
    assert _status(p["sil"][1])["error"] is None and sil.shape == (12, 64, 64) and sil.max() == 255
    assert f"pose: {NO_POSE_REASON}" in _status(p["skel"][1])["error"]
    assert "no RGB to crop: the generator outputs silhouettes" in _status(p["crops"][1])["error"]
    # The recognisers see it the same way: silhouettes usable, skeleton maps and crops skipped with why.
    stores = {"silhouettes": [p["sil"][0]], "skeleton_maps": [p["skel"][0]], "crops": [p["crops"][0]]}
    rows = [silhouette_source["row"]]
    assert len(GaitDataset.from_stores(rows, stores, "silhouette", labels=[])) == 1
    skel = GaitDataset.from_stores(rows, stores, "skeleton_map", labels=[])
    assert len(skel) == 0 and "no pose estimated" in skel.skipped[sid]
    rgb = GaitDataset.from_stores(rows, stores, "rgb", labels=[])
    assert len(rgb) == 0 and "no RGB to crop" in rgb.skipped[sid]


def test_metrics_of_silhouette_output_are_null_with_reasons(silhouette_source: dict, tmp_path: Path) -> None:
    """The metrics stage on a silhouette shard: empty pose store read, RGB metrics and keypoint / flow
    diagnostics null with their reasons (not errors), the scale-free thickening index measured."""
    import pipeline.study.aggregate  # noqa: F401  (registers the metrics contracts)
    from pipeline.contracts import CONTRACTS
    from pipeline.evaluation.metrics import SILHOUETTE_POSE_REASON, SILHOUETTE_RGB_REASON, run_metrics_stage
    from pipeline.perception.masks import run_masks_stage
    from pipeline.perception.pose import run_pose_stage
    from pipeline.runner import summarise

    row, p = silhouette_source["row"], silhouette_source["paths"]
    # The "real" driving sequence: the same video, perceived as a real source would be (masks only here).
    real_row = {**row, "sequence_id": "t01/nm-02/090", "attributes": None}
    run_pose_stage([real_row], backend="none", store=str(tmp_path / "rp.npz"), status=str(tmp_path / "rp.parquet"),
                   min_valid_frames=6)  # fmt: skip
    run_masks_stage([real_row], backend="from_video", store=str(tmp_path / "rm.npz"),
                    status=str(tmp_path / "rm.parquet"), min_valid_frames=6)  # fmt: skip
    real_manifest = write_table([real_row], tmp_path / "real.parquet", MANIFEST)
    generated = write_table([row], tmp_path / "generated.parquet", MANIFEST)
    visual_out, diag_out = run_metrics_stage(
        generated_manifest=str(generated), gen_pose=p["pose"][0], gen_masks=p["masks"][0],
        real_manifest=str(real_manifest), real_pose_summary=str(summarise([tmp_path / "rp.parquet"], tmp_path / "ps.parquet")),
        real_masks_summary=str(summarise([tmp_path / "rm.parquet"], tmp_path / "ms.parquet")), settings={},
        visual_out=str(tmp_path / "visual.parquet"), diagnostics_out=str(tmp_path / "diag.parquet"),
    )  # fmt: skip
    (visual,) = read_table(visual_out, CONTRACTS["visual_metrics"]).to_pylist()
    (diag,) = read_table(diag_out, CONTRACTS["diagnostics"]).to_pylist()
    assert visual["error"] is None and diag["error"] is None and visual["model"] == "gaitcrafter"
    assert (
        visual["ssim"] is None
        and visual["psnr"] is None
        and visual["lpips"] is None
        and visual["frames"] == 12
    )
    notes = json.loads(visual["notes"])
    assert notes["null_reasons"] == dict.fromkeys(("ssim", "psnr", "lpips"), SILHOUETTE_RGB_REASON)
    assert "lpips" not in notes and "policy" not in notes  # no AlexNet / mask-policy notes for silhouettes
    assert diag["foot_sliding"] is None and diag["cadence_error"] is None and diag["flow_divergence"] is None
    assert json.loads(diag["notes"])["foot_sliding"] == SILHOUETTE_POSE_REASON
    assert diag["thickening_index"] == pytest.approx(1.0)  # the same masks on both sides


# ---------------------------------------------------------------------------------------------
# Augmentation: variant names, assembly, one variant end to end


def test_variant_names_and_needs() -> None:
    from pipeline.gaitcrafter.stage import variant_names, variant_needs, variant_percent

    names = variant_names(
        ["untrained", "real", "real+same", "novel-only", "low-label", "low-label+novel"], [25, 50]
    )
    assert names[0] == "untrained" and variant_needs("untrained") == ()
    names = names[1:]
    assert names == ["real", "real+same", "novel-only", "real-25pct", "real-50pct", "real-25pct+novel",
                     "real-50pct+novel"]  # fmt: skip
    assert [variant_needs(n) for n in ("real", "real+same", "novel-only", "real-50pct+novel")] == [
        (), ("same",), ("novel",), ("novel",)
    ]  # fmt: skip
    assert variant_percent("real-50pct+same") == 50.0 and variant_percent("real+same") is None


def test_synthesis_keeps_test_identities_out(trained_stage: dict, tmp_path: Path) -> None:
    from pipeline.gaitcrafter.stage import synthesize_stage

    model = str(trained_stage["out"] / "model.json")
    same = synthesize_stage(model=model, out_dir=str(tmp_path / "same"), kind="same", dataset="toy",
                            per_identity=1, sampling={"steps": 2}, covariates={"clothing": ["coat"]})  # fmt: skip
    rows = read_table(same["manifest"], MANIFEST).to_pylist()
    assert sorted(r["subject"] for r in rows) == list(TRAIN)  # enrolled test identities never appear
    assert all(json.loads(r["attributes"])["coat"] for r in rows) and same["seconds"] > 0
    novel = synthesize_stage(model=model, out_dir=str(tmp_path / "novel"), kind="novel", dataset="toy",
                             per_identity=2, novel_identities=2, sampling={"steps": 2})  # fmt: skip
    rows = read_table(novel["manifest"], MANIFEST).to_pylist()
    parents = {p for r in rows for p in json.loads(r["attributes"])["identity_weights"]}
    assert parents <= set(TRAIN) and len({r["subject"] for r in rows}) == 2
    with pytest.raises(ValueError, match=r"unknown clothing value\(s\) \['hat'\]"):
        synthesize_stage(model=model, out_dir=str(tmp_path / "bad"), kind="same", dataset="toy",
                         per_identity=1, sampling={"steps": 2}, covariates={"clothing": ["hat"]})  # fmt: skip


def test_augmentation_variant_trains_and_scores_on_the_real_test_split(
    trained_stage: dict, toy: dict, tmp_path: Path
) -> None:
    from pipeline.gaitcrafter.stage import (
        AUGMENTATION,
        augment_variant_stage,
        augmentation_table_stage,
        synthesize_stage,
    )

    model = str(trained_stage["out"] / "model.json")
    synthesize_stage(model=model, out_dir=str(tmp_path / "novel"), kind="novel", dataset="toy", per_identity=2,
                     novel_identities=2, sampling={"steps": 2})  # fmt: skip
    common = {
        "dataset": "toy", "real_manifest": str(toy["manifest"]), "real_silhouettes": [str(toy["store"])],
        "recogniser": "deepgaitv2", "model_options": {"channels": [4, 4, 8, 8], "embed_dim": 16, "parts": 4},
        "train_settings": {"iterations": 2, "p": 2, "k": 2, "frames": 4, "frames_skip_num": 0,
                           "sample_type": "fixed_unordered", "optimizer": "adam", "lr": 0.001, "save_every": 2},
        "protocol": "generic", "metric": "euc", "threads": 1, "note": "toy",
    }  # fmt: skip
    outputs = []
    for variant, synthetic in (("untrained", {}), ("real", {}), ("real+novel", {"novel": str(tmp_path / "novel")}),
                               ("novel-only", {"novel": str(tmp_path / "novel")})):  # fmt: skip
        out = tmp_path / variant / "retrieval.parquet"
        rows = augment_variant_stage(**common, variant=variant, synthetic=synthetic, out_dir=str(tmp_path / variant),
                                     out=str(out))  # fmt: skip
        outputs.append(str(out))
        first = rows[0]
        assert first["variant"] == variant and first["note"] == "toy"
        assert first["iterations"] == (0 if variant == "untrained" else 2)
        expected_synthetic = {"untrained": 0, "real": 0, "real+novel": 4, "novel-only": 4}[variant]
        assert first["synthetic_sequences"] == expected_synthetic
        assert (
            first["real_sequences"]
            == {"untrained": 18, "real": 18, "real+novel": 18, "novel-only": 0}[variant]
        )
        assert first["identities"] == {"untrained": 3, "real": 3, "real+novel": 5, "novel-only": 2}[variant]
        overall = [r for r in rows if r["condition"] == "Overall"]
        assert overall and all(r["probes"] == len(TEST) * 2 * 2 for r in overall)  # nm-02 + cl-01, 2 views
        conditions = {r["condition"] for r in rows}
        assert {"Overall", "condition=nm-02", "condition=cl-01"} <= conditions  # generic: per probe condition
        assert all(r["value"] is None or 0.0 <= r["value"] <= 100.0 for r in rows)
        # Probes of the test split only: the gallery (nm-01) is never a probe condition.
        assert "condition=nm-01" not in conditions
        # Every Rank-1 row carries its identity-bootstrap CI around the value; other metrics none.
        for r in rows:
            if r["metric"] == "Rank-1":
                assert r["ci_low"] is not None and r["ci_low"] <= r["value"] + 1e-9 <= r["ci_high"] + 2e-9
            else:
                assert r["ci_low"] is None and r["ci_high"] is None
    table = read_table(augmentation_table_stage(inputs=outputs, out=str(tmp_path / "augmentation.parquet")),
                       AUGMENTATION)  # fmt: skip
    assert set(table.column("variant").to_pylist()) == {"untrained", "real", "real+novel", "novel-only"}
    # The untrained row is the seeded initialisation: no training log, a checkpoint at iteration 0.
    assert (tmp_path / "untrained" / "untrained.pt").is_file() and not (
        tmp_path / "untrained" / "train"
    ).exists()
    with pytest.raises(ValueError, match=r"needs the synthetic set\(s\) \['same'\]"):
        augment_variant_stage(**common, variant="real+same", synthetic={}, out_dir=str(tmp_path / "x"),
                              out=str(tmp_path / "x.parquet"))  # fmt: skip
    with pytest.raises(ValueError, match="does not read silhouettes"):
        augment_variant_stage(**{**common, "recogniser": "skeletongait"}, variant="real", synthetic={},
                              out_dir=str(tmp_path / "y"), out=str(tmp_path / "y.parquet"))  # fmt: skip


def test_retrieval_protocol_rows_is_the_real_baseline_code() -> None:
    from pipeline.evaluation.retrieval import protocol_rows

    base = {"channels": 1, "parts": 1, "error": None}
    rows = [
        {**base, "sequence_id": "a/g", "subject": "a", "condition": "nm-01", "view": "0", "role": "gallery", "embedding": [0.0]},
        {**base, "sequence_id": "b/g", "subject": "b", "condition": "nm-01", "view": "0", "role": "gallery", "embedding": [10.0]},
        {**base, "sequence_id": "a/p", "subject": "a", "condition": "nm-02", "view": "0", "role": "probe", "embedding": [1.0]},
        {**base, "sequence_id": "b/p", "subject": "b", "condition": "cl-01", "view": "0", "role": "probe", "embedding": [2.0]},
    ]  # fmt: skip
    table = pl.DataFrame(rows, schema_overrides={"embedding": pl.List(pl.Float32)})
    out = {(r["condition"], r["metric"]): r["value"] for r in
           protocol_rows(table, protocol="generic", metric="euc", dataset="d", recogniser="r")}  # fmt: skip
    assert (
        out[("Overall", "Rank-1")] == 50.0
        and out[("condition=nm-02", "Rank-1")] == 100.0
        and out[("condition=cl-01", "Rank-1")] == 0.0
    )
    no_gallery = table.filter(pl.col("role") == "probe")
    assert protocol_rows(no_gallery, protocol="generic", metric="euc", dataset="d", recogniser="r") == []


# ---------------------------------------------------------------------------------------------
# Report


def _quality(person_generated: float, same_beats: float) -> pl.DataFrame:
    rows = [
        {"dataset": "w", "metric": "person_like", "generated": person_generated, "real": 0.97, "note": None},
        {"dataset": "w", "metric": "gei_iou_same", "generated": 0.51, "real": None, "note": None},
        {"dataset": "w", "metric": "gei_iou_other", "generated": 0.50, "real": None, "note": None},
        {
            "dataset": "w",
            "metric": "fraction_same_beats_other_gei",
            "generated": same_beats,
            "real": None,
            "note": None,
        },
    ]
    return pl.DataFrame(rows, schema={"dataset": pl.Utf8, "metric": pl.Utf8, "generated": pl.Float64,
                                      "real": pl.Float64, "note": pl.Utf8})  # fmt: skip


def test_report_says_when_samples_are_poor_with_the_numbers() -> None:
    from pipeline.study.report.gaitcrafter import quality_verdict

    poor = quality_verdict(_quality(0.0, 0.48))
    assert poor.startswith("The samples are poor")
    assert "0.0 % of generated frames are person-like (real frames: 97.0 %)" in poor
    assert "are not person-shaped and carry no identity" in poor and "48 %" in poor
    good = quality_verdict(_quality(0.9, 0.95))
    assert good.startswith("Sample quality:") and "90.0 %" in good


def test_report_gaitcrafter_section_and_skipped_recognisers(tmp_path: Path) -> None:
    from pipeline.gaitcrafter.stage import AUGMENTATION, NOVELTY, QUALITY
    from pipeline.study.report.page import build_report
    from pipeline.study.report.sections import not_evaluated

    aug = []
    for variant, r1 in (("untrained", 30.0), ("real", 40.0), ("real+novel", 45.0)):
        for condition in ("Overall", "nm-02"):
            for metric, value in (("Rank-1", r1), ("mAP", r1 / 2)):
                aug.append({"dataset": "w", "variant": variant, "recogniser": "deepgaitv2", "protocol": "generic",
                            "condition": condition, "metric": metric, "value": value, "probes": 144, "real_sequences": 18,
                            "synthetic_sequences": 0 if variant == "real" else 32, "identities": 8,
                            "iterations": 60, "train_seconds": 50.0, "embed_seconds": 3.0,
                            "note": "the generator also saw the gallery"})  # fmt: skip
    paths = {
        "quality": write_table(_quality(0.0, 0.48), tmp_path / "quality.parquet", QUALITY),
        "novelty": write_table(
            [
                {
                    "dataset": "w",
                    "comparison": "vs_generated_training",
                    "statistic": "summary.fraction_captured_by_training",
                    "value": 0.75,
                }
            ],
            tmp_path / "novelty.parquet",
            NOVELTY,
        ),  # fmt: skip
        "augmentation": write_table(aug, tmp_path / "augmentation.parquet", AUGMENTATION),
    }
    (tmp_path / "model.json").write_text(json.dumps({"preset": "tiny", "step": 80, "train_identities": ["a"],
                                                     "enrolled_identities": ["b", "c"], "views": ["090"]}))  # fmt: skip
    html_path = build_report(
        tmp_path / "no_tables", None, tmp_path / "report.html",
        gaitcrafter={"w": {"model": str(tmp_path / "model.json"), **{k: str(v) for k, v in paths.items()}}},
    )  # fmt: skip
    html = html_path.read_text()
    assert 'id="gaitcrafter"' in html and "The samples are poor" in html
    assert "real+novel" in html and "+5.0" in html  # Rank-1 difference to the real-only variant
    assert "0.750" in html and "the generator also saw the gallery" in html
    assert (
        "144 probes: one probe is 0.69 points of Rank-1; the variants differ from real by at most 5.0" in html
    )
    assert "Untrained, the recogniser already reaches 30.0 % Rank-1 (trained on real: 40.0 %)" in html
    assert "2 test identities enrolled" in html
    # Without the GaitCrafter spec the section is left out.
    assert (
        'id="gaitcrafter"' not in build_report(tmp_path / "no_tables", None, tmp_path / "r2.html").read_text()
    )
    probes = pl.DataFrame({
        "dataset": ["w"] * 4, "model": ["gaitcrafter"] * 4, "recogniser": ["deepgaitv2", "deepgaitv2", "biggait", "biggait"],
        "error": [None, None, "crops: skipped (no RGB to crop)", "crops: skipped (no RGB to crop)"],
    })  # fmt: skip
    assert not_evaluated(probes) == [
        "w · gaitcrafter × biggait: none of 2 videos evaluated (crops: skipped (no RGB to crop))"
    ]


# ---------------------------------------------------------------------------------------------
# Configuration


def _config(**gaitcrafter) -> dict:
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "demo.yaml").read_text())
    config["gaitcrafter"] = {**config["gaitcrafter"], **gaitcrafter}
    return config


def test_gaitcrafter_config_validation() -> None:
    from pipeline.config import ConfigError
    from pipeline.study.config import validate_study as validate_config

    config = validate_config(_config())
    assert config["gaitcrafter"]["augmentation"]["covariates"] == {
        "views": None,
        "clothing": None,
        "bag": None,
    }
    bad_clothing = _config(augmentation={"covariates": {"clothing": ["normal", "hat"]}})
    with pytest.raises(ConfigError, match="gaitcrafter/augmentation/covariates/clothing/1"):
        validate_config(bad_clothing)
    with pytest.raises(ConfigError, match=r"unknown view value\(s\) \['045'\] for dataset world"):
        validate_config(_config(augmentation={"covariates": {"views": ["045"]}}))
    with pytest.raises(ConfigError, match=r"gaitcrafter/settings: gaitcrafter: unknown key\(s\) \['stepz'\]"):
        validate_config(_config(settings={"stepz": 3}))
    with pytest.raises(ConfigError, match="gaitcrafter.sample_steps"):
        validate_config(_config(settings={"sample_steps": 5000}))
    with pytest.raises(ConfigError, match="Additional properties are not allowed"):
        validate_config(_config(augmentation={"variantz": ["real"]}))
    with pytest.raises(ConfigError, match="gaitcrafter/pretrained: nowhere is not a folder"):
        validate_config(_config(pretrained="nowhere"))
    with pytest.raises(ConfigError, match=r"gaitcrafter/datasets: unknown datasets \['nope'\]"):
        validate_config(_config(datasets=["nope"]))
    no_deepgait = _config()
    no_deepgait["recognisers"]["names"] = ["skeletongait"]
    with pytest.raises(ConfigError, match="novelty/recogniser: deepgaitv2 is not in recognisers/names"):
        validate_config(no_deepgait)


def test_report_reads_the_novelty_numbers() -> None:
    from pipeline.study.report.gaitcrafter import novelty_readings

    weak = {
        ("vs_generated_training", "real_baseline.fraction_other_closer"): 0.81,
        ("vs_real_training", "summary.training_nn.mean"): 24.6,
        ("vs_real_training", "real_baseline.own_nn.mean"): 4.1,
    }
    lines = novelty_readings(weak)
    assert len(lines) == 2 and "81 %" in lines[0] and "domain gap" in lines[1] and "24.60 vs 4.10" in lines[1]
    strong = {
        ("vs_generated_training", "real_baseline.fraction_other_closer"): 0.1,
        ("vs_real_training", "summary.training_nn.mean"): 5.0,
        ("vs_real_training", "real_baseline.own_nn.mean"): 4.1,
    }
    assert novelty_readings(strong) == []


def test_generation_stage_skips_the_reference_image_for_label_conditioned_generators() -> None:
    from pipeline.generation.generate import label_only_reference
    from pipeline.generation.generators import REGISTRY

    assert REGISTRY["gaitcrafter"].uses_reference is False
    assert getattr(REGISTRY["static"], "uses_reference", True) is True
    reference = label_only_reference({"reference_sequence": "w010/nm-01/090", "reference_frame": 3})
    assert (
        reference.sequence_id == "w010/nm-01/090" and reference.frame_index == 3 and reference.image.size == 0
    )

"""The world's plan: which identities exist, how their factors are seeded, and which sequences to render.

An identity has three independent factors, each drawn from its own seed: ``body`` (lengths and
thickness), ``motion`` (a procedural gait style or a CMU mocap subject) and ``appearance`` (skin, hair,
clothes). Twins share every factor with a base identity except one, so the study can ask whether a
recogniser follows motion or appearance with ground truth. Everything here is pure planning: no
rendering, cheap enough for Snakemake to call when it builds the DAG.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.contracts import shard_name, shard_of

FACTORS = ("body", "motion", "appearance")
# Condition keys of the world's hard cases: recorded in a sequence's attributes only when set, so the
# attributes of ordinary sequences stay as they were.
HARD_CASE_KEYS = ("rotate", "walkers", "resolution", "frames")


@dataclass(frozen=True)
class IdentityPlan:
    subject: str
    index: int
    split: str  # train | test
    seeds: dict[str, int]  # factor -> seed
    sources: dict[str, str]  # factor -> subject whose factor this is (differs from `subject` for twins)
    motion_source: str  # procedural | mocap
    mocap_subject: str | None = None
    twin_of: str | None = None
    twin_kind: str | None = None  # motion_only | appearance_only


@dataclass(frozen=True)
class SequencePlan:
    sequence_id: str
    subject: str
    condition: str
    view: float
    split: str
    role: str
    shard: str
    seed: int
    condition_spec: dict = field(default_factory=dict)

    def attributes(self, identity: IdentityPlan) -> dict:
        extra = {k: self.condition_spec[k] for k in HARD_CASE_KEYS if self.condition_spec.get(k)}
        return extra | {
            "world_view_deg": self.view,
            "background": self.condition_spec.get("background", "studio"),
            "coat": bool(self.condition_spec.get("coat", False)),
            "bag": bool(self.condition_spec.get("bag", False)),
            "reverse": bool(self.condition_spec.get("reverse", False)),
            "body_id": identity.sources["body"],
            "motion_id": identity.sources["motion"],
            "appearance_id": identity.sources["appearance"],
            "motion_source": identity.motion_source,
            "mocap_subject": identity.mocap_subject,
            "twin_of": identity.twin_of,
            "twin_kind": identity.twin_kind,
        }


def subject_name(index: int) -> str:
    return f"w{index + 1:03d}"


def view_label(view: float) -> str:
    """Folder label of a view angle: zero-padded degrees like OpenGait's '090' (decimals kept if any)."""
    return f"{int(view):03d}" if float(view).is_integer() else f"{view:07.3f}".rstrip("0")


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def plan_identities(world: dict, mocap_subjects: list[str]) -> list[IdentityPlan]:
    """All identities of a world: the base identities, then the twins (always test identities)."""
    n, n_train, seed = world["identities"], world["train_identities"], world["seed"]
    mocap_slots = _mocap_slots(world, len(mocap_subjects))
    identities: list[IdentityPlan] = []
    for i in range(n):
        subject = subject_name(i)
        mocap = mocap_subjects[mocap_slots.index(i) % len(mocap_subjects)] if i in mocap_slots else None
        identities.append(
            IdentityPlan(
                subject=subject,
                index=i,
                split="train" if i < n_train else "test",
                seeds={f: _seed(seed, i, k) for k, f in enumerate(FACTORS)},
                sources=dict.fromkeys(FACTORS, subject),
                motion_source="mocap" if mocap else "procedural",
                mocap_subject=mocap,
            )
        )
    test = [p for p in identities if p.split == "test"]
    twins = world.get("twins", {})
    kinds = ["motion_only"] * twins.get("motion_only", 0) + ["appearance_only"] * twins.get("appearance_only", 0)
    for k, kind in enumerate(kinds):
        base = test[k % len(test)]
        i = n + k
        subject = subject_name(i)
        fresh = {f: _seed(seed, i, j) for j, f in enumerate(FACTORS)}
        changed = "motion" if kind == "motion_only" else "appearance"
        seeds = {f: (fresh[f] if f == changed else base.seeds[f]) for f in FACTORS}
        sources = {f: (subject if f == changed else base.sources[f]) for f in FACTORS}
        # A motion-only twin gets a fresh procedural gait; an appearance-only twin keeps the base's motion.
        keeps_motion = changed != "motion"
        identities.append(
            IdentityPlan(
                subject=subject,
                index=i,
                split="test",
                seeds=seeds,
                sources=sources,
                motion_source=base.motion_source if keeps_motion else "procedural",
                mocap_subject=base.mocap_subject if keeps_motion else None,
                twin_of=base.subject,
                twin_kind=kind,
            )
        )
    return identities


def _mocap_slots(world: dict, available: int) -> list[int]:
    """Identity indices driven by mocap, spread over train and test so both splits see real kinematics."""
    n = world["identities"]
    source = world["motion_source"]
    if source == "procedural" or available == 0:
        return []
    count = n if source == "mocap" else min(world["mocap_identities"], n)
    if count == 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, count)})


def plan_sequences(world: dict, identities: list[IdentityPlan]) -> list[SequencePlan]:
    gallery = set(world["gallery_conditions"])
    plans = []
    for identity in identities:
        for c, condition in enumerate(world["conditions"]):
            for v, view in enumerate(world["views"]):
                sequence_id = f"{identity.subject}/{condition['name']}/{view_label(view)}"
                if identity.split == "train":
                    role = "train"
                else:
                    role = "gallery" if condition["name"] in gallery else "probe"
                plans.append(
                    SequencePlan(
                        sequence_id=sequence_id,
                        subject=identity.subject,
                        condition=condition["name"],
                        view=float(view),
                        split=identity.split,
                        role=role,
                        shard=shard_name(shard_of(sequence_id, world["shards"])),
                        seed=_seed(world["seed"], identity.index, 1000 + c, 2000 + v),
                        condition_spec=dict(condition),
                    )
                )
    return plans


def sequences_in_shard(plans: list[SequencePlan], shard: str) -> list[SequencePlan]:
    return [p for p in plans if p.shard == shard]


def identities_json(identities: list[IdentityPlan]) -> str:
    return json.dumps([asdict(p) for p in identities], indent=1)


def world_view_labels(config: dict, dataset: str) -> list[str] | None:
    """The view labels of a world dataset (as its manifest will carry them); None for other kinds."""
    spec = config["datasets"][dataset]
    if spec["kind"] != "world":
        return None
    return [view_label(v) for v in config["worlds"][spec["world"]]["views"]]

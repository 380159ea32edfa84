"""GaitCrafter: silhouette video diffusion with identity and covariate control (arXiv 2508.13300, rebuilt).

Only the abstract of the paper is known (see ``docs``/reference notes): a video diffusion model trained
from scratch on silhouettes, conditioned on identity embeddings and covariates (clothing, carried
object, view), whose identity embeddings can be interpolated into novel identities. Everything else
here — a diffusers ``UNet3DConditionModel`` in pixel space on 64×44 clips, four condition tokens,
DDPM training / DDIM sampling, the configs — is our design.

Modules: :mod:`.config` (tiny/full presets), :mod:`.model` (condition encoder + UNet),
:mod:`.train` (data, loop, checkpoints), :mod:`.sample` (sampling, novel identities, sweep jobs),
:mod:`.novelty` (distinctness of novel identities), :mod:`.quality` (sample-quality numbers),
:mod:`.augment` (synthetic training sets and the augmentation experiment's variants), :mod:`.stage`
(the workflow's entry points: training, quality, novelty, synthesis, augmentation variants).
Import the submodules directly; this package imports nothing heavy.
"""

# Generators whose videos are silhouettes, not RGB (see pipeline.generation.generators.base.OUTPUT_KINDS). The
# workflow reads this at parse time without importing the generators (that costs a second);
# tests/test_gaitcrafter_workflow.py checks it against every registered generator's ``output``.
SILHOUETTE_GENERATORS = frozenset({"gaitcrafter"})
# Why the pose stage (backend "none") skips their videos; skeleton maps repeat it.
NO_POSE_REASON = "no pose estimated: the generator outputs silhouettes (a pose model would guess on a blob)"

__all__ = [
    "NO_POSE_REASON",
    "SILHOUETTE_GENERATORS",
    "augment",
    "config",
    "model",
    "novelty",
    "quality",
    "sample",
    "stage",
    "train",
]

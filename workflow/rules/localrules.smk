# Rules that run on the submitting host under a cluster executor (`snakemake --profile slurm`) instead
# of as SLURM jobs. Each writes one small file from small inputs in about a second, so as a SLURM job
# it would cost far more in scheduling (submission, start-up, the first status check) than in work,
# and it needs no account or partition. Local runs are unaffected.
#   world_spec               - a world's config resolved into world.json
#   stage_summary            - concatenates a stage's per-shard status tables
#   sweep_plan               - the generation plan from the manifest and the pose summary (no arrays)
#   sweep_sheet              - plan x models
#   gaitcrafter_augmentation - concatenates the augmentation variants' one-row-per-variant tables
# Heavier one-file rules (index_world, real_retrieval, aggregate, report) stay cluster jobs: they read
# frame stores or every embedding, or bootstrap over the whole sweep.


localrules:
    world_spec,
    stage_summary,
    sweep_plan,
    sweep_sheet,
    gaitcrafter_augmentation,

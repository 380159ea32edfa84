"""Generators (animators) behind one interface.

Importing this package registers every generator: the built-ins (oracle, static, posewarp-sparse,
posewarp-dense), the perturbed oracles that calibrate the diagnostics (oracle-tempo, oracle-slide,
oracle-thick, oracle-stretch, oracle-swap; :mod:`~pipeline.generation.generators.controls`), the upstream adapters (magicanimate, animateanyone, unianimate, mtvcrafter) and
GaitCrafter (``gaitcrafter``: silhouette output, conditioned on identity and covariates).
"""

from pipeline.generation.generators import builtin, controls, gaitcrafter, posewarp, upstream  # noqa: F401  (registration)
from pipeline.generation.generators.base import (  # noqa: F401
    OUTPUT_KINDS,
    REGISTRY,
    Driving,
    GeneratedVideo,
    GenerationError,
    GenerationJob,
    Generator,
    Reference,
    make_generator,
    output_of,
    register_generator,
)

"""Generators (animators) behind one interface.

Importing this package registers every generator: the built-ins (oracle, static, posewarp-sparse,
posewarp-dense) and the upstream adapters (magicanimate, animateanyone, unianimate, mtvcrafter).
"""

from pipeline.generators import builtin, posewarp, upstream  # noqa: F401  (registration side effects)
from pipeline.generators.base import (  # noqa: F401
    REGISTRY,
    Driving,
    GeneratedVideo,
    GenerationError,
    GenerationJob,
    Generator,
    Reference,
    make_generator,
    register_generator,
)

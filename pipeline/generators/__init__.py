"""Generators (animators) behind one interface; importing this package registers the built-ins."""

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

# Importing the package registers the built-in generators (the upstream adapters register in
# pipeline.generators.upstream, imported by the generate stage).
from pipeline.generators import builtin, posewarp  # noqa: E402, F401
from pipeline.generators import upstream  # noqa: E402, F401

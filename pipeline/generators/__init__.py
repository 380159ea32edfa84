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

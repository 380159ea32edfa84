"""Adapters for the upstream animators; importing this package registers them.

``magicanimate`` (DensePose), ``animateanyone`` (Moore-AnimateAnyone, DWPose video), ``unianimate``
(DWPose folders + reference pose) and ``mtvcrafter`` (MTVCrafter-7B, SMPL-24 joints). Each runs the
upstream entry point from a user-provided checkout and env (``models.<name>.*`` config keys, see
:class:`~pipeline.generation.generators.upstream.common.UpstreamConfig`), and exposes its upstream defaults as
``DEFAULTS`` and its GPU needs as ``RESOURCES``.
"""

from pipeline.generation.generators.upstream import animateanyone, magicanimate, mtvcrafter, unianimate
from pipeline.generation.generators.upstream.common import (
    UpstreamConfig,
    UpstreamConfigError,
    UpstreamRunError,
)

# model name → its upstream's defaults and reported GPU needs (from each adapter's SPEC)
SPECS = {
    "magicanimate": magicanimate.SPEC,
    "animateanyone": animateanyone.SPEC,
    "unianimate": unianimate.SPEC,
    "mtvcrafter": mtvcrafter.SPEC,
}
DEFAULTS = {name: spec.defaults for name, spec in SPECS.items()}
RESOURCES = {name: spec.resources for name, spec in SPECS.items()}

__all__ = ["DEFAULTS", "RESOURCES", "SPECS", "UpstreamConfig", "UpstreamConfigError", "UpstreamRunError"]

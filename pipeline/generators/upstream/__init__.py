"""Adapters for the upstream animators; importing this package registers them.

``magicanimate`` (DensePose), ``animateanyone`` (Moore-AnimateAnyone, DWPose video), ``unianimate``
(DWPose folders + reference pose) and ``mtvcrafter`` (MTVCrafter-7B, SMPL-24 joints). Each runs the
upstream entry point from a user-provided checkout and env (``models.<name>.*`` config keys, see
:class:`~pipeline.generators.upstream.common.UpstreamConfig`), and exposes its upstream defaults as
``DEFAULTS`` and its GPU needs as ``RESOURCES``.
"""

from pipeline.generators.upstream import animateanyone, magicanimate, mtvcrafter, unianimate
from pipeline.generators.upstream.common import UpstreamConfig, UpstreamConfigError, UpstreamRunError

DEFAULTS = {
    "magicanimate": magicanimate.DEFAULTS,
    "animateanyone": animateanyone.DEFAULTS,
    "unianimate": unianimate.DEFAULTS,
    "mtvcrafter": mtvcrafter.DEFAULTS,
}
RESOURCES = {
    "magicanimate": magicanimate.RESOURCES,
    "animateanyone": animateanyone.RESOURCES,
    "unianimate": unianimate.RESOURCES,
    "mtvcrafter": mtvcrafter.RESOURCES,
}

__all__ = ["DEFAULTS", "RESOURCES", "UpstreamConfig", "UpstreamConfigError", "UpstreamRunError"]

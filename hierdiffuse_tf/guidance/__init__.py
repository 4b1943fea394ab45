"""Guidance: SGD (Eq. 6), standard CFG, and plain conditioning."""

from hierdiffuse_tf.guidance.guidance import (  # noqa: F401
    GuidedDenoiser, cfg_combine, semantic_groups, sgd_combine)

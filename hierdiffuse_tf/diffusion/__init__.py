"""Diffusion: the cosine schedule, the denoisers, the samplers and TCC."""

from hierdiffuse_tf.diffusion.denoiser import (  # noqa: F401
    Denoiser, MLPDenoiser, TimeEmbedding, TransformerDenoiser, make_denoiser)
from hierdiffuse_tf.diffusion.schedule import CosineSchedule, cosine_alpha_bar  # noqa: F401

"""DiffuRec and DreamRec adapted to CTR (Table 1): diffusion that generates the target side.

Both papers generate the representation of the next item from the behaviour
sequence and then rank candidates against it. For CTR we keep that generator
and feed its output ŷ to the shared head with the real target:
`head([ŷ, e_target, ŷ * e_target, h_seq])`.

What is kept and what changed (also in docs/experiments.md):

* The generator learns to reconstruct the embedding of *clicked* targets only
  (`recon_weight * mean_d (f(x_t, t, seq) - e_target)^2` over positives; a
  mean over the d dimensions, where HierDiffuse's L_recon (SPEC) sums them, so
  `recon_weight` here is per dimension: summed, the error swamped the BCE), as both
  papers learn from observed next items. The target is a stop-gradient copy,
  so the embeddings are not pulled towards easy-to-denoise vectors. It is
  layer-normalised, so its scale matches the unit-variance noise; the head
  receives the same normalised target beside ŷ.
* Inference is multi-step, as in both papers: DDIM with `sampler_steps` steps
  from x_T. We start from the mean of the noise (x_T = 0) instead of a random
  draw, so scores are deterministic.
* In training, the head sees a one-step generation from pure noise
  (x_T ~ N(0, I)), because running the sampler inside every training step
  would multiply its cost; this is the usual train/inference gap of these
  models.
* DiffuRec: by default (`denoiser="cross_attention"`) the noisy target
  representation plus the step embedding is one query token that attends over
  the encoded behaviours (keras-hub `TransformerDecoder` blocks) and predicts
  x0. DiffuRec's own approximator, `denoiser="sequence"`, adds the noised
  target to every token of the sequence and runs a transformer over it, the
  last token predicting x0: three transformer passes over the L behaviours per
  training step and one per sampler step, which made it the one model a table
  could not afford (docs/experiments.md gives both models' cost and AUC).
  DiffuRec's item-specific Gaussian embeddings and its rounding step are
  dropped: there is no retrieval over the catalogue in CTR. Its sequence
  transformer drops out no attention probabilities by default
  (`encoder_attention_dropout=False`): the same validation AUC on ml-100k, a
  step 22 % cheaper. DreamRec keeps them: without them it lost 0.0024.
* DreamRec: a sequence transformer gives the guidance h_seq; an MLP denoiser
  with classifier-free guidance (condition dropout, scale `cfg_scale`)
  generates the "oracle" item embedding. By default its reconstruction loss
  fits the guided mix `(1 + w) f(c) - w f(null)` that the sampler uses
  (`cfg_training="guided"`, as HierDiffuse's `guidance=cfg` does), where
  DreamRec's paper fits `f(c)` alone and mixes only when sampling
  (`cfg_training="conditional"`; docs/experiments.md compares the two). DreamRec's
  learning without negatives is kept for the generator; the head still learns
  from the negatives through the BCE.
"""

from __future__ import annotations

import abc
import warnings

import keras
import keras_hub
from keras import ops

from hierdiffuse_tf.config import DiffuRecConfig, DreamRecConfig, TargetDiffusionConfig
from hierdiffuse_tf.diffusion import samplers
from hierdiffuse_tf.diffusion.denoiser import MLPDenoiser, TimeEmbedding
from hierdiffuse_tf.diffusion.schedule import CosineSchedule
from hierdiffuse_tf.distribute import batch_random
from hierdiffuse_tf.guidance.guidance import GuidedDenoiser
from hierdiffuse_tf.layers import SequenceEncoder, masked_mean
from hierdiffuse_tf.models.base import Forward
from hierdiffuse_tf.models.sequence_base import SequenceCTRModel
from hierdiffuse_tf.utils import serializable


class TargetDiffusionModel(SequenceCTRModel, abc.ABC):
    """Shared training and sampling; subclasses give `predict_x0(x_t, t, context)`."""

    config_cls = TargetDiffusionConfig
    log_names = ("recon",)
    jit_train = True  # DiffuRec and DreamRec: measured faster under XLA on CPU (docs/performance.md).

    def __init__(self, config: TargetDiffusionConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.schedule = CosineSchedule(c.diffusion_steps, name="schedule")
        self.encoder = SequenceEncoder(self.sequence_length, c.encoder_layers, c.encoder_heads,
                                       c.encoder_ffn_dim, c.dropout, chunk_size=c.encoder_chunk,
                                       attention_dropout=c.encoder_attention_dropout,
                                       name="sequence_encoder")
        self.target_norm = keras.layers.LayerNormalization(name="target_norm")
        self.noise_seed = keras.random.SeedGenerator(name="diffusion_noise_seed")

    @abc.abstractmethod
    def predict_x0(self, x_t, t, context: dict, training=False):
        """The generator's x0 prediction; `context` holds tokens, mask and h_seq."""

    def fitted_x0(self, x_t, t, context: dict):
        """The x0 prediction that the reconstruction loss fits in training: by default
        the generator's own."""
        return self.predict_x0(x_t, t, context, training=True)

    def generate(self, context, batch, dim):
        """Inference: DDIM from x_T = 0 in `sampler_steps` steps."""
        T = self.config.diffusion_steps
        x_start = ops.zeros((batch, dim), context["h_seq"].dtype)  # bfloat16 under a mixed policy.
        return samplers.ddim_sample(lambda x, t: self.predict_x0(x, t, context), x_start, T,
                                    self.config.sampler_steps, self.schedule)

    def forward(self, features, training=False, labels=None) -> Forward:
        seq, mask, target = self.sequence(features)
        target = self.target_norm(target)  # (B, d), unit scale like the noise.
        tokens = self.encoder(seq, mask, training=training)  # (B, L, d)
        h_seq, _ = masked_mean(tokens, mask)  # (B, d)
        context = {"tokens": tokens, "mask": mask, "h_seq": h_seq}
        batch, dim = ops.shape(target)[0], self.config.embed_dim
        if not training:
            generated = self.generate(context, batch, dim)
            return Forward(logit=self.head(generated, target, h_seq, training=False))
        T = self.config.diffusion_steps
        x_T = batch_random(keras.random.normal, (batch, dim), seed=self.noise_seed)
        generated = self.predict_x0(x_T, ops.full((batch,), T, "int32"), context, training=True)
        logit = self.head(generated, target, h_seq, training=True)
        # Reconstruction of the clicked targets at a random step.
        x0 = ops.stop_gradient(target)
        t = self.schedule.sample_steps(batch, self.noise_seed)
        x_t = self.schedule.q_sample(x0, t, batch_random(keras.random.normal, (batch, dim), seed=self.noise_seed))
        # Mean over the d dimensions, not the sum: summed, the error (about d at the
        # start) swamped the BCE in every variable the two losses share (each clipped to
        # norm 1 on its own by `clipnorm`) and the head learned nothing.
        pred = ops.cast(self.fitted_x0(x_t, t, context), "float32")  # The loss in float32.
        error = ops.mean(ops.square(pred - ops.cast(x0, "float32")), axis=-1)
        if labels is None:  # Called without labels (not by `train_step`): every row counts.
            recon = ops.mean(error)
        else:  # The mean over the clicked rows.
            clicked = ops.cast(ops.reshape(labels, (-1,)), error.dtype)
            recon = ops.sum(error * clicked) / ops.maximum(ops.sum(clicked), 1.0)
        return Forward(logit=logit, aux_loss=self.config.recon_weight * recon, logs={"recon": recon})


@serializable
class DiffuRec(TargetDiffusionModel):
    """DiffuRec (Li et al., TOIS 2023) adapted to CTR; see the module docstring."""

    config_cls = DiffuRecConfig

    def __init__(self, config: DiffuRecConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.time_embedding = TimeEmbedding(c.embed_dim, name="time_embedding")
        self.noisy_projection = keras.layers.Dense(c.embed_dim, name="noisy_projection")
        if c.denoiser == "sequence":
            self.denoiser = SequenceEncoder(self.sequence_length, c.encoder_layers, c.encoder_heads,
                                            c.encoder_ffn_dim, c.dropout, name="denoiser")
        else:
            self.denoiser_blocks = [
                keras_hub.layers.TransformerDecoder(c.encoder_ffn_dim, c.encoder_heads, dropout=c.dropout,
                                                    normalize_first=True, name=f"denoiser_block_{i}")
                for i in range(max(c.encoder_layers, 1))]
        self.out = keras.layers.Dense(c.embed_dim, name="x0")

    def predict_x0(self, x_t, t, context, training=False):
        noisy = ops.expand_dims(self.noisy_projection(x_t) + self.time_embedding(t), 1)  # (B, 1, d)
        if self.config.denoiser == "sequence":
            tokens = self.denoiser(context["tokens"] + noisy, context["mask"], training=training)
            return self.out(tokens[:, -1])  # The newest position predicts x0.
        query = noisy  # One token: x_t asks the encoded behaviours what x0 is.
        with warnings.catch_warnings():
            # The block's self-attention over the one query token is a softmax over a
            # single key (its weight is always 1, so that sublayer is a learned linear map
            # of the query), which Keras warns about at every trace; silenced here only.
            warnings.filterwarnings("ignore", message="You are using a softmax over axis")
            for block in self.denoiser_blocks:
                query = block(query, context["tokens"], encoder_padding_mask=context["mask"],
                              use_causal_mask=False, training=training)
        return self.out(query[:, 0])


@serializable
class DreamRec(TargetDiffusionModel):
    """DreamRec (Yang et al., NeurIPS 2023) adapted to CTR; see the module docstring."""

    config_cls = DreamRecConfig

    def __init__(self, config: DreamRecConfig, **kwargs):
        super().__init__(config, **kwargs)
        c = config
        self.guided = GuidedDenoiser(
            MLPDenoiser(c.denoiser_units, c.denoiser_layers, c.time_embed_dim, name="denoiser"), mode="cfg",
            cond_dropout=c.cond_dropout, cfg_scale=c.cfg_scale, name="guided_denoiser")

    def predict_x0(self, x_t, t, context, training=False, mix=True):
        h_seq = context["h_seq"]
        present = ops.any(context["mask"], axis=-1, keepdims=True)
        return self.guided(x_t, t, ops.expand_dims(h_seq, 1), ops.ones_like(h_seq[:, :1]),
                           present, training=training, mix=mix)

    def fitted_x0(self, x_t, t, context):
        """The CFG mix (`cfg_training="guided"`), or f(c) alone (`"conditional"`)."""
        return self.predict_x0(x_t, t, context, training=True, mix=self.config.cfg_training == "guided")

"""`tf.distribute` support: strategies, replica loss scaling, shard-invariant noise.

Training under `MirroredStrategy` (one machine, several devices) or
`MultiWorkerMirroredStrategy` (several machines, `TF_CONFIG`) follows the
usual contract: the batch size in `TrainConfig` is the *global* batch, each
replica gets `batch_size / num_replicas` rows, and each replica's loss is
divided by the number of replicas so that the summed gradients equal the
gradient of the global mean.

Diffusion training draws noise per example (eps, t, dt). `batch_random` makes
those draws independent of how a batch is sharded: every replica draws the
noise of the whole global batch from the same seed state and keeps its own
rows, so a mirrored run sees exactly the noise a single-device run sees.
Two things are statistically, not bitwise, the same as on one device:
dropout masks (drawn per replica by Keras), and DIEN's auxiliary loss, whose
negatives are the other rows of the (replica's) batch. Gradient clipping
(`clipnorm`) is applied by Keras to each replica's gradients before they are
summed.

Everything here is a no-op on one device and on the JAX and torch backends.
"""

from __future__ import annotations

import keras
from keras import ops

from hierdiffuse_tf.config import STRATEGIES


def make_strategy(name: str):
    """The `tf.distribute` strategy named by `TrainConfig.strategy`."""
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()  # The default (no-op) strategy.
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # Reads the cluster from the TF_CONFIG environment variable; one local
        # worker when it is unset.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: {name!r}")


def _replica_context():
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def num_replicas() -> int:
    ctx = _replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def scale_for_replicas(loss):
    """A replica's mean loss -> its share of the global mean (gradients are summed)."""
    n = num_replicas()
    return loss if n == 1 else loss * ops.cast(1.0 / n, loss.dtype)


def batch_random(draw, shape, **kwargs):
    """`draw(shape, **kwargs)` for this replica's rows of a global-batch draw.

    `draw` is a `keras.random` function and `shape[0]` the replica's batch.
    On one device this is just `draw(shape, **kwargs)`.
    """
    ctx = _replica_context()
    if ctx is None:
        return draw(shape, **kwargs)
    local = shape[0]
    rest = tuple(shape[1:])
    full = draw((local * ctx.num_replicas_in_sync,) + rest, **kwargs)
    start = ops.cast(ctx.replica_id_in_sync_group, "int32") * ops.cast(local, "int32")
    begin = (start,) + (0,) * len(rest)
    return ops.slice(full, begin, (local,) + rest)

"""Item and category embeddings, shared by the behaviours and the target."""

from __future__ import annotations

import keras
from keras import ops

from hierdiffuse_tf.utils import serializable

PAD_ID, OOV_ID = 0, 1


def sanitize_ids(ids, vocab_size: int, num_hash_buckets: int = 0):
    """Maps ids into `[0, vocab_size)` inside the graph, so no gather goes out of range.

    Negative ids become padding (0). With `num_hash_buckets > 0`, every real id
    (>= 2) is hashed into `2 + id mod num_hash_buckets`; otherwise ids at or past
    the vocabulary become OOV (1).
    """
    ids = ops.convert_to_tensor(ids)
    if "int" not in str(ids.dtype):
        raise TypeError(f"Ids must be integers. Received dtype {ids.dtype}")
    # Compare in the input's own width: casting 10**12 to int32 first would wrap around.
    ids = ops.where(ids < 0, PAD_ID, ids)
    if num_hash_buckets:
        ids = ops.where(ids >= 2, 2 + ops.mod(ids, num_hash_buckets), ids)
    else:
        ids = ops.where(ids >= vocab_size, OOV_ID, ids)
    return ops.cast(ids, "int32")


@serializable
class FeatureEmbedding(keras.layers.Layer):
    """Embeds (item, category) pairs into one vector of width `dim`.

    Args:
        num_items: int. Item vocabulary size, including padding (0) and OOV (1).
        num_cats: int. Category vocabulary size, including 0 and 1.
        dim: int. Output width d.
        combiner: str. "sum" adds two tables of width d; "concat" joins two
            tables of width d / 2. Defaults to "sum".
        num_hash_buckets: int. If > 0, item ids are hashed into this many
            buckets and the item table has `num_hash_buckets + 2` rows.
            Defaults to 0.
        **kwargs: base layer arguments.

    Call arguments:
        items: int tensor of any shape `(...)`.
        cats: int tensor of the same shape.

    Returns:
        float tensor `(..., dim)`. Padding positions embed to the padding row,
        which callers mask out.

    Example:
    >>> layer = FeatureEmbedding(num_items=10, num_cats=4, dim=8)
    >>> layer(ops.ones((2, 5), "int32"), ops.ones((2, 5), "int32")).shape
    (2, 5, 8)
    """

    def __init__(self, num_items: int, num_cats: int, dim: int, combiner: str = "sum",
                 num_hash_buckets: int = 0, **kwargs):
        super().__init__(**kwargs)
        if combiner not in ("sum", "concat"):
            raise ValueError(f"`combiner` must be 'sum' or 'concat'. Received: `combiner={combiner}`")
        if num_hash_buckets == 0 and num_items < 3:
            raise ValueError(f"`num_items` must be >= 3 (0 and 1 are reserved). "
                             f"Received: `num_items={num_items}`")
        if num_cats < 2:
            raise ValueError(f"`num_cats` must be >= 2. Received: `num_cats={num_cats}`")
        self.num_items = num_items
        self.num_cats = num_cats
        self.dim = dim
        self.combiner = combiner
        self.num_hash_buckets = num_hash_buckets
        self.item_vocab = num_hash_buckets + 2 if num_hash_buckets else num_items
        width = dim if combiner == "sum" else dim // 2
        self.item_table = keras.layers.Embedding(
            self.item_vocab, width, embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
            dtype=self.dtype_policy, name="item_table")
        self.cat_table = keras.layers.Embedding(
            num_cats, width, embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
            dtype=self.dtype_policy, name="cat_table")

    def build(self, items_shape, cats_shape=None):
        self.item_table.build(items_shape)
        self.cat_table.build(items_shape)

    def call(self, items, cats):
        item_vec = self.item_table(sanitize_ids(items, self.item_vocab, self.num_hash_buckets))
        cat_vec = self.cat_table(sanitize_ids(cats, self.num_cats))
        if self.combiner == "sum":
            return item_vec + cat_vec  # (..., d)
        return ops.concatenate([item_vec, cat_vec], axis=-1)  # (..., d)

    def compute_output_shape(self, items_shape, cats_shape=None):
        return tuple(items_shape) + (self.dim,)

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items, "num_cats": self.num_cats,
                "dim": self.dim, "combiner": self.combiner,
                "num_hash_buckets": self.num_hash_buckets}

"""Embeddings, encoders, pooling and the CTR head, each through `run_layer_test`."""

import numpy as np
import pytest
from keras import ops

from hierdiffuse_tf.layers import (CTRHead, FeatureEmbedding, LongTermEncoder, MaskedPooling,
                                   ShortTermEncoder, sanitize_ids)
from layer_testing import run_layer_test


def test_feature_embedding_layer_and_oov_mapping():
    items = np.array([[0, 2, 5, 99], [1, 3, -4, 4]])
    cats = np.array([[0, 1, 2, 7], [1, 1, 2, 3]])
    out = run_layer_test(FeatureEmbedding, {"num_items": 6, "num_cats": 4, "dim": 8},
                         {"items": items, "cats": cats}, (2, 4, 8), 2)
    layer = FeatureEmbedding(6, 4, 8)
    layer(items, cats)
    # Ids past the vocabulary become OOV (1); negative ids become padding (0).
    np.testing.assert_array_equal(ops.convert_to_numpy(sanitize_ids(items, 6)), [[0, 2, 5, 1], [1, 3, 0, 4]])
    table = ops.convert_to_numpy(layer.item_table.embeddings)
    cat_table = ops.convert_to_numpy(layer.cat_table.embeddings)
    out = ops.convert_to_numpy(layer(items, cats))
    np.testing.assert_allclose(out[0, 3], table[1] + cat_table[1], rtol=1e-6)
    concat = FeatureEmbedding(6, 4, 8, combiner="concat")
    assert tuple(concat(items, cats).shape) == (2, 4, 8)
    hashed = FeatureEmbedding(0, 4, 8, num_hash_buckets=3)
    assert hashed.item_vocab == 5 and tuple(hashed(items, cats).shape) == (2, 4, 8)
    with pytest.raises(ValueError, match="combiner"):
        FeatureEmbedding(6, 4, 8, combiner="mean")


def test_masked_pooling_uses_the_learned_vector_for_empty_rows():
    x = np.arange(24, dtype="float32").reshape(2, 3, 4)
    mask = np.array([[True, False, True], [False, False, False]])
    run_layer_test(MaskedPooling, {}, {"x": x, "padding_mask": mask}, (2, 4), 1)
    pool = MaskedPooling()
    pool(x, mask)
    pool.empty.assign(np.full((4,), 7.0, "float32"))
    out = ops.convert_to_numpy(pool(x, mask))
    np.testing.assert_allclose(out[0], (x[0, 0] + x[0, 2]) / 2)
    np.testing.assert_allclose(out[1], 7.0)


ENCODER_WEIGHTS = 1 + 16  # Position embedding + one TransformerEncoder block.


def test_long_term_encoder():
    x = np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    kwargs = {"sequence_length": 5, "num_heads": 2, "intermediate_dim": 16, "dropout": 0.0}
    h, tokens = run_layer_test(LongTermEncoder, kwargs, {"x": x, "padding_mask": mask}, (3, 8),
                               ENCODER_WEIGHTS + 1)
    assert tuple(tokens.shape) == (3, 5, 8)
    assert np.all(ops.convert_to_numpy(tokens)[0, 3:] == 0)  # Padding stays zero.


def test_short_term_encoder_averages_non_empty_sessions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 8)).astype("float32")
    mask = np.zeros((2, 3, 4), bool)
    mask[0, 1, 2:] = True
    mask[0, 2, :] = True  # Example 0 has two sessions; example 1 has no short history.
    kwargs = {"sequence_length": 4, "num_heads": 2, "intermediate_dim": 16, "dropout": 0.0}
    run_layer_test(ShortTermEncoder, kwargs, {"x": x, "padding_mask": mask}, (2, 8), ENCODER_WEIGHTS + 2)
    encoder = ShortTermEncoder(**kwargs)
    h, tokens = encoder(x, mask)
    tokens = ops.convert_to_numpy(tokens)
    session_1 = tokens[0, 1, 2:].mean(0)
    session_2 = tokens[0, 2].mean(0)
    np.testing.assert_allclose(ops.convert_to_numpy(h)[0], (session_1 + session_2) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(h)[1], ops.convert_to_numpy(encoder.pool.empty))
    assert np.all(np.isfinite(tokens))


@pytest.mark.parametrize("cross_layers,weights", [(0, 6), (1, 8)])
def test_ctr_head(cross_layers, weights):
    rng = np.random.default_rng(0)
    inputs = {"user": rng.normal(size=(4, 8)).astype("float32"),
              "target": rng.normal(size=(4, 8)).astype("float32"),
              "context": rng.normal(size=(4, 8)).astype("float32")}
    run_layer_test(CTRHead, {"units": (16, 8), "dropout": 0.0, "cross_layers": cross_layers},
                   inputs, (4,), weights)

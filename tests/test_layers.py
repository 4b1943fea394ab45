"""Embeddings, encoders, pooling and the CTR head, each through `run_layer_test`."""

import numpy as np
import pytest
from keras import ops

from hierdiffuse_tf.layers import (CTRHead, FeatureEmbedding, MaskedPooling, SequenceEncoder,
                                   TargetAttentionReadout, sanitize_ids)
from hierdiffuse_tf.layers.next_behaviour import next_behaviour_loss, prefix_mean
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
ENCODER_KWARGS = {"sequence_length": 5, "num_heads": 2, "intermediate_dim": 16, "dropout": 0.0}


@pytest.mark.parametrize("gated,skip_empty", [(False, False), (True, False), (False, True)])
def test_sequence_encoder(gated, skip_empty):
    x = np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    tokens = run_layer_test(SequenceEncoder, {**ENCODER_KWARGS, "gated": gated, "skip_empty": skip_empty},
                            {"x": x, "padding_mask": mask}, (3, 5, 8), ENCODER_WEIGHTS + gated)
    assert np.all(ops.convert_to_numpy(tokens)[0, 3:] == 0)  # Padding stays zero.


def test_the_gate_at_zero_gives_back_the_embeddings():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, 8)).astype("float32")  # Sessions: K = 3 folded into the batch.
    mask = rng.random((2, 3, 5)) < 0.7
    encoder = SequenceEncoder(**ENCODER_KWARGS, gated=True)
    tokens = ops.convert_to_numpy(encoder(x, mask))
    np.testing.assert_allclose(tokens, x * mask[..., None], rtol=1e-6)
    encoder.gate.assign(1.0)  # A gate of one is the plain stack over the same weights.
    plain = SequenceEncoder(**ENCODER_KWARGS)
    plain(x, mask)
    plain.set_weights([w.numpy() for w in encoder.weights if w is not encoder.gate])
    np.testing.assert_allclose(ops.convert_to_numpy(encoder(x, mask)),
                               ops.convert_to_numpy(plain(x, mask)), rtol=1e-5, atol=1e-6)
    single = SequenceEncoder(**ENCODER_KWARGS)  # Each session is encoded on its own.
    single(x[:, 1], mask[:, 1])
    single.set_weights(plain.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(plain(x, mask))[:, 1],
                               ops.convert_to_numpy(single(x[:, 1], mask[:, 1])), rtol=1e-5, atol=1e-6)


def test_chunks_that_do_not_divide_the_sequence_leave_a_shorter_oldest_chunk():
    """Length 5 in chunks of 2: [0], [1, 2] and [3, 4], the oldest one padded in front and masked."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    chunked = SequenceEncoder(**ENCODER_KWARGS, chunk_size=2)
    tokens = ops.convert_to_numpy(chunked(x, mask))
    assert tokens.shape == (3, 5, 8) and np.all(tokens[~mask] == 0) and np.isfinite(tokens).all()
    others = {size: SequenceEncoder(**ENCODER_KWARGS, chunk_size=size) for size in (1, 0, 9)}
    for encoder in others.values():
        encoder(x, mask)
        encoder.set_weights(chunked.get_weights())
    outputs = {size: ops.convert_to_numpy(encoder(x, mask)) for size, encoder in others.items()}
    # The oldest behaviour sees only itself, as in chunks of one.
    np.testing.assert_allclose(tokens[:, 0], outputs[1][:, 0], rtol=1e-5, atol=1e-6)
    # A chunk longer than the sequence is the whole sequence.
    np.testing.assert_allclose(outputs[9], outputs[0], rtol=1e-6, atol=1e-6)
    # A change in the newest chunk reaches no other chunk.
    moved = x.copy()
    moved[:, 4] = rng.normal(size=(3, 8))  # (Not a constant shift, which the layer norm removes.)
    after = ops.convert_to_numpy(chunked(moved, mask))
    np.testing.assert_allclose(after[:, :3], tokens[:, :3], rtol=1e-6, atol=1e-6)
    assert np.abs(after[0, 3] - tokens[0, 3]).max() > 1e-4


def test_an_encoder_without_attention_dropout_keeps_its_other_dropouts():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 5, 8)).astype("float32")
    mask = np.ones((4, 5), bool)
    kwargs = {**ENCODER_KWARGS, "dropout": 0.5}
    for attention_dropout in (True, False):
        encoder = SequenceEncoder(**kwargs, attention_dropout=attention_dropout)
        encoder(x, mask)
        attention = encoder.blocks[0]._self_attention_layer
        # The attention layer's one dropout is over its probabilities: without it, training
        # and scoring give the same attention output.
        trained, scored = (ops.convert_to_numpy(attention(x, x, training=t)) for t in (True, False))
        assert np.allclose(trained, scored, atol=1e-5) == (not attention_dropout)
        # The block's other dropouts still act: two training calls differ.
        first, second = (ops.convert_to_numpy(encoder(x, mask, training=True)) for _ in range(2))
        assert np.abs(first - second).max() > 1e-3
        restored = SequenceEncoder.from_config(encoder.get_config())
        assert restored.attention_dropout == attention_dropout
    # Scoring is the same either way on the same weights.
    plain = SequenceEncoder(**kwargs)
    plain(x, mask)
    plain.set_weights(encoder.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(encoder(x, mask)), ops.convert_to_numpy(plain(x, mask)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("non_empty", [4, 6, 7, 12])
def test_skipping_the_empty_sessions_changes_no_output(non_empty):
    # 12 sessions fold into the batch: up to 6 non-empty ones, the block runs over half of the rows.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3, 5, 8)).astype("float32")
    present = np.zeros(12, bool)
    present[rng.permutation(12)[:non_empty]] = True
    mask = (rng.random((4, 3, 5)) < 0.7) & present.reshape(4, 3, 1)
    mask[..., 0] |= present.reshape(4, 3)  # Each non-empty session holds at least one behaviour.
    skipping = SequenceEncoder(**ENCODER_KWARGS, gated=True, skip_empty=True)
    plain = SequenceEncoder(**ENCODER_KWARGS, gated=True)
    skipping(x, mask)
    plain(x, mask)
    skipping.gate.assign(0.5)
    plain.set_weights(skipping.get_weights())
    tokens = ops.convert_to_numpy(skipping(x, mask, training=True))  # It skips in training only.
    np.testing.assert_allclose(tokens, ops.convert_to_numpy(plain(x, mask, training=True)),
                               rtol=1e-5, atol=1e-6)
    assert np.all(tokens[~mask] == 0) and np.all(np.abs(tokens[mask]) > 0)


def test_target_readout_is_masked_mean_pooling_at_initialisation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 8)).astype("float32")
    query = rng.normal(size=(3, 8)).astype("float32")
    mask = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]], bool)
    inputs = {"x": x, "padding_mask": mask, "query": query}
    run_layer_test(TargetAttentionReadout, {"units": (6,)}, inputs, (3, 8), 1 + 5)
    readout, mean = TargetAttentionReadout(units=(6,)), MaskedPooling()
    out = ops.convert_to_numpy(readout(x, mask, query=query))
    np.testing.assert_allclose(out, ops.convert_to_numpy(mean(x, mask)), rtol=1e-6)
    np.testing.assert_allclose(out[0], x[0, [0, 2, 3]].mean(0), rtol=1e-6)
    # Once the scores move, the pooling depends on the target, and padding still counts for nothing.
    readout.unit.score.kernel.assign(rng.normal(size=(6, 1)).astype("float32"))
    moved = ops.convert_to_numpy(readout(x, mask, query=query))
    assert not np.allclose(moved[0], out[0])
    assert not np.allclose(moved[0], ops.convert_to_numpy(readout(x, mask, query=-query))[0])
    x[0, 1] = 100.0
    np.testing.assert_allclose(ops.convert_to_numpy(readout(x, mask, query=query))[0], moved[0], rtol=1e-6)


@pytest.mark.parametrize("cross_layers,weights", [(0, 6), (1, 8)])
@pytest.mark.parametrize("context_cross", [False, True])
def test_ctr_head(cross_layers, weights, context_cross):
    rng = np.random.default_rng(0)
    inputs = {"user": rng.normal(size=(4, 8)).astype("float32"),
              "target": rng.normal(size=(4, 8)).astype("float32"),
              "context": rng.normal(size=(4, 8)).astype("float32")}
    run_layer_test(CTRHead, {"units": (16, 8), "dropout": 0.0, "cross_layers": cross_layers,
                             "context_cross": context_cross}, inputs, (4,), weights)


def test_the_head_input_carries_both_crosses():
    rng = np.random.default_rng(0)
    user, target, context = (rng.normal(size=(4, 8)).astype("float32") for _ in range(3))
    head = CTRHead(units=(16,), context_cross=True)
    head(user, target, context)
    features = ops.convert_to_numpy(head.features(user, target, context))
    expected = np.concatenate([user, target, user * target, context, context * target], axis=-1)
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    assert head.hidden[0].kernel.shape[0] == 5 * 8
    paper = CTRHead(units=(16,))  # SPEC 2 as printed: no h_S * e_t.
    assert ops.convert_to_numpy(paper.features(user, target, context)).shape == (4, 4 * 8)


def test_every_public_layer_is_documented_and_serializable():
    import inspect

    import keras

    import hierdiffuse_tf.layers as layers

    public = [obj for name, obj in vars(layers).items()
              if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)]
    assert {"ActivationUnit", "TargetAttentionReadout", "AUGRUCell", "SequenceEncoder", "MLPDenoiser",
            "TransformerDenoiser", "GuidedDenoiser", "CTRHead"} <= {c.__name__ for c in public}
    for cls in public:
        doc = "\n".join(inspect.getdoc(k) or "" for k in cls.__mro__[:3])  # A subclass may take its base's.
        missing = [s for s in ("Example:", "Returns:") if s not in doc]
        assert not missing, (cls.__name__, missing)
        assert keras.saving.get_registered_name(cls).startswith("hierdiffuse_tf>"), cls.__name__


def test_prefix_mean_reads_only_the_past_and_skips_padding():
    seq = np.array([[[1.0], [3.0], [0.0], [8.0]]], "float32")
    mask = np.array([[True, True, False, True]])
    np.testing.assert_allclose(ops.convert_to_numpy(prefix_mean(seq, mask))[0, :, 0], [1, 2, 2, 4])


def test_next_behaviour_loss_counts_only_real_pairs():
    rng = np.random.default_rng(0)
    seq = rng.normal(size=(3, 5, 4)).astype("float32")
    mask = np.ones((3, 5), bool)

    def score(h, e):  # Perfect on positives, which sit where e equals the row's next behaviour.
        return ops.sum(h * e, axis=-1)

    loss = float(next_behaviour_loss(score, seq, seq, mask))
    assert np.isfinite(loss) and loss > 0
    padded = np.concatenate([seq, rng.normal(size=(3, 2, 4)).astype("float32")], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((3, 2), bool)], axis=1)
    # Padding behind the sequence changes nothing: pairs with a padded step do not count.
    assert float(next_behaviour_loss(score, padded, padded, padded_mask)) == pytest.approx(loss, rel=1e-6)

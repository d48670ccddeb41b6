"""Fusion layers and ModalityDropout: masking, semantics, serialization, bad input."""

import keras
import numpy as np
import pytest

from xmodal_tf import layers

BATCH = 16
# Rows 0-3 cover every pattern of two modalities, including none present.
MASK = np.array([[1, 1], [1, 0], [0, 1], [0, 0]] * (BATCH // 4), dtype=bool)

FUSION_LAYERS = {
    "average": (lambda: layers.AverageFusion(), (6, 6)),
    "weighted": (lambda: layers.WeightedFusion(), (6, 6)),
    "concat": (lambda: layers.ConcatFusion(hidden_units=(8, 5), dropout=0.1), (6, 4)),
    "gated": (lambda: layers.GatedFusion(units=5), (6, 4)),
    "attention": (lambda: layers.AttentionFusion(units=4, num_heads=2), (6, 4)),
    "tensor": (lambda: layers.TensorFusion(hidden_units=(7,)), (6, 4)),
    "late": (lambda: layers.LateFusion(), (3, 3)),
}


def embeddings_for(dims, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(BATCH, dim)).astype("float32") for dim in dims]


def built_layer(kind, seed=0):
    keras.utils.set_random_seed(seed)
    factory, dims = FUSION_LAYERS[kind]
    layer = factory()
    layer(embeddings_for(dims))
    if isinstance(layer, layers.WeightedFusion):  # move off the uniform initial weights
        layer.modality_logits.assign([0.7, -0.4])
    return layer, dims


# ----------------------------------------------------------------------------- masking
@pytest.mark.parametrize("kind", sorted(FUSION_LAYERS))
def test_absent_modality_has_no_influence_and_present_one_does(kind):
    layer, dims = built_layer(kind)
    inputs = embeddings_for(dims)
    output = layer(inputs, mask=MASK).numpy()
    assert output.shape == (BATCH, layer.compute_output_shape([(None, d) for d in dims])[1])
    assert np.isfinite(output).all()
    for index in range(2):
        absent = ~MASK[:, index]
        changed = [x.copy() for x in inputs]
        changed[index][absent] = np.where(np.arange(dims[index]) % 2, np.nan, 1e6)  # garbage, NaN included
        np.testing.assert_array_equal(layer(changed, mask=MASK).numpy(), output)
        # The same change where the modality IS present moves the output of those rows.
        present = MASK[:, index]
        changed = [x.copy() for x in inputs]
        changed[index][present] += 1.0
        moved = np.abs(layer(changed, mask=MASK).numpy() - output).max(axis=1)
        assert (moved[present] > 1e-6).all()
        np.testing.assert_array_equal(moved[~present], 0.0)


@pytest.mark.parametrize("kind", sorted(FUSION_LAYERS))
def test_no_mask_equals_all_present_and_dict_equals_list(kind):
    layer, dims = built_layer(kind)
    inputs = embeddings_for(dims)
    ones = np.ones((BATCH, 2), dtype="float32")
    expected = layer(inputs).numpy()
    np.testing.assert_allclose(layer(inputs, mask=ones).numpy(), expected, rtol=1e-5, atol=1e-6)
    # Numeric masks: nonzero means present.
    np.testing.assert_array_equal(
        layer(inputs, mask=MASK.astype("float32") * 3).numpy(), layer(inputs, mask=MASK).numpy()
    )
    # A dict is read in sorted key order when the layer has no modalities configured.
    from_dict = layer({"b_second": inputs[1], "a_first": inputs[0]}, mask=MASK).numpy()
    np.testing.assert_array_equal(from_dict, layer(inputs, mask=MASK).numpy())


def test_all_absent_rows_are_finite_and_documented():
    rng = np.random.default_rng(1)
    nothing = np.zeros((BATCH, 2), dtype=bool)
    for kind in sorted(FUSION_LAYERS):
        layer, dims = built_layer(kind)
        output = layer(embeddings_for(dims), mask=nothing).numpy()
        other = layer([rng.normal(size=(BATCH, d)).astype("float32") for d in dims], mask=nothing).numpy()
        np.testing.assert_array_equal(output, other)  # independent of the inputs
        if kind == "late":
            np.testing.assert_allclose(output, 1.0 / dims[0])
        elif kind in ("average", "weighted", "gated", "attention"):
            np.testing.assert_array_equal(output, 0.0)


# ----------------------------------------------------------------------------- semantics
def test_average_weighted_and_late_compute_masked_means():
    a, b = embeddings_for((6, 6))
    mask = MASK.astype("float32")
    count = np.maximum(mask.sum(1, keepdims=True), 1)
    expected = (a * mask[:, :1] + b * mask[:, 1:]) / count
    np.testing.assert_allclose(layers.AverageFusion()([a, b], mask=MASK).numpy(), expected, rtol=1e-6)

    weighted = layers.WeightedFusion()
    weighted([a, b])
    weighted.modality_logits.assign([np.log(3.0), 0.0])  # weights 0.75 / 0.25 with both present
    np.testing.assert_allclose(weighted.modality_weights, [0.75, 0.25], rtol=1e-6)
    both = 0.75 * a + 0.25 * b
    expected = np.where(mask[:, :1] * mask[:, 1:] > 0, both, a * mask[:, :1] + b * mask[:, 1:])
    np.testing.assert_allclose(weighted([a, b], mask=MASK).numpy(), expected, rtol=1e-5, atol=1e-6)

    p, q = (keras.ops.softmax(x[:, :3]).numpy() for x in (a, b))
    late = layers.LateFusion()([p, q], mask=MASK).numpy()
    np.testing.assert_allclose(late.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(late[0], (p[0] + q[0]) / 2, rtol=1e-6)
    np.testing.assert_allclose(late[1], p[1], rtol=1e-6)


def test_tensor_fusion_is_the_outer_product_with_ones_and_indicators():
    a, b = embeddings_for((3, 2))
    fused = layers.TensorFusion()([a, b], mask=MASK).numpy()
    assert fused.shape == (BATCH, 4 * 3 + 2)
    present_a, present_b = MASK[:, :1], MASK[:, 1:]
    za = np.concatenate([a * present_a, np.ones((BATCH, 1))], axis=1)
    zb = np.concatenate([b * present_b, np.ones((BATCH, 1))], axis=1)
    expected = np.einsum("bi,bj->bij", za, zb).reshape(BATCH, -1)
    np.testing.assert_allclose(fused[:, :12], expected, rtol=1e-6)
    np.testing.assert_array_equal(fused[:, 12:], MASK.astype("float32"))
    three = layers.TensorFusion()(embeddings_for((2, 1, 3)))
    assert three.shape == (BATCH, 3 * 2 * 4 + 3)


def test_gates_sum_to_one_over_present_modalities():
    layer, dims = built_layer("gated")
    gates = layer.gates(embeddings_for(dims), mask=MASK).numpy()
    np.testing.assert_allclose(gates.sum(axis=1), MASK.any(axis=1).astype(float), rtol=1e-6)
    np.testing.assert_array_equal(gates[~MASK], 0.0)
    assert (gates[MASK] > 0).all()


def test_concat_fusion_without_hidden_units_is_the_concatenation():
    a, b = embeddings_for((2, 3))
    fused = layers.ConcatFusion(hidden_units=())([a, b], mask=MASK).numpy()
    expected = np.concatenate([a * MASK[:, :1], b * MASK[:, 1:], MASK.astype("float32")], axis=1)
    np.testing.assert_array_equal(fused, expected)


# ----------------------------------------------------------------------------- serialization
@pytest.mark.parametrize("kind", sorted(FUSION_LAYERS))
def test_layer_round_trip_in_a_saved_model(kind, tmp_path):
    layer, dims = built_layer(kind)
    inputs = [keras.Input((dim,), name=f"e{i}") for i, dim in enumerate(dims)]
    mask = keras.Input((2,), name="mask")
    model = keras.Model(inputs + [mask], layer(inputs, mask=mask))
    data = embeddings_for(dims, seed=3) + [MASK.astype("float32")]
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[-1]) is type(layer)
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(data).numpy(), model(data).numpy())
    # And the plain config round trip.
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    copy(embeddings_for(dims))
    copy.set_weights(layer.get_weights())
    np.testing.assert_array_equal(copy(data[:2], mask=MASK).numpy(), layer(data[:2], mask=MASK).numpy())


# ----------------------------------------------------------------------------- bad input
def test_unequal_sizes_name_the_layer_and_the_sizes():
    with pytest.raises(ValueError, match=r"avg_fusion \(AverageFusion\).*'image': 6, 'audio': 4.*projection_dim"):
        layers.AverageFusion(modalities=("image", "audio"), name="avg_fusion")(embeddings_for((6, 4)))
    with pytest.raises(ValueError, match=r"WeightedFusion.*#0: 6, #1: 4"):
        layers.WeightedFusion()(embeddings_for((6, 4)))


def test_bad_masks_and_inputs_are_rejected_up_front():
    a, b = embeddings_for((4, 4))
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, 2\).*\(16, 3\)"):
        layers.AverageFusion()([a, b], mask=np.ones((BATCH, 3), bool))
    with pytest.raises(TypeError, match="list or dict"):
        layers.AverageFusion()(a)
    with pytest.raises(ValueError, match=r"expects the modalities \['x', 'y'\].*\['x', 'z'\]"):
        layers.ConcatFusion(modalities=("x", "y"))({"x": a, "z": b})
    with pytest.raises(ValueError, match="known size"):
        layers.ConcatFusion()([a, np.zeros((BATCH, 2, 2), "float32")])
    with pytest.raises(ValueError, match="outer product of .* features"):
        layers.TensorFusion()([keras.Input((1024,)), keras.Input((1024,))])
    with pytest.raises(ValueError, match="divisible by num_heads"):
        layers.AttentionFusion(units=6, num_heads=4)
    with pytest.raises(ValueError, match=r"each entry of ConcatFusion hidden_units must be an int >= 1; got 0"):
        layers.ConcatFusion(hidden_units=(8, 0))


# ----------------------------------------------------------------------------- modality dropout
def test_modality_dropout_rates_as_configured_and_never_all():
    full = np.ones((40000, 2), dtype="float32")
    dropout = layers.ModalityDropout([0.25, 0.5], seed=3)
    kept = dropout(full, training=True).numpy()
    assert kept.dtype == np.float32
    np.testing.assert_allclose(1.0 - kept.mean(axis=0), [0.25, 0.5], atol=0.01)
    assert (kept.sum(axis=1) >= 1).all()

    three = layers.ModalityDropout(0.6, seed=4)(np.ones((40000, 3), dtype=bool), training=True).numpy()
    assert three.dtype == bool
    np.testing.assert_allclose(1.0 - three.mean(axis=0), [0.6, 0.6, 0.6], atol=0.01)
    assert three.any(axis=1).all()
    assert (three.sum(axis=1) == 1).any()  # two of three dropped does happen


def test_modality_dropout_is_inactive_at_inference_and_respects_absent_modalities():
    mask = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0]] * 500, dtype="float32")
    dropout = layers.ModalityDropout([0.3, 0.3, 0.3], seed=0)
    np.testing.assert_array_equal(dropout(mask).numpy(), mask)
    np.testing.assert_array_equal(dropout(mask, training=False).numpy(), mask)
    kept = dropout(mask, training=True).numpy()
    assert (kept <= mask).all()  # only removes
    np.testing.assert_array_equal(kept[1::4], mask[1::4])  # a lone modality is never dropped
    np.testing.assert_array_equal(kept[3::4], 0.0)  # nothing present stays so
    assert kept[2::4].sum(axis=1).min() == 1 and (kept != mask).any()
    assert not np.array_equal(kept, dropout(mask, training=True).numpy())  # fresh draws each call
    same = [layers.ModalityDropout(0.3, seed=7)(mask, training=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(*same)  # a seed makes the draws reproducible
    copy = layers.ModalityDropout.from_config(dropout.get_config())
    assert copy.rates == [0.3, 0.3, 0.3] and copy.seed == 0


def test_modality_dropout_bad_rates():
    with pytest.raises(ValueError, match=r"sum to 1.2, but with 2 modalities they may sum to at most 1"):
        layers.ModalityDropout(0.6)(np.ones((2, 2), "float32"))
    with pytest.raises(ValueError, match="3 rates .* 2 modalities"):
        layers.ModalityDropout([0.1, 0.1, 0.1])(np.ones((2, 2), "float32"))
    with pytest.raises(ValueError, match=r"rates must lie in \[0, 1\]"):
        layers.ModalityDropout(-0.1)
    with pytest.raises(TypeError, match="number or a sequence"):
        layers.ModalityDropout("0.5")

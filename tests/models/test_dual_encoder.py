"""DualEncoder (keras.Model): contrastive fit, retrieval, siamese mode, save/load, strategy, bad input, ViewLosses."""

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, assert_keras_round_trip, assert_same_optimizer_state
from two_replica_setup import PREAMBLE, run_replica_comparison

from xmodal_tf.eckart_young import EYLoss
from xmodal_tf.encoders import mlp_encoder, text_encoder
from xmodal_tf.losses import contrastive_loss
from xmodal_tf.models.dual_encoder import DualEncoder
from xmodal_tf.ssl_losses import BarlowTwinsLoss, VICRegLoss

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def paired_vectors(n=256, seed=0):
    """Two 12-dim views of a shared 6-dim latent, mixed nonlinearly; every pair unique."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    views = []
    for width in (12, 10):
        mixing = rng.normal(size=(6, width))
        views.append(np.tanh(latent @ mixing + 0.1 * rng.normal(size=(n, width))).astype("float32"))
    return views


def vector_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return DualEncoder(
        mlp_encoder(12, 16, hidden_units=(32,), activation="relu", name="encoder_a"),
        mlp_encoder(10, 16, hidden_units=(32,), activation="relu", name="encoder_b"),
        projection_dim=8,
        **kwargs,
    )


def number_words(n=60, seed=0):
    """Noisy one-hot digits paired with a phrase naming them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    vectors = (np.eye(10)[labels] + 0.2 * rng.normal(size=(n, 10))).astype("float32")
    texts = np.array([f"the number {WORDS[label]}" for label in labels])
    return vectors, texts


def text_model(texts, seed=0):
    keras.utils.set_random_seed(seed)
    return DualEncoder(
        mlp_encoder(10, 8, hidden_units=(), name="numbers"),
        text_encoder(texts, embedding_dim=8, name="words"),
        projection_dim=4,
    )


# ----------------------------------------------------------------------------- training
def test_fit_lowers_the_loss_and_raises_in_batch_accuracy():
    a, b = paired_vectors()
    model = vector_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(a, b, batch_size=64, verbose=0, return_dict=True)
    history = model.fit(a, b, batch_size=64, epochs=12, verbose=0).history
    after = model.evaluate(a, b, batch_size=64, verbose=0, return_dict=True)
    assert set(history) == {"loss", "temperature", "in_batch_accuracy"}
    assert after["loss"] < before["loss"] - 1.0
    assert before["in_batch_accuracy"] < 0.2 and after["in_batch_accuracy"] > 0.6  # chance 1/64
    assert history["temperature"][-1] != pytest.approx(0.07)  # the temperature is learned
    # The logged loss is the contrastive loss of the model's own embeddings.
    z_a, z_b = model((a[:64], b[:64]))
    expected = contrastive_loss(z_a, z_b, model.temperature, normalize=False)
    np.testing.assert_allclose(model.batch_loss(a[:64], b[:64])["loss"].numpy(), expected.numpy(), rtol=1e-5)


def test_embeddings_are_unit_vectors_and_predict_gives_both():
    a, b = paired_vectors(n=40)
    model = vector_model()
    z_a, z_b = model.predict((a, b), batch_size=16, verbose=0)
    assert z_a.shape == z_b.shape == (40, 8)
    np.testing.assert_allclose(np.linalg.norm(z_a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(model.encode_a(a, batch_size=7), z_a, rtol=1e-5, atol=1e-6)
    from_dict = model({"a": a[:3], "b": b[:3]})
    np.testing.assert_allclose(from_dict[1].numpy(), z_b[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.similarity(a[:5], b[:7]), z_a[:5] @ z_b[:7].T, rtol=1e-5, atol=1e-6)


def test_temperature_is_clipped_as_in_clip_and_can_be_frozen():
    a, b = paired_vectors(n=64)
    model = vector_model(temperature=0.02, max_logit_scale=100.0)
    model.compile(optimizer=keras.optimizers.SGD(100.0))  # a huge step pushes log(1/T) past its cap
    model.fit(a, b, batch_size=64, epochs=1, verbose=0)
    # The constraint puts log(1/T) back on a bound of [0, log(100)], i.e. T = 1 or 0.01.
    assert min(abs(model.logit_scale.numpy() - bound) for bound in (0.0, np.log(100.0))) < 1e-6
    model.logit_scale.assign(10.0)  # set from outside: the forward pass clips it too
    assert model.temperature == pytest.approx(0.01, rel=1e-5)
    frozen = vector_model(learn_temperature=False, temperature=0.1)
    assert all(variable is not frozen.logit_scale for variable in frozen.trainable_variables)
    frozen.compile(optimizer=keras.optimizers.Adam(1e-2))
    frozen.fit(a, b, batch_size=32, epochs=1, verbose=0)
    assert frozen.temperature == pytest.approx(0.1, rel=1e-6)


# ----------------------------------------------------------------------------- retrieval
def identity_model():
    """Encoders that are the identity on R^3 and no projection: similarity = cosine."""
    model = DualEncoder(
        mlp_encoder(3, 3, hidden_units=(), name="left"),
        mlp_encoder(3, 3, hidden_units=(), name="right"),
        projection_dim=None,
    )
    for encoder in (model.encoder_a, model.encoder_b):
        encoder.set_weights([np.eye(3, dtype="float32"), np.zeros(3, "float32")])
    return model


def test_retrieve_finds_the_known_nearest_items_both_ways():
    model = identity_model()
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], "float32")
    queries = np.array([[0, 0, 5], [2, 1.9, 0], [3, 0.1, 0]], "float32")
    indices, scores = model.retrieve(queries, gallery, k=2)
    np.testing.assert_array_equal(indices, [[2, 0], [3, 0], [0, 3]])
    assert indices.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_allclose(scores[:, 0], [1.0, 0.99966, 0.99944], atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    # b -> a: the queries come from modality b, the gallery from a.
    reverse, _ = model.retrieve(gallery, queries, k=1, direction="b_to_a")
    np.testing.assert_array_equal(reverse[:, 0], [2, 1, 0, 1])
    # Ties: the lower gallery index comes first, also with k = the whole gallery.
    tied, _ = model.retrieve(np.array([[0, 0, 1.0]], "float32"), gallery, k=4)
    np.testing.assert_array_equal(tied, [[2, 0, 1, 3]])


# ----------------------------------------------------------------------------- siamese
def test_siamese_mode_shares_the_encoder_and_projection(tmp_path):
    keras.utils.set_random_seed(0)
    encoder = mlp_encoder(12, 16, hidden_units=(32,), name="tower")
    model = DualEncoder(encoder, projection_dim=8)
    assert model.shared and model.encoder_b is model.encoder_a and model.projection_b is model.projection_a
    assert len(model.trainable_variables) == len(encoder.trainable_variables) + 2  # + projection + logit_scale
    a, _ = paired_vectors(n=64)
    view_1, view_2 = a + 0.05 * np.float32(1.0), a - 0.05
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(view_1, view_2, batch_size=32, epochs=2, verbose=0)
    np.testing.assert_array_equal(model.encode_a(a), model.encode_b(a))
    same = DualEncoder(encoder, encoder, projection_dim=4)
    assert same.shared
    loaded = assert_keras_round_trip(model, tmp_path, outputs=lambda m: (m.encode_a(a), m.encode_b(a)))
    assert loaded.shared and loaded.get_config()["encoder_b"] is None
    with pytest.raises(ValueError, match="shared=True uses encoder_a"):
        DualEncoder(encoder, mlp_encoder(12, 16, hidden_units=(), name="other"), shared=True)


# ----------------------------------------------------------------------------- saving
def test_keras_round_trip_with_raw_string_input(tmp_path):
    vectors, texts = number_words()
    model = text_model(texts)
    assert model.input_kinds == ("numeric", "string")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(vectors, texts, batch_size=20, epochs=2, verbose=0)
    unseen = np.array(["the number eleven", "nine", "ZERO!"])
    loaded = assert_keras_round_trip(
        model,
        tmp_path,
        outputs=lambda m: (m.encode_b(unseen), m.encode_b(list(unseen)), m.encode_a(vectors), m.temperature),
    )
    assert_same_optimizer_state(loaded.optimizer, model.optimizer)
    assert loaded.optimizer.iterations.numpy() == 6
    history = loaded.fit(vectors, texts, batch_size=20, epochs=1, verbose=0).history
    assert loaded.optimizer.iterations.numpy() == 9 and np.isfinite(history["loss"][0])


def test_from_config_without_training():
    model = vector_model(temperature=0.2, learn_temperature=False, max_logit_scale=50.0)
    clone = assert_config_round_trip(model)
    assert clone.temperature == pytest.approx(0.2)


# ----------------------------------------------------------------------------- distribution
STRATEGY_SCRIPT = PREAMBLE + textwrap.dedent("""
    from xmodal_tf.models.dual_encoder import DualEncoder

    def build_dual():
        keras.utils.set_random_seed(1)
        return DualEncoder(mlp_encoder(20, 6, hidden_units=(8,), name="ea"),
                           mlp_encoder(12, 6, hidden_units=(8,), name="eb"), projection_dim=4)

    # With global_batch=True every item has the global batch's negatives; with False
    # each replica contrasts its own half.
    results, _, _ = compare_with_one_device(build_dual, learning_rate=0.5)
    print(json.dumps(results))
""")


def test_mirrored_strategy_equals_one_device_on_the_global_batch():
    result = run_replica_comparison(STRATEGY_SCRIPT)
    # global_batch=False: the mean of the replicas' own contrastive gradients.
    assert result["moved_False"] > 1e-2 and result["difference_False"] < 1e-5
    # More negatives per item make a larger loss: the two objectives really differ.
    assert result["loss_True"] > result["loss_False"] + 1e-3


# ----------------------------------------------------------------------------- bad input
def test_k_and_direction_are_checked():
    model = identity_model()
    gallery = np.eye(3, dtype="float32")
    with pytest.raises(ValueError, match=r"k=4 is larger than the gallery \(3 items\); use k <= 3"):
        model.retrieve(gallery, gallery, k=4)
    with pytest.raises(ValueError, match="k must be a positive int"):
        model.retrieve(gallery, gallery, k=0)
    with pytest.raises(ValueError, match="direction must be one of"):
        model.retrieve(gallery, gallery, k=1, direction="text_to_image")


def test_paired_batches_of_different_sizes():
    a, b = paired_vectors(n=20)
    model = vector_model()
    with pytest.raises(ValueError, match="same batch size.*8 rows for a and 6 for b"):
        model.batch_loss(a[:8], b[:6])
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="8 rows for a and 6 for b"):
        model.fit(tf.data.Dataset.from_tensors((a[:8], b[:6])), shuffle=False, verbose=0)
    mismatched = tf.data.Dataset.zip(
        (tf.data.Dataset.from_tensor_slices(a[:16]).batch(8), tf.data.Dataset.from_tensor_slices(b[:12]).batch(6))
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        model.fit(mismatched, shuffle=False, verbose=0)


def test_numbers_to_a_string_encoder_and_strings_to_a_numeric_one():
    vectors, texts = number_words(n=20)
    model = text_model(texts)
    with pytest.raises(TypeError, match="encoder_b takes raw text.*holds numbers"):
        model.encode_b(np.arange(5.0))
    with pytest.raises(TypeError, match="encoder_b takes raw text"):
        model((vectors, vectors))
    with pytest.raises(TypeError, match="encoder_a takes numeric arrays, but input a holds strings"):
        model.encode_a(texts)
    with pytest.raises(TypeError, match="not a single string"):
        model.encode_b("nine")
    model.compile(optimizer="sgd")
    with pytest.raises(TypeError, match="encoder_b takes raw text"):
        model.fit(vectors, vectors, batch_size=10, verbose=0)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"temperature": 0.001}, ValueError, r"temperature must be a float in \[1 / max_logit_scale, 1\]"),
        ({"temperature": 2.0}, ValueError, "temperature must be a float in"),
        ({"max_logit_scale": 1.0}, ValueError, "max_logit_scale"),
        ({"projection_dim": 0}, ValueError, "projection_dim must be a positive int"),
        ({"projection_dim": None}, ValueError, "same width.*16 features and encoder_b 12"),
        ({"learn_temperature": "yes"}, TypeError, "learn_temperature"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        DualEncoder(
            mlp_encoder(4, 16, hidden_units=(), name="ea"), mlp_encoder(4, 12, hidden_units=(), name="eb"), **kwargs
        )
    with pytest.raises(TypeError, match="encoder_a must be a keras.Model"):
        DualEncoder("cnn")


def test_compile_rejects_a_loss():
    with pytest.raises(ValueError, match="own loss"):
        vector_model().compile(optimizer="sgd", loss="mse")


def test_non_finite_inputs_name_the_argument_and_rows():
    model = identity_model()
    gallery = np.eye(3, dtype="float32")
    queries = np.ones((6, 3), "float32")
    queries[4, 1] = np.nan
    with pytest.raises(
        ValueError,
        match=r"^DualEncoder.encode_a: a has non-finite values \(NaN or inf\) in 1 "
        r"row\(s\) \[4\]; remove or impute those rows before encoding\.$",
    ):
        model.encode_a(queries, batch_size=2)
    with pytest.raises(ValueError, match=r"^DualEncoder.encode_b: b has non-finite .* \[4\]"):
        model.encode_b(queries)
    with pytest.raises(ValueError, match=r"^DualEncoder.retrieve: queries has non-finite .* \[4\]"):
        model.retrieve(queries, gallery, k=1)
    with pytest.raises(ValueError, match=r"^DualEncoder.retrieve: queries has non-finite .* \[4\]"):
        model.retrieve(queries, gallery, k=1, direction="b_to_a")
    with pytest.raises(ValueError, match=r"^DualEncoder.retrieve: gallery has non-finite .* \[0, 1, 2\]"):
        model.retrieve(gallery, np.full((3, 3), np.inf, "float32"), k=1)
    with pytest.raises(ValueError, match=r"^DualEncoder.similarity: b has non-finite"):
        model.similarity(gallery, queries)
    queries[4] = 0.0
    assert model.retrieve(queries, gallery, k=1)[0].shape == (6, 1)


def test_text_inputs_are_not_checked_for_finiteness():
    vectors, texts = number_words()
    model = text_model(texts)
    assert np.isfinite(model.encode_b(texts)).all()
    with pytest.raises(ValueError, match=r"encode_a: a has non-finite .* \[0\]"):
        model.encode_a(np.where(np.arange(vectors.size).reshape(vectors.shape) == 0, np.nan, vectors))


# ----------------------------------------------------------------------------- held-out retrieval
def test_held_out_logs_score_retrieval_both_ways_with_equal_texts_relevant():
    from xmodal_tf.metrics import retrieval_metrics

    vectors, texts = number_words(40, seed=3)
    model = text_model(texts)
    logs = model.held_out_logs((vectors, texts))
    similarity = model.similarity(vectors, texts)
    relevant = texts[:, None] == texts[None, :]  # same phrase, same number
    expected = retrieval_metrics(similarity, relevant)
    assert logs["val_a_to_b_recall@5"] == expected["recall@5"]
    assert logs["val_b_to_a_median_rank"] == retrieval_metrics(similarity.T, relevant)["median_rank"]
    recalls = [value for key, value in logs.items() if "recall@" in key]
    assert len(recalls) == 6 and logs["val_mean_recall"] == pytest.approx(np.mean(recalls))
    # A dataset of batches (strings as bytes) gives the same logs as the arrays.
    batches = tf.data.Dataset.from_tensor_slices((vectors, texts)).batch(16)
    assert model.held_out_logs(batches) == logs
    assert np.isnan(model.held_out_logs(None)["val_mean_recall"])


def test_trainer_early_stops_a_dual_encoder_on_held_out_recall(tmp_path):
    from xmodal_tf.training import Trainer

    a, b = paired_vectors(320, seed=1)
    model = vector_model()
    train = tf.data.Dataset.from_tensor_slices((a[:256], b[:256])).shuffle(256, seed=0).batch(64)
    trainer = Trainer(
        model, keras.optimizers.Adam(1e-2), early_stopping_patience=2, progress=False, checkpoint_dir=tmp_path
    )
    history = trainer.fit(train, 40, validation_data=(a[256:], b[256:]))
    assert trainer.monitor == "val_mean_recall"
    recalls = history["val_mean_recall"]
    assert recalls[0] < max(recalls)  # it learned
    # The kept weights are those of the best epoch.
    assert model.held_out_logs((a[256:], b[256:]))["val_mean_recall"] == pytest.approx(max(recalls))


# ----------------------------------------------------------------------------- other objectives (ViewLoss)
@pytest.mark.parametrize("loss", [BarlowTwinsLoss(), VICRegLoss(), EYLoss()], ids=lambda loss: loss.name)
def test_a_view_loss_replaces_the_contrastive_loss(loss):
    a, b = paired_vectors(n=128)
    model = vector_model(loss=loss)
    assert model.view_loss is loss and all(v is not model.logit_scale for v in model.trainable_variables)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(a, b, batch_size=32, verbose=0, return_dict=True)
    history = model.fit(a, b, batch_size=32, epochs=3, verbose=0).history
    after = model.evaluate(a, b, batch_size=32, verbose=0, return_dict=True)
    assert set(history) == {"loss", "in_batch_accuracy"}
    assert np.isfinite(history["loss"]).all() and after["loss"] < before["loss"]
    assert model.temperature == pytest.approx(0.07)  # the temperature takes no part
    # The loss is the ViewLoss of the projected embeddings, before their normalisation.
    h_a = model.projection_a(model.encoder_a(a[:32]))
    h_b = model.projection_b(model.encoder_b(b[:32]))
    np.testing.assert_allclose(model.batch_loss(a[:32], b[:32])["loss"].numpy(), loss(h_a, h_b).numpy(), rtol=1e-5)
    # Retrieval still ranks by the cosine similarity of the normalised embeddings.
    z_a, z_b = model((a[:8], b[:8]))
    np.testing.assert_allclose(np.linalg.norm(z_a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(model.similarity(a[:8], b[:8]), z_a.numpy() @ z_b.numpy().T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", [BarlowTwinsLoss(off_diagonal_weight=0.05), VICRegLoss(covariance_weight=2.0)])
def test_a_view_loss_is_saved_with_the_model(loss, tmp_path):
    a, b = paired_vectors(n=64)
    model = vector_model(loss=loss)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(a, b, batch_size=32, epochs=1, verbose=0)
    loaded = assert_keras_round_trip(
        model,
        tmp_path,
        outputs=lambda m: (m.encode_a(a), m.encode_b(b), m.batch_loss(a[:32], b[:32])["loss"]),
    )
    assert type(loaded.view_loss) is type(loss) and loaded.view_loss.get_config() == loss.get_config()
    assert_same_optimizer_state(loaded.optimizer, model.optimizer)
    clone = assert_config_round_trip(model)
    assert clone.view_loss.get_config() == loss.get_config()
    assert vector_model().get_config()["loss"] is None


def test_trainer_trains_a_dual_encoder_with_barlow_twins(tmp_path):
    from xmodal_tf.training import Trainer

    a, b = paired_vectors(192, seed=2)
    model = DualEncoder(
        mlp_encoder(12, 16, hidden_units=(32,), name="encoder_a"),
        mlp_encoder(10, 16, hidden_units=(32,), name="encoder_b"),
        projection_dim=8,
        loss=BarlowTwinsLoss(),
    )
    train = tf.data.Dataset.from_tensor_slices((a[:128], b[:128])).batch(32)
    trainer = Trainer(model, keras.optimizers.Adam(1e-2), progress=False, checkpoint_dir=tmp_path)
    history = trainer.fit(train, 2, validation_data=(a[128:], b[128:]))
    assert np.isfinite(history["loss"]).all() and history["loss"][1] < history["loss"][0]
    assert np.isfinite(history["val_mean_recall"]).all()


def test_loss_must_be_a_view_loss_of_two_views():
    encoders = (mlp_encoder(4, 8, hidden_units=(), name="ea"), mlp_encoder(4, 8, hidden_units=(), name="eb"))
    for bad in ("barlow_twins", keras.losses.MeanSquaredError(), BarlowTwinsLoss):
        with pytest.raises(TypeError, match=r"loss must be None .* or an xmodal_tf ViewLoss .*BarlowTwinsLoss\(\)"):
            DualEncoder(*encoders, loss=bad)

    class ThreeViews(BarlowTwinsLoss):
        min_views = max_views = 3

    with pytest.raises(ValueError, match="takes exactly 3 views"):
        DualEncoder(*encoders, loss=ThreeViews())


def test_a_deep_cca_loss_is_kept_out_of_xla():
    from xmodal_tf.losses import DeepCCALoss

    model = vector_model(loss=DeepCCALoss(n_components=4))
    assert "SVD" in model.xla_unsupported_reason() and vector_model(loss=VICRegLoss()).xla_unsupported_reason() is None
    model.compile(optimizer="sgd")
    assert model.jit_compile is False

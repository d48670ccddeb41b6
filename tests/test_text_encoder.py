"""xmodal_tf.encoders.text_encoder: raw strings in, tokenizer inside the model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from xmodal_tf.encoders import normalize_text, text_encoder

NAMES = ["red apple", "green apple", "grinning face", "smiling face with smiling eyes", "man-woman: kiss"]

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def token_ids(model, texts):
    vectorizer = model.get_layer(f"{model.name}_vectorizer")
    return vectorizer(tf.constant(texts)).numpy()


def test_normalize_text_marks_word_boundaries():
    out = normalize_text(tf.constant(["Man-Woman: Kiss", "piñata!!", "  A  B "])).numpy()
    assert [text.decode("utf-8") for text in out] == [" man woman kiss ", " piñata ", " a b "]


def test_output_shape_and_layer_names():
    keras.utils.set_random_seed(0)
    model = text_encoder(NAMES, embedding_dim=6, hidden_units=(8,), dropout=0.1, name="names")
    assert model.inputs[0].dtype == "string" and tuple(model.inputs[0].shape) == (None,)
    assert model(np.array(NAMES)).shape == (5, 6)
    for suffix in ("vectorizer", "token_embedding", "pooling", "dense0", "dropout0", "embedding"):
        model.get_layer(f"names_{suffix}")


def test_unseen_words_share_character_ngrams_but_not_word_tokens():
    characters = text_encoder(NAMES, embedding_dim=4)
    words = text_encoder(NAMES, tokens="words", embedding_dim=4)
    unseen = ["apples"]  # not in NAMES
    ids = token_ids(characters, unseen)[0]
    real = ids[ids > 0]
    # " ap", "app", "ppl", "ple", "es " ("eyes") are known; only "les" is out of vocabulary (id 1).
    assert len(real) == 6 and list(real == 1) == [False] * 4 + [True, False]
    word_ids = token_ids(words, unseen)[0]
    assert list(word_ids[word_ids > 0]) == [1]
    assert set(token_ids(words, ["red apple"])[0][:2]) <= set(range(2, 20))


def test_embedding_is_the_masked_mean_of_token_vectors():
    keras.utils.set_random_seed(1)
    short = text_encoder(NAMES, embedding_dim=3, sequence_length=40)
    long = text_encoder(
        vocabulary=short.get_layer("text_encoder_vectorizer").get_vocabulary()[2:], embedding_dim=3, sequence_length=90
    )
    long.set_weights(short.get_weights())
    texts = np.array(["red apple", "kiss"])
    # Padding is masked: the embedding does not depend on the padded length.
    np.testing.assert_allclose(short(texts).numpy(), long(texts).numpy(), rtol=1e-6, atol=1e-7)
    ids = token_ids(short, ["kiss"])[0]
    table = short.get_layer("text_encoder_token_embedding").get_weights()[0]
    kernel, bias = short.get_layer("text_encoder_embedding").get_weights()
    expected = table[ids[ids > 0]].mean(axis=0) @ kernel + bias
    np.testing.assert_allclose(short(np.array(["kiss"])).numpy()[0], expected, rtol=1e-5, atol=1e-6)


def test_keras_round_trip_takes_raw_strings(tmp_path):
    keras.utils.set_random_seed(2)
    model = text_encoder(NAMES, embedding_dim=5, hidden_units=(7,), ngram_sizes=(2, 3))
    path = tmp_path / "text.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    texts = np.array(NAMES + ["blue apples", "héllo wörld"])
    np.testing.assert_array_equal(restored(texts).numpy(), model(texts).numpy())
    assert (
        restored.get_layer("text_encoder_vectorizer").get_vocabulary()
        == model.get_layer("text_encoder_vectorizer").get_vocabulary()
    )


def test_words_and_char_ngrams_add_the_two_pooled_bags(tmp_path):
    keras.utils.set_random_seed(3)
    model = text_encoder(NAMES, tokens="words_and_char_ngrams", embedding_dim=3)
    text = np.array(["red face"])
    pooled = []
    for vectorizer, table in (("vectorizer", "token_embedding"), ("word_vectorizer", "word_embedding")):
        ids = model.get_layer(f"text_encoder_{vectorizer}")(tf.constant(text)).numpy()[0]
        pooled.append(model.get_layer(f"text_encoder_{table}").get_weights()[0][ids[ids > 0]].mean(axis=0))
    kernel, bias = model.get_layer("text_encoder_embedding").get_weights()
    np.testing.assert_allclose(model(text).numpy()[0], (pooled[0] + pooled[1]) @ kernel + bias, rtol=1e-5, atol=1e-6)
    # Word tokens are whole words; the character bag is trigrams.
    assert "apple" in model.get_layer("text_encoder_word_vectorizer").get_vocabulary()
    assert "a p p" in model.get_layer("text_encoder_vectorizer").get_vocabulary()  # joined by spaces
    # Saved and reloaded; rebuilt from the pair of vocabularies.
    model.save(tmp_path / "both.keras")
    texts = np.array(NAMES + ["blue apples"])
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "both.keras")(texts).numpy(), model(texts).numpy())
    vocabularies = tuple(
        model.get_layer(f"text_encoder_{v}").get_vocabulary()[2:] for v in ("vectorizer", "word_vectorizer")
    )
    rebuilt = text_encoder(vocabulary=vocabularies, tokens="words_and_char_ngrams", embedding_dim=3)
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(rebuilt(texts).numpy(), model(texts).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({}, ValueError, "exactly one of texts"),
        ({"vocabulary": ["a", "b", "c"], "tokens": "words_and_char_ngrams"}, ValueError, "pair"),
        ({"texts": NAMES, "vocabulary": ["a"]}, ValueError, "exactly one of texts"),
        ({"texts": "red apple"}, TypeError, "not a single string"),
        ({"texts": [1.0, 2.0]}, TypeError, "must contain strings"),
        ({"texts": []}, ValueError, "texts is empty"),
        ({"texts": NAMES, "tokens": "bytes"}, ValueError, "Unknown tokens"),
        ({"texts": NAMES, "ngram_sizes": (0,)}, ValueError, "ngram_sizes"),
        ({"texts": NAMES, "sequence_length": 0}, ValueError, "sequence_length"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        text_encoder(**kwargs)

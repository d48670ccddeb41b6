"""Multimodal loaders: offline digits, and spoken digits / AV-MNIST / OpenMoji read from
small files of the real layout written by the tests."""

import numpy as np
import pytest

from xmodal_tf.data import emoji_base_name, load_av_mnist, load_multimodal_digits, load_openmoji, load_spoken_digits


def write_fsdd(folder, per_digit=10, seed=0):
    """An fsdd_mfcc.npz of the real layout whose frames encode (recording index, digit)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_digit)
    lengths = rng.integers(6, 20, size=len(labels))
    frames = np.concatenate(
        [
            np.column_stack(
                [np.full((length, 1), float(i)), np.full((length, 1), float(label)), rng.normal(size=(length, 11))]
            )
            for i, (length, label) in enumerate(zip(lengths, labels))
        ]
    ).astype(np.float32)
    np.savez(folder / "fsdd_mfcc.npz", X=frames, lengths=lengths, y=labels)
    return frames, lengths, labels


def write_mnist(folder, n_train=60000, n_test=200, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(
        folder / "mnist.npz",
        x_train=rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, size=n_train).astype(np.uint8),
        x_test=rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, size=n_test).astype(np.uint8),
    )


def test_multimodal_digits_halves_rebuild_the_image():
    data = load_multimodal_digits(("image", "left", "right"))
    assert data.modalities == ("image", "left", "right")
    assert [len(data.train), len(data.validation), len(data.test)] == [1078, 359, 360]
    inputs = data.test.inputs
    assert inputs["image"].shape == (360, 8, 8, 1) and inputs["left"].shape == (360, 8, 4, 1)
    np.testing.assert_array_equal(inputs["image"][:, :, :4], inputs["left"])
    np.testing.assert_array_equal(inputs["image"][:, :, 4:], inputs["right"])
    assert inputs["image"].dtype == np.float32 and 0 <= inputs["image"].min() and inputs["image"].max() <= 1


@pytest.mark.parametrize("modalities", [(), ("left", "left"), ("audio",)])
def test_multimodal_digits_rejects_bad_modalities(modalities):
    with pytest.raises(ValueError, match="modalities must be distinct names"):
        load_multimodal_digits(modalities)


def test_spoken_digits_split_padding_and_standardisation(tmp_path):
    frames, lengths, labels = write_fsdd(tmp_path)
    data = load_spoken_digits(tmp_path, test_fraction=0.2, seed=3)
    assert data.validation is None and data.modalities == ("audio",)
    assert len(data.train) == 80 and len(data.test) == 20
    assert np.bincount(data.test.labels).tolist() == [2] * 10  # stratified by digit
    audio = np.concatenate([data.train.inputs["audio"], data.test.inputs["audio"]])
    assert audio.shape[1:] == (lengths.max(), 13)
    real = np.abs(audio).sum(axis=-1) > 0
    # Every recording keeps its own length; padding frames are exactly zero.
    assert sorted(real.sum(axis=1).tolist()) == sorted(lengths.tolist())
    train_frames = data.train.inputs["audio"][np.abs(data.train.inputs["audio"]).sum(-1) > 0]
    np.testing.assert_allclose(train_frames.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(train_frames.std(axis=0), 1, atol=1e-3)
    # The digit column survives standardisation as an increasing function of the digit.
    digit_column = data.test.inputs["audio"][:, 0, 1]
    assert np.all(np.diff(digit_column[np.argsort(data.test.labels)]) >= -1e-6)


def test_av_mnist_pairs_by_digit_and_holds_out_recordings(tmp_path):
    frames, lengths, labels = write_fsdd(tmp_path)
    write_mnist(tmp_path)
    data = load_av_mnist(tmp_path, seed=0, train_size=500)
    assert data.modalities == ("image", "audio")
    assert [len(data.train), len(data.validation), len(data.test)] == [500, 10000, 200]
    assert data.train.inputs["image"].shape == (500, 28, 28, 1)
    spoken = load_spoken_digits(tmp_path, seed=0)

    def recording_ids(split):
        # Column 0 encodes the recording index through an increasing standardisation.
        return {round(float(value), 4) for value in split.inputs["audio"][:, 0, 0]}

    for split, pool in ((data.train, spoken.train), (data.validation, spoken.train), (data.test, spoken.test)):
        assert recording_ids(split) <= recording_ids(pool)
        # Each recording's digit matches the image's label.
        digit_of = {round(float(a[0, 0]), 4): int(y) for a, y in zip(pool.inputs["audio"], pool.labels)}
        assert all(digit_of[round(float(a[0, 0]), 4)] == y for a, y in zip(split.inputs["audio"], split.labels))
    assert not recording_ids(data.test) & recording_ids(data.train)


def test_emoji_base_names_drop_skin_tones():
    assert emoji_base_name("Santa Claus medium-dark skin tone") == "Santa Claus"
    assert (
        emoji_base_name("couple with heart woman man light skin tone dark skin tone") == "couple with heart woman man"
    )
    assert emoji_base_name("waving hand: medium skin tone") == "waving hand"
    assert emoji_base_name("dark sunglasses") == "dark sunglasses"


def test_openmoji_split_by_base_name(tmp_path):
    names = np.array(
        [
            "waving hand",
            "waving hand dark skin tone",
            "waving hand medium-light skin tone",
            "red apple",
            "keycap 1",
            "keycap 2",
            "cat face",
            "cat",
            "dog",
            "sun",
        ]
    )
    images = np.arange(len(names), dtype=np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3), np.uint8)
    np.savez(tmp_path / "openmoji64.npz", images=images, names=names, aliases=names, codes=names)
    data = load_openmoji(tmp_path, test_fraction=0.3, seed=1)
    assert len(data.train) + len(data.test) == len(names)
    assert not set(data.train.base_names) & set(data.test.base_names)
    waving = [split for split in (data.train, data.test) if "waving hand" in set(split.base_names)]
    assert len(waving) == 1 and (waving[0].base_names == "waving hand").sum() == 3
    for split in (data.train, data.test):  # images stay with their names
        assert all(names[split.images[i, 0, 0, 0]] == split.names[i] for i in range(len(split)))


def test_missing_files_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.delenv("XMODAL_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="fsdd_mfcc.npz .*--data-dir"):
        load_spoken_digits(tmp_path)
    with pytest.raises(FileNotFoundError, match="no data folder given"):
        load_openmoji()
    write_fsdd(tmp_path)
    with pytest.raises(FileNotFoundError, match="mnist.npz"):
        load_av_mnist(tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"audio_test_fraction": 1.0}, "audio_test_fraction"),
        ({"train_size": 0}, "train_size"),
        ({"train_size": 2.5}, "train_size"),
    ],
)
def test_av_mnist_rejects_bad_settings(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_av_mnist(tmp_path, **kwargs)


@pytest.mark.parametrize(
    "filename, loader",
    [("openmoji64.npz", "load_openmoji"), ("fsdd_mfcc.npz", "load_spoken_digits"), ("mnist.npz", "load_split_mnist")],
)
def test_wrong_truncated_or_random_archives_are_named_with_the_fix(tmp_path, filename, loader):
    import xmodal_tf.data as data

    load = getattr(data, loader)
    path = tmp_path / filename
    np.savez(path, something=np.zeros(3))  # a valid archive with the wrong arrays
    with pytest.raises(ValueError, match=rf"{filename} lacks the arrays \[.*\] \(it has \['something'\]\)"):
        load(data_dir=tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=rf"{filename} is damaged or truncated .*Replace it"):
        load(data_dir=tmp_path)
    path.write_bytes(np.random.default_rng(0).bytes(4096))  # random bytes, not "pickled data"
    with pytest.raises(ValueError, match=rf"{filename} is not an .npz archive \(not a zip archive\)"):
        load(data_dir=tmp_path)

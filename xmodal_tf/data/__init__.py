"""Real two-view data sets and tf.data pipelines.

    >>> from xmodal_tf.data import load_two_view_digits, make_dataset
    >>> digits = load_two_view_digits()
    >>> x1, x2, y = digits.train                      # (1078, 32), (1078, 32), (1078,)
    >>> batches = make_dataset(digits.train, batch_size=128, seed=0)

Importing this package loads NumPy only; scikit-learn, TensorFlow and
tensorflow_datasets are imported by the functions that need them.
"""

from xmodal_tf.data.augment import map_random_shifts, random_shift_pairs, random_translations
from xmodal_tf.data.balance import balanced_dataset, class_weights
from xmodal_tf.data.datasets import (
    DATA_DIR_ENV_VAR,
    MNIST_URL,
    TwoViewDataset,
    TwoViewSplit,
    load_split_mnist,
    load_two_view_digits,
    resolve_data_dir,
    split_image_halves,
)
from xmodal_tf.data.multimodal import (
    EmojiDataset,
    EmojiSplit,
    MultimodalDataset,
    MultimodalSplit,
    emoji_base_name,
    load_av_mnist,
    load_multimodal_digits,
    load_openmoji,
    load_spoken_digits,
)
from xmodal_tf.data.pipeline import make_dataset

__all__ = [
    "DATA_DIR_ENV_VAR",
    "EmojiDataset",
    "EmojiSplit",
    "MNIST_URL",
    "MultimodalDataset",
    "MultimodalSplit",
    "TwoViewDataset",
    "TwoViewSplit",
    "balanced_dataset",
    "class_weights",
    "emoji_base_name",
    "load_av_mnist",
    "load_multimodal_digits",
    "load_openmoji",
    "load_split_mnist",
    "load_spoken_digits",
    "load_two_view_digits",
    "make_dataset",
    "map_random_shifts",
    "random_shift_pairs",
    "random_translations",
    "resolve_data_dir",
    "split_image_halves",
]

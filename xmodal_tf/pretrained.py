"""Pretrained keras-hub backbones as encoders: raw strings or 0..255 images -> (batch, embedding_dim).

    >>> from xmodal_tf.pretrained import pretrained_encoder
    >>> text_net = pretrained_encoder("bert_tiny_en_uncased", embedding_dim=64)         # a hub handle
    >>> photo_net = pretrained_encoder("/data/presets/vit_tiny", modality="image")      # a local preset

The encoders follow the contract of ``xmodal_tf.encoders``: a functional ``keras.Model`` from one
modality's input to ``(batch, dim)``, stable layer names (``f"{name}_preprocessor"``,
``f"{name}_backbone"``, ``f"{name}_pooling"``, ``f"{name}_embedding"``), and a ``.keras`` round trip
with identical outputs. The preset's own preprocessing (tokenizer and packer, or image scaling) is
inside the model. keras-hub is an optional dependency (``pip install "xmodal_tf[hub]"``), imported
only when an encoder is built; a saved encoder reloads with ``keras.models.load_model`` once this
module is imported (it registers the model class and the two layers below).

A hub handle needs the internet: the hub's host is probed first (``xmodal_tf.network``), and an
unreachable hub raises ``HubUnreachableError`` at once, saying how to make a local copy.
"""

from __future__ import annotations

import os
import re

import keras
from keras import ops

from xmodal_tf._validation import check_bool, check_choice, check_int, check_positive_int, check_shape
from xmodal_tf.network import network_reachable

__all__ = [
    "HUB_HOSTS",
    "HubUnreachableError",
    "MODALITIES",
    "POOLING_CHOICES",
    "PretrainedEncoder",
    "PretrainedPooling",
    "PretrainedPreprocessor",
    "backbone_of",
    "pretrained_encoder",
]

_PACKAGE = "xmodal_tf"
MODALITIES = ("text", "image")
POOLING_CHOICES = ("cls", "mean")
#: The host probed before loading a handle, by scheme; a bare preset name is a Kaggle handle.
HUB_HOSTS = {
    "kaggle": "www.kaggle.com",
    "hf": "huggingface.co",
    "gs": "storage.googleapis.com",
    "modelscope": "www.modelscope.cn",
}
_CONFIG_FILE = "config.json"  # every keras-hub preset directory has one
_INSTALL_HINT = 'pip install "xmodal_tf[hub]"'

# Looked up through the module at call time, so tests can make the hub unreachable.
_network_reachable = network_reachable


class HubUnreachableError(ConnectionError):
    """A hub handle was given but the hub's host cannot be reached (offline?).

    A ``ConnectionError`` (an ``OSError``), raised before keras-hub is asked to download
    anything; its message says how to make a local preset directory instead.
    """


# ----------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PretrainedPreprocessor(keras.layers.Layer):
    """A keras-hub text preprocessor inside a functional model: strings (batch,) -> dict of (batch, length).

    keras-hub tokenizers keep their vocabulary out of their config and restore it as an
    asset, after the model's graph is rebuilt. Rebuilding a functional model calls every
    layer on symbolic inputs, so a bare tokenizer would run without a vocabulary and fail.
    This wrapper declares its output spec instead of running the tokenizer, and builds the
    wrapped preprocessor on its first real call, when the assets are in place; the
    tokenizer's vocabulary is saved and loaded by Keras as the wrapped layer's asset.

    Args:
        preprocessor: a ``keras_hub.models.TextClassifierPreprocessor`` (or any layer taking
            strings and returning a dict of (batch, sequence_length) tensors).
        output_dtypes: {output key: dtype name}, e.g. {"token_ids": "int32", "padding_mask":
            "bool"}; measured by ``pretrained_encoder`` from a real call.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, preprocessor, output_dtypes, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor
        self.output_dtypes = dict(output_dtypes)

    def build(self, input_shape):
        # Nothing to create; the wrapped preprocessor builds itself on its first call.
        pass

    def call(self, inputs):
        outputs = self.preprocessor(inputs)
        return {key: outputs[key] for key in self.output_dtypes}

    def compute_output_spec(self, inputs):
        shape = (inputs.shape[0], self.preprocessor.sequence_length)
        return {key: keras.KerasTensor(shape, dtype=dtype) for key, dtype in self.output_dtypes.items()}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
                "output_dtypes": self.output_dtypes,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PretrainedPooling(keras.layers.Layer):
    """A backbone's output as one vector per example: (batch, tokens, d) or (batch, h, w, d) -> (batch, d).

    Token outputs: mode "cls" takes token 0 (BERT's [CLS], ViT's class token); "mean"
    averages the tokens where ``padding_mask`` is True (all tokens without a mask; an
    all-padding row gives zeros). Feature maps (batch, h, w, d): the spatial mean.

    Args:
        mode: "cls" or "mean" (``POOLING_CHOICES``); feature maps take "mean" only.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, mode="cls", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_choice(mode, "PretrainedPooling mode", POOLING_CHOICES)

    def build(self, inputs_shape, padding_mask_shape=None):
        if len(inputs_shape) == 4 and self.mode == "cls":
            raise ValueError(
                f"{self.name}: pooling 'cls' needs token outputs (batch, tokens, d); this backbone "
                f"outputs a feature map {tuple(inputs_shape)}. Use pooling='mean'."
            )

    def call(self, inputs, padding_mask=None):
        if len(inputs.shape) == 4:
            return ops.mean(inputs, axis=(1, 2))
        if self.mode == "cls":
            return inputs[:, 0, :]
        if padding_mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(padding_mask, inputs.dtype), axis=-1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        return ops.sum(inputs * weights, axis=1) / count

    def compute_output_shape(self, inputs_shape, padding_mask_shape=None):
        return (inputs_shape[0], inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PretrainedEncoder(keras.Model):
    """The functional model ``pretrained_encoder`` returns; a plain ``keras.Model`` but for reloading.

    A keras-hub backbone's config does not keep its sublayers' trainable flags, and one saved
    with ``trainable=False`` is rebuilt by Keras with the flag set before its layers are
    tracked, so layers it does not keep as attributes (all of ViT's) come back trainable.
    ``get_config`` records which of the backbone's sublayers are frozen (by their position in
    the backbone's layer walk, which the config fixes), and ``from_config`` sets the flags
    again: a backbone partly unfrozen (``xm.transfer.unfreeze(..., unit="block")``) reloads
    as it was saved.
    """

    def get_config(self):
        config = super().get_config()
        backbone = backbone_of(self)
        if backbone is not None and backbone.trainable:
            config["frozen_backbone_layers"] = [
                index for index, layer in enumerate(_sublayers(backbone)) if not layer.trainable
            ]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        frozen = config.pop("frozen_backbone_layers", [])
        model = super().from_config(config, custom_objects=custom_objects)
        backbone = backbone_of(model)
        if backbone is not None:
            _set_trainable(backbone, backbone.trainable)
            sublayers = _sublayers(backbone)
            for index in frozen:
                sublayers[index].trainable = False
        return model


def _sublayers(layer) -> list:
    """Every layer inside ``layer``, nested ones included, in Keras' walk order."""
    # Keras 3 has no public walk that enters plain layers holding layers (ViT's encoder).
    return list(layer._flatten_layers(include_self=False, recursive=True))


def _set_trainable(layer, trainable: bool) -> None:
    """``layer.trainable = trainable``, passed on to every sublayer and variable."""
    # With TensorFlow, assigning an attribute its current value is skipped (`False is False`),
    # and so is the setter that passes the flag on; flipping it first makes it run.
    layer.trainable = not trainable
    layer.trainable = trainable


# ----------------------------------------------------------------------------- builder


def pretrained_encoder(
    preset_or_path,
    *,
    modality="text",
    embedding_dim=None,
    pooling=None,
    sequence_length=None,
    image_size=None,
    trainable=False,
    name=None,
) -> keras.Model:
    """A keras-hub backbone with its preprocessing as an encoder: input -> (batch, dim).

    Text: raw strings (batch,) -> the preset's ``TextClassifierPreprocessor`` (tokenizer and
    packer; layer f"{name}_preprocessor", a ``PretrainedPreprocessor``) -> the backbone ->
    pooling of its sequence output (batch, sequence_length, hidden).

    Image: 0..255 RGB floats (batch, H, W, 3) -> scaling (f"{name}_preprocessor") -> the
    backbone -> pooling of its tokens (batch, tokens, hidden) or feature map (batch, h, w, c).
    The scaling is the preset's ``ImageConverter`` when it has one (its ``scale`` and
    ``offset``, e.g. [-1, 1] for ViT, ImageNet mean / std for ResNet), resizing only where the
    backbone needs a fixed size other than (H, W); a preset without a converter gets a plain
    ``Rescaling(1 / 255)`` to [0, 1].

    Then f"{name}_pooling" (a ``PretrainedPooling``) and, with ``embedding_dim``, a linear
    Dense f"{name}_embedding". The backbone is the layer f"{name}_backbone".

    Args:
        preset_or_path: a local preset directory (written by keras-hub's ``save_to_preset``,
            with a config.json), or a hub handle: a keras-hub preset name such as
            "bert_tiny_en_uncased", "kaggle://...", "hf://...", "gs://..." or
            "modelscope://...". A handle needs the internet (see Raises).
        modality: "text" or "image".
        embedding_dim: the output size (a linear projection), or None for the backbone's
            hidden size.
        pooling: "cls" (token 0) or "mean" (text: over the non-padding tokens; images: over
            the tokens or the spatial map). None: "cls" for text and for image backbones with
            a class token, "mean" for feature maps and token outputs without a class token.
        sequence_length: text only: the packed length (tokens beyond it are cut), overriding
            the preset's; at most the backbone's ``max_sequence_length``.
        image_size: images only: (H, W) or one int for both. None: the backbone's fixed size,
            else the converter's size, else any size.
        trainable: whether the backbone's weights train; the projection always does.
        name: the model's name and its layers' prefix; default f"{preset}_encoder" from the
            directory's or handle's last part.

    Returns:
        The encoder, a functional ``keras.Model`` (a ``PretrainedEncoder``) named ``name``.

    Raises:
        ImportError: keras-hub is not installed (``pip install "xmodal_tf[hub]"``).
        TypeError: an argument of a wrong type.
        ValueError: a wrong value: an unknown modality, pooling or hub scheme, a preset of
            the other modality, pooling "cls" for a feature map, a size the preset refuses.
        FileNotFoundError: a path that is not a preset directory (missing, or without
            config.json), or a text preset without a tokenizer / preprocessor.
        HubUnreachableError: a handle whose hub cannot be reached (a ``ConnectionError``),
            raised within a few seconds before any download starts.
    """
    source = _check_source(preset_or_path)
    modality = check_choice(modality, "pretrained_encoder modality", MODALITIES)
    embedding_dim = check_positive_int(embedding_dim, "embedding_dim", allow_none=True)
    if pooling is not None:
        check_choice(pooling, "pooling", POOLING_CHOICES)
    sequence_length = _check_modality_option(sequence_length, "sequence_length", modality, "text")
    image_size = _check_modality_option(image_size, "image_size", modality, "image")
    if sequence_length is not None:
        sequence_length = check_int(sequence_length, "sequence_length", minimum=2, expected="an int >= 2 or None")
    if image_size is not None:
        image_size = _check_image_size(image_size)
    trainable = check_bool(trainable, "trainable")
    name = _check_name(name, source)

    hub = _import_keras_hub()
    preset = _resolve_preset(source, hub, modality)
    backbone = hub.models.Backbone.from_preset(preset, name=f"{name}_backbone")
    _check_backbone_modality(backbone, modality, source)
    _set_trainable(backbone, trainable)
    if modality == "text":
        inputs, features, mask = _text_features(hub, preset, backbone, sequence_length, name)
    else:
        inputs, features, mask = _image_features(hub, preset, backbone, image_size, name)
    pooling = pooling or _default_pooling(backbone, features, modality)
    x = PretrainedPooling(pooling, name=f"{name}_pooling")(features, padding_mask=mask)
    if embedding_dim is not None:
        x = keras.layers.Dense(embedding_dim, name=f"{name}_embedding")(x)
    return PretrainedEncoder(inputs, x, name=name)


def backbone_of(encoder):
    """The keras-hub backbone inside an encoder from ``pretrained_encoder``.

    Args:
        encoder: a ``keras.Model``.

    Returns:
        Its top-level ``keras_hub.models.Backbone`` layer (f"{name}_backbone"), or None if it
        has none (or keras-hub is not installed).

    Raises:
        TypeError: ``encoder`` is not a ``keras.Model``.
    """
    if not isinstance(encoder, keras.Model):
        raise TypeError(f"backbone_of takes a keras.Model (an encoder from pretrained_encoder); got {encoder!r}.")
    try:
        import keras_hub
    except ImportError:
        return None
    return next((layer for layer in encoder.layers if isinstance(layer, keras_hub.models.Backbone)), None)


# ----------------------------------------------------------------------------- checks


def _check_source(preset_or_path) -> str:
    if not isinstance(preset_or_path, (str, os.PathLike)):
        raise TypeError(
            "preset_or_path must be a local preset directory or a hub handle such as "
            f"'bert_tiny_en_uncased' (a str or path); got {preset_or_path!r} ({type(preset_or_path).__name__})."
        )
    source = os.fspath(preset_or_path)
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"preset_or_path must name a preset directory or a hub handle; got {preset_or_path!r}.")
    return source


def _check_modality_option(value, argument: str, modality: str, applies_to: str):
    if value is not None and modality != applies_to:
        raise ValueError(
            f"{argument} applies to modality={applies_to!r} only; got {argument}={value!r} with "
            f"modality={modality!r}. Leave it None."
        )
    return value


def _check_image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    return check_shape(image_size, "image_size", rank=2, hint="Pass (height, width), e.g. (224, 224).")


def _check_name(name, source: str) -> str:
    if name is None:
        parts = [part for part in re.split(r"[/\\]+|://", source) if part and not part.isdigit()]
        return re.sub(r"\W+", "_", parts[-1] if parts else "pretrained").strip("_") + "_encoder"
    if not isinstance(name, str):
        raise TypeError(f"name must be a str or None; got {name!r} ({type(name).__name__}).")
    if not name or "/" in name:
        raise ValueError(f"name must be a non-empty str without '/'; got {name!r}.")
    return name


def _import_keras_hub():
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(f"pretrained_encoder needs keras-hub, which is not installed: {_INSTALL_HINT}") from error
    return keras_hub


def _looks_like_path(source: str) -> bool:
    return "://" not in source and (
        os.sep in source or "/" in source or source.startswith(("~", ".")) or os.path.exists(source)
    )


def _resolve_preset(source: str, hub, modality: str) -> str:
    """The preset to pass to keras-hub: a checked local directory, or a handle whose hub answers."""
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, _CONFIG_FILE)):
            raise FileNotFoundError(
                f"{path!r} is not a keras-hub preset directory: it has no {_CONFIG_FILE}. Pass a directory "
                "written by keras-hub's save_to_preset (config.json, model.weights.h5, ...)."
            )
        return os.path.abspath(path)
    if _looks_like_path(source):
        what = "is a file, not a directory" if os.path.exists(path) else "does not exist"
        raise FileNotFoundError(
            f"Preset directory {path!r} {what}. Pass a directory written by keras-hub's save_to_preset, "
            "or a hub handle such as 'bert_tiny_en_uncased'."
        )
    _check_hub_reachable(source, _hub_host(source, hub), modality)
    return source


def _hub_host(handle: str, hub) -> str:
    if "://" not in handle:
        presets = hub.models.Backbone.presets
        if handle not in presets:
            raise ValueError(
                f"{handle!r} is neither a local preset directory nor a keras-hub preset name (see "
                "keras_hub.models.Backbone.presets); pass a directory written by save_to_preset, a "
                f"preset name, or a handle with one of the schemes {', '.join(s + '://' for s in HUB_HOSTS)}."
            )
        handle = presets[handle]["kaggle_handle"]
    scheme = handle.split("://", 1)[0].lower()
    if scheme not in HUB_HOSTS:
        raise ValueError(
            f"Unknown hub scheme {scheme + '://'!r} in {handle!r}; use one of "
            f"{', '.join(s + '://' for s in HUB_HOSTS)}, a keras-hub preset name, or a local preset directory."
        )
    return HUB_HOSTS[scheme]


def _check_hub_reachable(handle: str, host: str, modality: str) -> None:
    if _network_reachable(host):
        return
    preprocessing = (
        "keras_hub.models.TextClassifierPreprocessor" if modality == "text" else "keras_hub.layers.ImageConverter"
    )
    raise HubUnreachableError(
        f"Cannot load the keras-hub preset {handle!r}: its hub {host} is unreachable (offline?), so nothing "
        "was downloaded. Make a local copy on a machine with internet access:\n"
        "    import keras_hub\n"
        f"    keras_hub.models.Backbone.from_preset({handle!r}).save_to_preset('my_preset')\n"
        f"    {preprocessing}.from_preset({handle!r}).save_to_preset('my_preset')\n"
        "then copy the directory here and pass its path: pretrained_encoder('/path/to/my_preset', ...)."
    )


def _check_backbone_modality(backbone, modality: str, source: str) -> None:
    takes_tokens = isinstance(backbone.input, dict) and "token_ids" in backbone.input
    takes_images = not isinstance(backbone.input, dict) and len(backbone.input.shape) == 4
    if (modality == "text" and not takes_tokens) or (modality == "image" and not takes_images):
        other = "image" if takes_images else "text" if takes_tokens else "another input"
        raise ValueError(
            f"The preset {source!r} holds a {type(backbone).__name__}, a backbone for {other}, not for "
            f"modality={modality!r}; pass modality={other!r} or a {modality} preset."
        )


def _default_pooling(backbone, features, modality: str) -> str:
    if modality == "text":
        return "cls"
    if len(features.shape) == 4 or not getattr(backbone, "use_class_token", True):
        return "mean"
    return "cls"


# ----------------------------------------------------------------------------- parts


def _sequence_output(outputs):
    """The per-token features of a backbone whose output may be a dict."""
    if not isinstance(outputs, dict):
        return outputs
    if "sequence_output" not in outputs:
        raise ValueError(
            f"The backbone's outputs {sorted(outputs)} have no 'sequence_output' to pool; this preset is not supported."
        )
    return outputs["sequence_output"]


def _text_features(hub, preset: str, backbone, sequence_length, name: str):
    """Strings (batch,) -> (the input, the sequence output (batch, length, hidden), the padding mask)."""
    limit = getattr(backbone, "max_sequence_length", None)
    if sequence_length is not None and limit is not None and sequence_length > limit:
        raise ValueError(
            f"sequence_length={sequence_length} exceeds the backbone's max_sequence_length={limit}; "
            f"pass at most {limit}."
        )
    options = {} if sequence_length is None else {"sequence_length": sequence_length}
    try:
        preprocessor = hub.models.TextClassifierPreprocessor.from_preset(preset, **options)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"The preset {preset!r} has no text preprocessor or tokenizer ({error}). Save one next to the "
            "backbone with keras_hub.models.TextClassifierPreprocessor.from_preset(...).save_to_preset(dir)."
        ) from error
    if limit is not None and preprocessor.sequence_length > limit:
        preprocessor.sequence_length = limit
    # One real call, while the vocabulary is loaded, gives the output keys and dtypes.
    sample = preprocessor(keras.ops.convert_to_tensor(["a"]))
    keys = [key for key in sample if key in backbone.input]
    dtypes = {key: keras.backend.standardize_dtype(sample[key].dtype) for key in keys}
    inputs = keras.Input(shape=(), dtype="string", name=f"{name}_text")
    tokens = PretrainedPreprocessor(preprocessor, dtypes, name=f"{name}_preprocessor")(inputs)
    features = _sequence_output(backbone(tokens))
    return inputs, features, tokens.get("padding_mask")


def _image_features(hub, preset: str, backbone, image_size, name: str):
    """Images (batch, H, W, 3) -> (the input, the backbone's tokens or feature map, None)."""
    fixed = tuple(backbone.input.shape[1:3])
    fixed = None if None in fixed else fixed
    converter = _image_converter(hub, preset, name)
    size = image_size or fixed or (converter.image_size if converter is not None else None) or (None, None)
    resize = fixed is not None and tuple(size) != fixed
    if converter is not None:
        # Resize only to a size the backbone needs; any other backbone sees the images as given.
        converter.image_size = fixed if resize else None
        scale = converter
    elif resize:
        raise ValueError(
            f"image_size={tuple(size)} does not fit the backbone, which takes {fixed} images, and the preset "
            f"has no image converter to resize them; pass image_size={fixed} (or None)."
        )
    else:
        scale = keras.layers.Rescaling(1.0 / 255.0, name=f"{name}_preprocessor")
    inputs = keras.Input(shape=(*size, 3), name=f"{name}_images")
    features = _sequence_output(backbone(scale(inputs)))
    return inputs, features, None


def _image_converter(hub, preset: str, name: str):
    """The preset's ``ImageConverter`` named f"{name}_preprocessor", or None if it has none."""
    if os.path.isdir(preset) and not os.path.isfile(os.path.join(preset, "image_converter.json")):
        return None
    try:
        return hub.layers.ImageConverter.from_preset(preset, name=f"{name}_preprocessor")
    except FileNotFoundError:
        return None

"""Move trained weights between Keras models, freeze and unfreeze layers, swap heads.

:func:`transfer_weights` copies weights layer by layer, shape-checking every pair first; :func:`freeze`
and :func:`unfreeze` set ``trainable`` flags (and warn, or recompile, since Keras uses them only after
``compile``); :func:`replace_head` puts a new head on a model's body; :func:`fine_tune` runs the
two-stage recipe: a new head on a frozen body, then the top of the body with a small learning rate.

Layer paths: nested models (functional, Sequential, subclassed) are walked recursively down to the
layers that own weights. A layer's *path* joins the names of its enclosing sub-models and its own name
with ``/``, relative to the model passed in, e.g. ``"encoder/conv1"``. Wherever a layer name is
accepted, either form works: the exact path, or the layer's own name (``"conv1"``) if exactly one layer
has it; a name shared by several layers raises ``ValueError`` listing their paths. A layer reachable
through several paths (a shared sub-model) is visited once, under its first path.

Blocks: :func:`backbone_blocks` lists the transformer blocks (or ResNet stages) of the keras-hub
backbones inside a model, and ``unit="block"`` makes :func:`freeze`, :func:`unfreeze` and
:func:`fine_tune` name and count those instead of layers; a block's path continues into the layer
that holds it where needed (``"image_backbone/vit_encoder/transformer_block_1"``).

Design notes (the gaps in Keras 3 this fills): docs/DESIGN.md (section xmodal_tf/transfer.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import warnings
from collections import defaultdict
from typing import Any, NamedTuple

import keras

from xmodal_tf._validation import check_choice, check_int, check_number, check_positive_int

__all__ = [
    "FineTuneResult",
    "ShapeMismatch",
    "TransferReport",
    "backbone_blocks",
    "fine_tune",
    "freeze",
    "replace_head",
    "transfer_weights",
    "unfreeze",
]


# ---------------------------------------------------------------- walking models


@dataclasses.dataclass(frozen=True)
class _Node:
    """One layer reached while walking a model, in pre-order (containers first)."""

    path: str
    layer: Any
    ancestors: tuple  # enclosing sub-models, outermost first (the root model excluded)
    is_container: bool

    @property
    def owns_weights(self) -> bool:
        return not self.is_container and bool(self.layer.weights)


def _is_container(layer) -> bool:
    # A model used as a layer is opened up; a model without sub-layers (or any other
    # layer, even one with inner layers such as MultiHeadAttention) is a leaf.
    return isinstance(layer, keras.Model) and bool(layer.layers)


def _walk(model) -> list[_Node]:
    nodes: list[_Node] = []
    seen: set[int] = {id(model)}

    def visit(container, prefix, ancestors):
        for layer in container.layers:
            if id(layer) in seen or isinstance(layer, keras.layers.InputLayer):
                continue
            seen.add(id(layer))
            path = prefix + layer.name
            container_like = _is_container(layer)
            nodes.append(_Node(path, layer, ancestors, container_like))
            if container_like:
                visit(layer, path + "/", ancestors + (layer,))

    visit(model, "", ())
    return nodes


def _weighted_leaves(nodes: list[_Node]) -> list[_Node]:
    return [node for node in nodes if node.owns_weights]


def _leaves_under(container_node: _Node, nodes: list[_Node]) -> list[_Node]:
    return [node for node in nodes if node.owns_weights and any(a is container_node.layer for a in node.ancestors)]


def _close_names(name: str, nodes: list[_Node]) -> list[str]:
    candidates = sorted({n.path for n in nodes} | {n.layer.name for n in nodes})
    return difflib.get_close_matches(str(name), candidates, n=5, cutoff=0.5)


def _resolve(name, nodes: list[_Node], model, role: str) -> _Node:
    """The node for a path, a unique layer name, or a layer object of ``model``."""
    if isinstance(name, keras.layers.Layer):
        for node in nodes:
            if node.layer is name:
                return node
        raise ValueError(f"layer {name.name!r} ({type(name).__name__}) is not part of {role} model {model.name!r}")
    if not isinstance(name, str):
        raise TypeError(
            f"a layer must be given by name (str) or as a layer object; got {type(name).__name__}: {name!r}"
        )
    for node in nodes:
        if node.path == name:
            return node
    same_name = [node for node in nodes if node.layer.name == name]
    if len(same_name) == 1:
        return same_name[0]
    if len(same_name) > 1:
        raise ValueError(
            f"layer name {name!r} is ambiguous in {role} model {model.name!r}: "
            f"it names {[n.path for n in same_name]}; give the full path instead"
        )
    close = _close_names(name, nodes)
    hint = f"; close names: {close}" if close else ""
    raise ValueError(
        f"{role} model {model.name!r} has no layer named {name!r}{hint} (its layers: {[n.path for n in nodes]})"
    )


def _check_model(obj, role: str):
    if not isinstance(obj, keras.Model):
        raise TypeError(f"{role} must be a keras.Model; got {type(obj).__name__}: {_short_repr(obj)}")
    return obj


def _check_built(model, role: str):
    if not model.built:
        raise ValueError(
            f"{role} model {model.name!r} is not built, so it has no weights "
            "yet: call it on a batch of data or call model.build(input_shape) "
            "first (or give a Sequential model a keras.Input)"
        )


def _short_repr(obj, limit: int = 80) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_batchnorm(layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


# ---------------------------------------------------------------- weight transfer


class ShapeMismatch(NamedTuple):
    """A target/source layer pair whose weights could not be copied.

    Attributes:
        target: the target layer's path.
        source: the source layer's path.
        target_shapes: the shapes of the target layer's weights, a list of tuples.
        source_shapes: the shapes of the source layer's weights.
    """

    target: str
    source: str
    target_shapes: list
    source_shapes: list


@dataclasses.dataclass
class TransferReport:
    """What :func:`transfer_weights` did, layer by layer (paths as in the module docs).

    Attributes:
        copied: ``(target_path, source_path)`` pairs whose weights were copied.
        missing: target layers that own weights but have no source counterpart.
        mismatched: :class:`ShapeMismatch` entries, matched but not copied because the
            weight shapes (or counts) differ; their target weights are unchanged.
        unused: source layers with weights that fed no target layer.
        skipped: target layers with weights left out of an explicit dict mapping
            (only filled with ``match=dict``; not an error even with ``strict=True``).
    """

    copied: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    mismatched: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every target layer that was asked for received its weights."""
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        """The counts and one line per layer (copied, missing, mismatched, unused, skipped), as text."""
        lines = [
            f"TransferReport: {len(self.copied)} copied, {len(self.missing)} missing, "
            f"{len(self.mismatched)} mismatched, {len(self.unused)} unused"
            + (f", {len(self.skipped)} skipped" if self.skipped else "")
            + (" (ok)" if self.ok else " (NOT ok)")
        ]
        for target, source in self.copied:
            lines.append(f"  copied      {target} <- {source}")
        for target in self.missing:
            lines.append(f"  missing     {target} (no source layer)")
        for item in self.mismatched:
            lines.append(f"  mismatched  {item.target} {item.target_shapes} <- {item.source} {item.source_shapes}")
        for source in self.unused:
            lines.append(f"  unused      {source} (source)")
        for target in self.skipped:
            lines.append(f"  skipped     {target} (not in the mapping)")
        return "\n".join(lines)

    __str__ = summary


def _weight_shapes(layer) -> list:
    return [tuple(int(d) for d in weight.shape) for weight in layer.weights]


def _load_source(source):
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"source model file not found: {path!r}")
        return keras.models.load_model(path, compile=False)
    if not isinstance(source, keras.Model):
        raise TypeError(
            "source must be a keras.Model or a path to a saved .keras file; "
            f"got {type(source).__name__}: {_short_repr(source)}"
        )
    return source


def _pairs_by_name(target_nodes, source_nodes):
    source_by_path = {node.path: node for node in source_nodes}
    source_by_name = defaultdict(list)
    for node in source_nodes:
        source_by_name[node.layer.name].append(node)
    pairs, missing = [], []
    for node in target_nodes:
        match = source_by_path.get(node.path)
        if match is None:
            candidates = source_by_name.get(node.layer.name, [])
            if len(candidates) > 1:
                raise ValueError(
                    f"target layer {node.path!r} matches several source layers by name: "
                    f"{[c.path for c in candidates]}; pass match={{target_path: source_path}} "
                    "to choose"
                )
            match = candidates[0] if candidates else None
        if match is None:
            missing.append(node.path)
        else:
            pairs.append((node, match))
    feeds = defaultdict(list)
    for target_node, source_node in pairs:
        feeds[id(source_node.layer)].append(target_node.path)
    for _, source_node in pairs:
        if len(feeds[id(source_node.layer)]) > 1:
            raise ValueError(
                f"source layer {source_node.path!r} matches several target layers by name: "
                f"{feeds[id(source_node.layer)]}; pass match={{target_path: source_path}} "
                "to say which should receive it"
            )
    return pairs, missing


def _pairs_by_mapping(mapping, target_all, source_all, target, source):
    pairs = []
    for target_name, source_name in mapping.items():
        target_node = _resolve(target_name, target_all, target, "target")
        source_node = _resolve(source_name, source_all, source, "source")
        if target_node.is_container != source_node.is_container:
            raise ValueError(
                f"mapping {target_name!r} -> {source_name!r} pairs a sub-model with a single "
                "layer; map sub-model to sub-model (their layers are paired in order) "
                "or layer to layer"
            )
        if target_node.is_container:
            inner_targets = _leaves_under(target_node, target_all)
            inner_sources = _leaves_under(source_node, source_all)
            if len(inner_targets) != len(inner_sources):
                raise ValueError(
                    f"sub-models {target_node.path!r} ({len(inner_targets)} layers with "
                    f"weights) and {source_node.path!r} ({len(inner_sources)}) differ in "
                    "structure; map their layers one by one"
                )
            pairs.extend(zip(inner_targets, inner_sources))
        else:
            if not target_node.owns_weights:
                raise ValueError(f"target layer {target_node.path!r} has no weights to copy into")
            if not source_node.owns_weights:
                raise ValueError(f"source layer {source_node.path!r} has no weights to copy")
            pairs.append((target_node, source_node))
    return pairs


def transfer_weights(source, target, match="name", *, strict: bool = False) -> TransferReport:
    """Copy weights from ``source`` into ``target`` layer by layer.

    All weights of a layer are copied, trainable or not (BatchNorm moving mean and
    variance included). Every pair is shape-checked first: a pair whose weight shapes
    (or number of weights) differ is reported in ``mismatched`` and left untouched.

    Args:
        source: a built ``keras.Model``, or a path to a saved ``.keras`` model (loaded
            with ``keras.models.load_model(path, compile=False)``; custom layers must be
            registered as serializable).
        target: a built ``keras.Model``; changed in place.
        match: how target layers find their source layer, among the layers that own
            weights (nested sub-models are walked; see the module docs for paths):

            * ``"name"``: same path, or else the same layer name (``"encoder/dense"``
              in the target matches ``"dense"`` in the source). A name that matches
              several layers on either side raises ``ValueError``: use a dict.
            * ``"order"``: the i-th weight-owning layer of the target gets the i-th of
              the source (walk order: ``model.layers`` order, sub-models opened in place).
            * a dict ``{target_name: source_name}`` (paths or unique names): only these
              pairs are copied; other target layers are listed in ``report.skipped``.
              Mapping one sub-model to another pairs their layers in order.
        strict: raise ``ValueError`` listing every missing or mismatched layer instead of
            copying the rest; in that case the target is left completely unchanged.

    Returns:
        A :class:`TransferReport`.

    Raises:
        TypeError: ``source`` / ``target`` is not a model (or a path, for ``source``),
            or ``match`` is not "name", "order" or a dict.
        ValueError: an unbuilt model; a dict naming a layer either model lacks
            (close names are suggested); ambiguous names; ``strict`` and not ``ok``.
        FileNotFoundError: ``source`` is a path that does not exist.
    """
    source = _load_source(source)
    _check_model(target, "target")
    _check_built(source, "source")
    _check_built(target, "target")

    target_all, source_all = _walk(target), _walk(source)
    target_nodes, source_nodes = _weighted_leaves(target_all), _weighted_leaves(source_all)
    report = TransferReport()

    if isinstance(match, str) and match == "name":
        pairs, report.missing = _pairs_by_name(target_nodes, source_nodes)
    elif isinstance(match, str) and match == "order":
        pairs = list(zip(target_nodes, source_nodes))
        report.missing = [node.path for node in target_nodes[len(pairs) :]]
    elif isinstance(match, dict):
        pairs = _pairs_by_mapping(match, target_all, source_all, target, source)
        mapped = {id(t.layer) for t, _ in pairs}
        report.skipped = [node.path for node in target_nodes if id(node.layer) not in mapped]
    else:
        raise TypeError(
            'match must be "name", "order" or a dict {target_layer: source_layer}; '
            f"got {type(match).__name__}: {_short_repr(match)}"
        )

    to_copy = []
    for target_node, source_node in pairs:
        target_shapes = _weight_shapes(target_node.layer)
        source_shapes = _weight_shapes(source_node.layer)
        if target_shapes != source_shapes:
            report.mismatched.append(ShapeMismatch(target_node.path, source_node.path, target_shapes, source_shapes))
        else:
            to_copy.append((target_node, source_node))
    used = {id(s.layer) for _, s in pairs}
    report.unused = [node.path for node in source_nodes if id(node.layer) not in used]

    if strict and not report.ok:
        problems = [f"missing: {path}" for path in report.missing]
        problems += [
            f"mismatched: {m.target} {m.target_shapes} vs source {m.source} {m.source_shapes}"
            for m in report.mismatched
        ]
        raise ValueError(
            "transfer_weights(strict=True): nothing was copied because "
            f"{len(problems)} target layer(s) cannot be filled:\n  " + "\n  ".join(problems)
        )

    for target_node, source_node in to_copy:
        target_node.layer.set_weights(source_node.layer.get_weights())
        report.copied.append((target_node.path, source_node.path))
    return report


# ---------------------------------------------------------------- freeze / unfreeze


def _effectively_trainable(node: _Node, model) -> bool:
    return model.trainable and all(a.trainable for a in node.ancestors) and node.layer.trainable


def _select(model, nodes, layers, up_to, pattern, fn_name) -> list[_Node]:
    """Weight-owning leaves chosen by at most one selector (all of them if none)."""
    given = [
        label for label, value in (("layers", layers), ("up_to", up_to), ("pattern", pattern)) if value is not None
    ]
    if len(given) > 1:
        raise ValueError(f"{fn_name}: give at most one layer selector; got {given}")
    leaves = _weighted_leaves(nodes)
    if layers is not None:
        if isinstance(layers, (str, keras.layers.Layer)):
            layers = [layers]
        chosen: dict[int, _Node] = {}
        for item in layers:
            node = _resolve(item, nodes, model, "the")
            for leaf in _leaves_under(node, nodes) if node.is_container else [node]:
                if leaf.owns_weights:
                    chosen[id(leaf.layer)] = leaf
        return [leaf for leaf in leaves if id(leaf.layer) in chosen]
    if up_to is not None:
        node = _resolve(up_to, nodes, model, "the")
        last = node
        if node.is_container:
            inner = [n for n in nodes if any(a is node.layer for a in n.ancestors)]
            last = inner[-1] if inner else node
        position = {id(n.layer): i for i, n in enumerate(nodes)}
        limit = position[id(last.layer)]
        return [leaf for leaf in leaves if position[id(leaf.layer)] <= limit]
    if pattern is not None:
        regex = re.compile(pattern)
        chosen = {}
        for node in nodes:
            if regex.search(node.path) or regex.search(node.layer.name):
                for leaf in _leaves_under(node, nodes) if node.is_container else [node]:
                    if leaf.owns_weights:
                        chosen[id(leaf.layer)] = leaf
        return [leaf for leaf in leaves if id(leaf.layer) in chosen]
    return leaves


def _apply_trainable(model, nodes, wanted: dict[int, bool]) -> list[str]:
    """Sets leaf flags to ``wanted`` (id -> bool); returns paths whose state changed."""
    leaves = _weighted_leaves(nodes)
    before_effective = {id(n.layer): _effectively_trainable(n, model) for n in leaves}
    _set_flags(model, wanted)
    return [n.path for n in leaves if _effectively_trainable(n, model) != before_effective[id(n.layer)]]


def _sub_layers(layer) -> list:
    """The direct sub-layers of a layer or model (models: in ``model.layers`` order)."""
    children = list(layer.layers) if isinstance(layer, keras.Model) else []
    known = {id(child) for child in children}
    # A plain layer's sub-layers (ViT's encoder blocks) have no public accessor in Keras 3.
    children += [
        child for child in layer._flatten_layers(include_self=False, recursive=False) if id(child) not in known
    ]
    return [child for child in children if not isinstance(child, keras.layers.InputLayer)]


def _deep_walk(model) -> list[tuple]:
    """``(layer, ancestors)`` for every layer at any depth, in pre-order (parents first)."""
    entries: list[tuple] = []
    seen: set[int] = {id(model)}

    def visit(parent, ancestors):
        for layer in _sub_layers(parent):
            if id(layer) not in seen:
                seen.add(id(layer))
                entries.append((layer, ancestors))
                visit(layer, ancestors + (layer,))

    visit(model, ())
    return entries


def _set_flags(model, wanted: dict[int, bool]) -> None:
    """Gives each layer in ``wanted`` (id -> flag) and its sub-layers that flag.

    The innermost wanted layer decides for a sub-layer. Keras' ``trainable`` setter is
    recursive and a frozen parent hides its sub-layers, so making a layer trainable
    makes its enclosing layers and the model trainable again, after which every other
    layer, at any depth, gets its own flag back.
    """
    entries = _deep_walk(model)
    target = {id(model): model.trainable}
    for layer, ancestors in entries:
        target[id(layer)] = layer.trainable
        for holder in (layer, *reversed(ancestors)):
            if id(holder) in wanted:
                target[id(layer)] = wanted[id(holder)]
                break
    for layer, ancestors in entries:
        if wanted.get(id(layer)):
            for ancestor in (model, *ancestors):
                target[id(ancestor)] = True
    ordered = [model, *(layer for layer, _ in entries)]  # pre-order: parents before children
    # A shared sub-model can be reset by a parent visited after it; a few passes settle.
    for _ in range(len(ordered) + 1):
        changed = False
        for layer in ordered:
            if layer.trainable != target[id(layer)]:
                layer.trainable = target[id(layer)]
                changed = True
        if not changed:
            break


def _after_trainable_change(model, changed, recompile: bool, fn_name: str):
    if not changed or not getattr(model, "compiled", False):
        return
    if not recompile:
        warnings.warn(
            f"{fn_name}() changed trainable flags of the compiled model {model.name!r}; "
            "Keras uses them only after compiling again: call model.compile(...) before "
            f"fit, or pass recompile=True to {fn_name}()",
            UserWarning,
            stacklevel=3,
        )
        return
    if type(model).compile is not keras.Model.compile:
        warnings.warn(
            f"{fn_name}(recompile=True): {type(model).__name__} overrides compile(), so it "
            "cannot be recompiled from its compile config; call model.compile(...) yourself",
            UserWarning,
            stacklevel=3,
        )
        return
    try:
        model.compile_from_config(model.get_compile_config())
    except Exception as error:  # a custom loss/metric that cannot be deserialized
        raise ValueError(
            f"{fn_name}(recompile=True) could not recompile {model.name!r} from "
            f"its compile config ({error}); call model.compile(...) yourself "
            "instead"
        ) from error


# ---------------------------------------------------------------- backbone blocks

# How the blocks of a keras-hub backbone are named, per family: the first family whose
# regex full-matches a layer name inside the backbone is used; group 1 is the block's
# name, and the layers that share it form the block (one layer, or a ResNet stage's many).
_BLOCK_FAMILIES = (
    ("BERT-style (BERT, DistilBERT, RoBERTa, ELECTRA, GPT-2): transformer_layer_<i>", r"(transformer_layer_\d+)"),
    ("ViT / DeiT: vit_encoder/transformer_block_<i>", r"(transformer_block_\d+)"),
    ("CLIP / SigLIP encoders: encoder_block_<i>", r"(\w*encoder_block_\d+)"),
    ("ResNet: stages stack<i> (the layers named stack<i>_...)", r"(stack\d+)_\w+"),
)
_BLOCK_CLASS_SUFFIXES = ("TransformerEncoder", "TransformerDecoder", "TransformerLayer", "EncoderLayer", "Block")
_RECOGNISED = (
    "; ".join(family for family, _ in _BLOCK_FAMILIES)
    + "; otherwise layers whose class name ends in "
    + ", ".join(_BLOCK_CLASS_SUFFIXES)
)
_UNITS = ("layer", "block")


@dataclasses.dataclass(frozen=True)
class _Unit:
    """A part of a backbone that ``unit="block"`` acts on: a block, or a layer with weights outside the blocks."""

    path: str
    layers: tuple
    is_block: bool

    @property
    def weights(self) -> list:
        return [weight for layer in self.layers for weight in layer.weights]


@dataclasses.dataclass(frozen=True)
class _Backbone:
    """A keras-hub backbone inside a model: its units, input to output."""

    name: str  # its path in the model, or its name when it is the model itself
    layer: Any
    units: tuple

    @property
    def blocks(self) -> list[_Unit]:
        return [unit for unit in self.units if unit.is_block]


def _backbone_class():
    # A model can only hold a keras-hub backbone once keras_hub is imported, so checking
    # sys.modules spares every other model the import (seconds) and works without it.
    if "keras_hub" not in sys.modules:
        return None
    try:
        import keras_hub

        return keras_hub.models.Backbone
    except (ImportError, AttributeError):
        return None


def _block_namer(layers):
    """A function ``layer -> block name or None`` for the family these layers belong to."""
    for _, pattern in _BLOCK_FAMILIES:
        regex = re.compile(pattern)
        if any(regex.fullmatch(layer.name) for layer in layers):
            return lambda layer, regex=regex: (match := regex.fullmatch(layer.name)) and match.group(1)
    return lambda layer: layer.name if type(layer).__name__.endswith(_BLOCK_CLASS_SUFFIXES) else None


def _describe_backbone(path, backbone, backbone_class) -> _Backbone:
    """The units of one backbone; nested backbones are described on their own."""

    def inner(layer):
        for child in _sub_layers(layer):
            if not isinstance(child, backbone_class):
                yield child
                yield from inner(child)

    block_of = _block_namer(list(inner(backbone)))
    units: list[_Unit] = []
    seen: set[int] = set()

    def visit(container, prefix):
        for child in _sub_layers(container):
            if isinstance(child, backbone_class) or id(child) in seen:
                continue
            seen.add(id(child))
            block = block_of(child)
            if block:
                _add_to_block(units, prefix + block, child)
            elif any(block_of(layer) for layer in inner(child)):
                visit(child, prefix + child.name + "/")
            elif child.weights:
                units.append(_Unit(prefix + child.name, (child,), False))

    visit(backbone, path + "/" if path else "")
    return _Backbone(path or backbone.name, backbone, tuple(units))


def _add_to_block(units: list, path: str, layer) -> None:
    for index, unit in enumerate(units):
        if unit.is_block and unit.path == path:
            units[index] = dataclasses.replace(unit, layers=unit.layers + (layer,))
            return
    units.append(_Unit(path, (layer,), True))


def _backbones(model) -> list[_Backbone]:
    """Every keras-hub backbone in ``model`` (the model itself included), in walk order."""
    backbone_class = _backbone_class()
    if backbone_class is None:
        return []
    found = [("", model)] if isinstance(model, backbone_class) else []
    found += [(node.path, node.layer) for node in _walk(model) if isinstance(node.layer, backbone_class)]
    return [_describe_backbone(path, layer, backbone_class) for path, layer in found]


def _block_backbones(model, fn_name: str) -> list[_Backbone]:
    """The backbones of ``model``; ValueError if none of them has recognised blocks."""
    backbones = _backbones(model)
    if any(backbone.blocks for backbone in backbones):
        return backbones
    held = (
        f"its keras-hub backbones {[b.name for b in backbones]} have no recognised blocks"
        if backbones
        else "it holds no keras-hub Backbone (keras_hub.models.Backbone)"
    )
    raise ValueError(
        f"{fn_name}: unit='block' found no backbone blocks in model {model.name!r}: {held}. "
        f"Recognised blocks: {_RECOGNISED}. Select layers with unit='layer' (the default) instead"
    )


def backbone_blocks(model) -> list[str]:
    """The paths of the blocks of every keras-hub backbone inside ``model``.

    A block is a backbone's unit of fine-tuning: a transformer layer, or a ResNet stage.
    keras-hub backbones (``keras_hub.models.Backbone``, e.g. ``BertBackbone``,
    ``ViTBackbone``, ``ResNetBackbone``, CLIP's encoders) are found anywhere in the model,
    the model itself included; a backbone nested in another (CLIP's two encoders) is a
    backbone of its own. Their blocks are recognised by name, per family:

    * BERT-style text encoders (BERT, DistilBERT, RoBERTa, ELECTRA, GPT-2, ...):
      ``transformer_layer_<i>``;
    * ViT and DeiT: ``transformer_block_<i>``, inside the ``vit_encoder`` layer;
    * CLIP and SigLIP encoders: ``encoder_block_<i>`` (with the encoder's prefix, if any);
    * ResNet: the stages ``stack<i>``, each the group of layers named ``stack<i>_...``;
    * any other backbone: layers whose class name ends in ``TransformerEncoder``,
      ``TransformerDecoder``, ``TransformerLayer``, ``EncoderLayer`` or ``Block``.

    Paths are as in the module docs: ``"text_backbone/transformer_layer_0"``,
    ``"image_backbone/vit_encoder/transformer_block_1"``, ``"resnet_backbone/stack0"``.
    These paths, or the blocks' own names where unique, are what
    ``freeze(..., unit="block")`` and ``unfreeze(..., unit="block")`` accept.

    Args:
        model: a ``keras.Model``.

    Returns:
        The block paths, backbone by backbone (in walk order), each backbone's from
        input to output; empty when the model holds no backbone (or keras_hub is not
        imported) or no recognised block.

    Raises:
        TypeError: ``model`` is not a keras.Model.
    """
    _check_model(model, "model")
    return [block.path for backbone in _backbones(model) for block in backbone.blocks]


def _find_block(name, blocks: list[_Unit], model, fn_name: str) -> _Unit:
    if not isinstance(name, str):
        raise TypeError(
            f"{fn_name}: with unit='block', name blocks by path or name (str); got {type(name).__name__}: "
            f"{_short_repr(name)}"
        )
    for block in blocks:
        if block.path == name:
            return block
    named = [block for block in blocks if block.path.rsplit("/", 1)[-1] == name]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ValueError(
            f"{fn_name}: block name {name!r} is ambiguous in model {model.name!r}: it names "
            f"{[block.path for block in named]}; give the full path instead"
        )
    close = difflib.get_close_matches(name, [block.path for block in blocks], n=3, cutoff=0.5)
    hint = f"; close names: {close}" if close else ""
    raise ValueError(
        f"{fn_name}: {name!r} is not a backbone block of model {model.name!r}{hint}. Its blocks: "
        f"{[block.path for block in blocks]} (for other layers use unit='layer')"
    )


def _top_blocks(backbones: list[_Backbone], top: int, label: str) -> list[list[_Unit]]:
    """The last ``top`` blocks of each backbone that has blocks."""
    with_blocks = [backbone for backbone in backbones if backbone.blocks]
    for backbone in with_blocks:
        if top > len(backbone.blocks):
            raise ValueError(
                f"{label}={top} but backbone {backbone.name!r} has only {len(backbone.blocks)} blocks: "
                f"{[block.path for block in backbone.blocks]}"
            )
    return [backbone.blocks[len(backbone.blocks) - top :] for backbone in with_blocks]


def _select_units(model, fn_name: str, *, layers=None, up_to=None, top=None, pattern=None) -> list[_Unit]:
    """The backbone units that ``unit="block"`` selects (every unit of every backbone if no selector)."""
    given = [
        label
        for label, value in (("layers", layers), ("up_to", up_to), ("top", top), ("pattern", pattern))
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(f"{fn_name}: give at most one block selector; got {given}")
    backbones = _block_backbones(model, fn_name)
    blocks = [block for backbone in backbones for block in backbone.blocks]
    if top is not None:
        return [block for group in _top_blocks(backbones, top, f"{fn_name}: top") for block in group]
    if layers is not None:
        names = [layers] if isinstance(layers, (str, keras.layers.Layer)) else list(layers)
        chosen = {_find_block(name, blocks, model, fn_name).path for name in names}
        return [block for block in blocks if block.path in chosen]
    if up_to is not None:
        last = _find_block(up_to, blocks, model, fn_name)
        units = next(backbone.units for backbone in backbones if last in backbone.blocks)
        return list(units[: units.index(last) + 1])
    if pattern is not None:
        regex = re.compile(pattern)
        return [block for block in blocks if regex.search(block.path)]
    return [unit for backbone in backbones for unit in backbone.units]


def _apply_to_units(model, units: list[_Unit], trainable: bool, keep_batchnorm_frozen: bool) -> list[str]:
    """Sets every layer of ``units`` to ``trainable``; returns the paths of units that changed."""
    before = {id(weight) for weight in model.trainable_weights}
    wanted = {id(layer): trainable for unit in units for layer in unit.layers}
    if trainable and keep_batchnorm_frozen:
        for unit in units:
            for layer in unit.layers:
                for inner in layer._flatten_layers(include_self=True):
                    if _is_batchnorm(inner):
                        wanted[id(inner)] = inner.trainable
    _set_flags(model, wanted)
    flipped = before ^ {id(weight) for weight in model.trainable_weights}
    return [unit.path for unit in units if any(id(weight) in flipped for weight in unit.weights)]


def freeze(model, layers=None, *, up_to=None, pattern=None, unit: str = "layer", recompile: bool = False) -> list[str]:
    """Make layers non-trainable (BatchNorm layers then run in inference mode).

    Give at most one selector (``layers``, ``up_to`` or ``pattern``); with none, every
    layer of the model is frozen (with ``unit="block"``: every layer of its backbones).
    Only the selected layers' own flags are set; enclosing sub-models stay as they are.

    With ``unit="block"`` the selectors name the blocks of the model's keras-hub
    backbones (see :func:`backbone_blocks`) and only layers inside those backbones
    change; whatever follows a backbone (pooling, projection, head) stays as it was::

        freeze(model, unit="block")                               # every backbone, whole
        freeze(model, ["transformer_layer_0"], unit="block")      # one block
        freeze(model, up_to="transformer_layer_1", unit="block")  # embeddings + blocks 0-1

    Args:
        model: a built ``keras.Model``; changed in place.
        layers: names/paths or layer objects (one or a list). A sub-model freezes all its
            layers; a layer inside a sub-model freezes just that layer. With
            ``unit="block"``: block paths or names (one or a list).
        up_to: a name; every weight-owning layer up to and including it, in walk order
            (``model.layers`` order with sub-models opened recursively in place, so
            naming a sub-model freezes through its last layer). With ``unit="block"``: a
            block; its backbone from the input (embeddings included) through that block.
        pattern: a regex, ``re.search``-ed against each layer's path and name; a
            matching sub-model freezes all its layers. With ``unit="block"``: searched
            against the block paths.
        unit: ``"layer"`` (the default) or ``"block"``, what the selectors count and name.
        recompile: the flags only take effect in ``fit`` after compiling again. If the
            model is compiled and something changed: with ``False`` (default) a
            ``UserWarning`` asks you to call ``model.compile(...)``; with ``True`` the
            model is recompiled from ``model.get_compile_config()``, which builds a
            *fresh* optimizer (its state, e.g. Adam moments, is lost).

    Returns:
        The paths of weight-owning layers that went from trainable to frozen; with
        ``unit="block"``, the paths of the blocks (and of the backbones' other layers
        with weights) that did.

    Raises:
        TypeError: ``model`` is not a keras.Model.
        ValueError: unbuilt model, an unknown or ambiguous name (close names are
            suggested), more than one selector, an unknown ``unit``, or
            ``unit="block"`` on a model without recognised backbone blocks.
    """
    _check_model(model, "model")
    _check_built(model, "model")
    check_choice(unit, "freeze: unit", _UNITS)
    if unit == "block":
        units = _select_units(model, "freeze", layers=layers, up_to=up_to, pattern=pattern)
        changed = _apply_to_units(model, units, False, keep_batchnorm_frozen=False)
    else:
        nodes = _walk(model)
        selected = _select(model, nodes, layers, up_to, pattern, "freeze")
        changed = _apply_trainable(model, nodes, {id(n.layer): False for n in selected})
    _after_trainable_change(model, changed, recompile, "freeze")
    return changed


def unfreeze(
    model,
    layers=None,
    *,
    top=None,
    pattern=None,
    unit: str = "layer",
    keep_batchnorm_frozen: bool = True,
    recompile: bool = False,
) -> list[str]:
    """Make layers trainable again; with none selected, the whole model.

    Give at most one selector (``layers``, ``top`` or ``pattern``). Unfreezing a layer
    inside a frozen sub-model also makes the enclosing sub-model(s) and the model
    trainable, while their other layers keep their own flags (stay frozen if they were).

    With ``unit="block"`` the selectors name or count the blocks of the model's
    keras-hub backbones (see :func:`backbone_blocks`), no selector means every layer of
    the backbones, and only layers inside the backbones change: ``top=k`` unfreezes
    every layer of the last k blocks of each backbone and nothing else -- neither the
    backbone's layers above them (a final norm, a pooler) nor what follows the backbone
    (pooling, projection, head), which keep their flags::

        freeze(model, unit="block")           # the backbone, whole
        unfreeze(model, top=2, unit="block")  # ... but its last two blocks

    Args:
        model: a built ``keras.Model``; changed in place.
        layers: as in :func:`freeze`.
        top: N, the last N weight-owning layers in walk order (BatchNorm layers are not
            counted when ``keep_batchnorm_frozen``; N larger than the count means all).
            With ``unit="block"``: the last N blocks of each backbone (N larger than a
            backbone's number of blocks is an error).
        pattern: as in :func:`freeze`.
        unit: ``"layer"`` (the default) or ``"block"``, as in :func:`freeze`.
        keep_batchnorm_frozen: BatchNormalization layers in the selection keep their
            current flag (a frozen one stays frozen, i.e. in inference mode with its
            moving statistics fixed) -- the standard advice when fine-tuning. Pass
            ``False`` to unfreeze them too.
        recompile: as in :func:`freeze`.

    Returns:
        The paths of weight-owning layers that went from frozen to trainable; with
        ``unit="block"``, the paths of the blocks (and of the backbones' other layers
        with weights) that did.

    Raises:
        TypeError: ``model`` is not a keras.Model, or ``top`` is not an int.
        ValueError: unbuilt model, an unknown or ambiguous name, more than one selector,
            a negative ``top``, an unknown ``unit``, or with ``unit="block"`` a model
            without recognised backbone blocks or a ``top`` above a backbone's blocks.
    """
    _check_model(model, "model")
    _check_built(model, "model")
    check_choice(unit, "unfreeze: unit", _UNITS)
    if top is not None:
        if pattern is not None or layers is not None:
            raise ValueError("unfreeze: give at most one of layers=, top=, pattern=")
        check_int(top, "unfreeze: top", minimum=0)
    if unit == "block":
        units = _select_units(model, "unfreeze", layers=layers, top=top, pattern=pattern)
        changed = _apply_to_units(model, units, True, keep_batchnorm_frozen)
        _after_trainable_change(model, changed, recompile, "unfreeze")
        return changed
    nodes = _walk(model)
    if top is not None:
        candidates = [n for n in _weighted_leaves(nodes) if not (keep_batchnorm_frozen and _is_batchnorm(n.layer))]
        selected = candidates[len(candidates) - int(top) :] if top else []
    else:
        selected = _select(model, nodes, layers, None, pattern, "unfreeze")
    if keep_batchnorm_frozen:
        selected = [n for n in selected if not _is_batchnorm(n.layer)]
    changed = _apply_trainable(model, nodes, {id(n.layer): True for n in selected})
    _after_trainable_change(model, changed, recompile, "unfreeze")
    return changed


# ---------------------------------------------------------------- head replacement


def replace_head(model, num_classes=None, *, head=None, activation="softmax", name=None) -> keras.Model:
    """A new model: ``model`` without its output layer, with a new head on top.

    The output layer (the layer that produces the single output) is dropped and
    ``Dense(num_classes, activation)`` -- or the given ``head`` layer or model -- is
    applied to that layer's input. The body is not copied: the new model *shares* the
    body's layer objects (and so its weights) with ``model``, as in the usual Keras
    transfer-learning idiom; training one changes the other. Use
    ``keras.models.clone_model`` + :func:`transfer_weights` first for an independent copy.

    Args:
        model: a functional or Sequential model (Sequential stays Sequential; an
            unbuilt Sequential gives an unbuilt one).
        num_classes: units of the new Dense head (an int >= 1). Exactly one of
            ``num_classes`` and ``head`` must be given.
        head: a layer or model to use as the head instead.
        activation: the new Dense head's activation (ignored with ``head``).
        name: name of the returned model (default: ``model.name``). A new Dense head
            is named ``"head"`` unless the body already uses that name.

    Returns:
        The new ``keras.Model`` (a ``keras.Sequential`` for a Sequential ``model``).

    Raises:
        TypeError: ``model`` is not functional/Sequential, or ``head`` is not a layer.
        ValueError: both or neither of ``num_classes``/``head``, ``num_classes`` < 1,
            a model with several outputs, or an output layer with several inputs.
    """
    _check_model(model, "model")
    if (num_classes is None) == (head is None):
        raise ValueError("replace_head: give exactly one of num_classes= (a new Dense head) or head= (your own layer)")
    if head is None:
        check_positive_int(num_classes, "replace_head: num_classes")
    elif not isinstance(head, keras.layers.Layer):
        raise TypeError(
            f"replace_head: head must be a keras layer or model; got {type(head).__name__}: {_short_repr(head)}"
        )
    new_name = name or model.name

    if isinstance(model, keras.Sequential):
        if not model.layers:
            raise ValueError(f"replace_head: Sequential model {model.name!r} has no layers")
        body = list(model.layers[:-1])
        head = head or _new_dense_head(num_classes, activation, {layer.name for layer in body})
        start = []
        if model.built and getattr(model, "inputs", None):
            inputs = model.inputs[0]
            start = [keras.Input(batch_shape=tuple(inputs.shape), dtype=inputs.dtype)]
        return keras.Sequential([*start, *body, head], name=new_name)

    outputs = getattr(model, "outputs", None)
    if not outputs:
        raise TypeError(
            f"replace_head needs a functional or Sequential model; "
            f"{type(model).__name__} {model.name!r} is subclassed (no graph to cut)."
            " Build the new model yourself from its body"
        )
    if len(outputs) != 1:
        raise ValueError(
            f"replace_head: model {model.name!r} has {len(outputs)} outputs; it "
            "can only cut a single-output model (build the new model from the "
            "tensors you want with keras.Model(model.inputs, ...))"
        )
    output_layer, node_index, _ = outputs[0]._keras_history
    if isinstance(output_layer, keras.layers.InputLayer):
        raise ValueError(f"replace_head: model {model.name!r} has no output layer to remove")
    inbound = output_layer._inbound_nodes[node_index].input_tensors
    if len(inbound) != 1:
        raise ValueError(
            f"replace_head: output layer {output_layer.name!r} takes "
            f"{len(inbound)} inputs, so there is no single body output to put "
            "the new head on"
        )
    body_names = {layer.name for layer in model.layers if layer is not output_layer}
    if head is None:
        head = _new_dense_head(num_classes, activation, body_names)
    elif head.name in body_names:
        raise ValueError(
            f"replace_head: the head's name {head.name!r} is already used by a body layer; give the head another name"
        )
    return keras.Model(model.input, head(inbound[0]), name=new_name)


def _new_dense_head(num_classes, activation, taken_names):
    name = "head" if "head" not in taken_names else None
    return keras.layers.Dense(int(num_classes), activation=activation, name=name)


# ---------------------------------------------------------------- fine-tuning recipe


@dataclasses.dataclass
class FineTuneResult:
    """The two ``keras.callbacks.History`` objects of :func:`fine_tune`.

    Unpacks as a pair: ``head_history, fine_tune_history = fine_tune(...)``.

    Attributes:
        head_history: the History of stage 1 (the head alone).
        fine_tune_history: the History of stage 2 (head and top of the body).
    """

    head_history: Any
    fine_tune_history: Any

    def __iter__(self):
        return iter((self.head_history, self.fine_tune_history))


def _fit_inputs(data, batch_size, role):
    """Keyword arguments for ``fit`` from a Dataset/PyDataset or an (x, y) pair."""
    import tensorflow as tf

    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{role} as a tuple must be (x, y); got {len(data)} items")
        return {"x": data[0], "y": data[1], "batch_size": batch_size}
    if isinstance(data, (tf.data.Dataset, keras.utils.PyDataset)):
        return {"x": data, "shuffle": False}  # a dataset is shuffled (or not) by its maker
    raise TypeError(
        f"{role} must be a tf.data.Dataset (or keras PyDataset) or an (x, y) tuple; got {type(data).__name__}"
    )


@keras.saving.register_keras_serializable(package="xmodal_tf", name="ScaledRateAdam")
class _ScaledRateAdam(keras.optimizers.Adam):
    """Adam that steps some variables at ``rate_scale`` times the learning rate.

    Keras 3 optimizers have a single learning rate; scaling the rate handed to each
    variable's update (rather than its gradient, which Adam would normalise away) gives
    :func:`fine_tune`'s backbone its own rate, schedules included, in ``model.fit`` and
    on a distribution strategy alike.

    Args:
        learning_rate: the rate of the other variables, as for ``Adam``.
        rate_scale: the scaled variables' rate over ``learning_rate``.
        scaled_variables: the variables to scale (matched by identity when built).
        scaled_indices: instead, their positions in the list the optimizer is built on
            (what ``get_config`` saves, so that a reloaded model trains the same way).
        built_on: with ``scaled_indices``, the length of that list; a build on a list of
            another length warns and scales nothing, as the positions no longer apply.
        **kwargs: the other ``Adam`` arguments.
    """

    def __init__(
        self,
        learning_rate=0.001,
        *,
        rate_scale=1.0,
        scaled_variables=None,
        scaled_indices=None,
        built_on=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "scaled_rate_adam")  # (the default, from the class name, is no valid scope)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rate_scale = float(rate_scale)
        self._scaled_ids = None if scaled_variables is None else {id(v) for v in scaled_variables}
        self.scaled_indices = None if scaled_indices is None else [int(i) for i in scaled_indices]
        self.built_on = None if built_on is None else int(built_on)

    def build(self, var_list):
        super().build(var_list)
        if self._scaled_ids is not None:
            self.scaled_indices = [i for i, variable in enumerate(var_list) if id(variable) in self._scaled_ids]
            self.built_on = len(var_list)
        elif self.built_on is not None and self.built_on != len(var_list):
            warnings.warn(
                f"optimizer {self.name!r} was saved for {self.built_on} trainable variables and is built on "
                f"{len(var_list)}, so it cannot tell the backbone's apart: all train at the learning rate. "
                "Set the trainable flags as when saved, or compile again",
                UserWarning,
                stacklevel=2,
            )
            self.scaled_indices = []
        self._scaled = frozenset(self.scaled_indices or ())

    def update_step(self, gradient, variable, learning_rate):
        if self._get_variable_index(variable) in self._scaled:
            learning_rate = learning_rate * self.rate_scale
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(rate_scale=self.rate_scale, scaled_indices=self.scaled_indices, built_on=self.built_on)
        return config


def fine_tune(
    model,
    train_data,
    val_data=None,
    *,
    head_layers: int = 1,
    unfreeze_top: int = 2,
    unfreeze_unit: str = "layer",
    head_epochs: int = 5,
    fine_tune_epochs: int = 5,
    head_learning_rate: float = 1e-3,
    fine_tune_learning_rate: float = 1e-4,
    backbone_learning_rate: float | None = None,
    loss="sparse_categorical_crossentropy",
    metrics=("accuracy",),
    callbacks=None,
    batch_size: int = 32,
    verbose=0,
    strategy=None,
) -> FineTuneResult:
    """The two-stage transfer-learning recipe, in place on ``model``.

    1. Freeze everything except the last ``head_layers`` weight-owning layers (the
       head, BatchNorm included, trains fully); compile with
       ``Adam(head_learning_rate)`` and fit ``head_epochs`` epochs.
    2. Also unfreeze the top ``unfreeze_top`` body layers (BatchNorm layers are not
       counted and stay frozen, in inference mode); recompile with
       ``Adam(fine_tune_learning_rate)`` and fit ``fine_tune_epochs`` more epochs,
       numbered on from stage 1 (``initial_epoch=head_epochs``).

    With ``unfreeze_unit="block"``, stage 2 counts blocks of the model's keras-hub
    backbones instead (see :func:`backbone_blocks`): the last ``unfreeze_top`` blocks of
    each backbone join in, with the backbone's layers above them (its final norm or
    pooler), so that the top of every backbone trains. Layers between a backbone and the
    head (pooling, projection) stay frozen unless counted in ``head_layers``.

    Args:
        model: a built model, e.g. from :func:`replace_head`. Its previous compile
            settings are replaced; on return it is compiled for stage 2.
        train_data: a ``tf.data.Dataset`` (or keras ``PyDataset``) yielding batches, or
            an ``(x, y)`` tuple of arrays batched with ``batch_size``.
        val_data: optional validation data, in the same forms as ``train_data``.
        head_layers: how many of the last weight-owning layers form the head (>= 1).
        unfreeze_top: how many body layers (BatchNorm not counted), or with
            ``unfreeze_unit="block"`` how many blocks of each backbone, join in stage 2.
        unfreeze_unit: ``"layer"`` (the default) or ``"block"``, what ``unfreeze_top``
            counts.
        head_epochs: the epochs of stage 1.
        fine_tune_epochs: the epochs of stage 2.
        head_learning_rate: Adam's learning rate in stage 1.
        fine_tune_learning_rate: Adam's learning rate in stage 2.
        backbone_learning_rate: None (the default: one rate for everything), or the rate
            at which the variables inside the model's keras-hub backbones train in stage
            2 while the rest (the head, layers after the backbone) train at
            ``fine_tune_learning_rate``. Both must then be numbers; one Adam steps each
            backbone variable at ``backbone_learning_rate / fine_tune_learning_rate``
            times its rate, and is what the model stays compiled with (it saves and
            loads with the model).
        loss: passed to ``compile``.
        metrics: passed to ``compile``.
        callbacks: passed to both ``fit`` calls.
        batch_size: the batch size of ``(x, y)`` data.
        verbose: ``fit``'s verbosity.
        strategy: None (the default) trains with ``model.fit``. A
            ``tf.distribute.Strategy`` trains both stages with
            ``xmodal_tf.training.Trainer`` on it instead: build the model inside
            ``strategy.scope()`` (the optimizers are created there). The data must then
            be a ``tf.data.Dataset`` of global batches or an ``(x, y)`` tuple, batched
            with ``batch_size`` as the global batch and shuffled every epoch; with several
            replicas ``batch_size`` must divide by their number and an epoch's last
            partial batch is dropped. ``callbacks`` get the epoch-level hooks only, and
            ``verbose`` > 0 prints one line per epoch.

    Returns:
        :class:`FineTuneResult` (``head_history``, ``fine_tune_history``); with a
        ``strategy`` too, ``keras.callbacks.History`` objects (``.epoch``, ``.history``).

    Raises:
        TypeError: ``model`` is not a keras.Model, a count that is not an int, data of a
            wrong type, a ``strategy`` that is not a ``tf.distribute.Strategy``, or a
            learning rate that is not a number where ``backbone_learning_rate`` needs one.
        ValueError: an unbuilt model, a count below its minimum, more head layers than
            the model has, an ``(x, y)`` tuple of another length, an unknown
            ``unfreeze_unit``, or -- for ``unfreeze_unit="block"`` or a
            ``backbone_learning_rate`` -- a model without (recognised blocks in) a
            keras-hub backbone, or ``unfreeze_top`` above a backbone's number of blocks.
    """
    _check_model(model, "model")
    _check_built(model, "model")
    for value, label, minimum in (
        (head_layers, "head_layers", 1),
        (unfreeze_top, "unfreeze_top", 0),
        (head_epochs, "head_epochs", 0),
        (fine_tune_epochs, "fine_tune_epochs", 0),
        (batch_size, "batch_size", 1),
    ):
        check_int(value, f"fine_tune: {label}", minimum=minimum)
    check_choice(unfreeze_unit, "fine_tune: unfreeze_unit", _UNITS)
    nodes = _walk(model)
    leaves = _weighted_leaves(nodes)
    if head_layers > len(leaves):
        raise ValueError(
            f"fine_tune: head_layers={head_layers} but the model has only {len(leaves)} layers with weights"
        )
    head, body = leaves[-head_layers:], leaves[:-head_layers]
    # Checked before stage 1, so that a mistake does not cost its epochs.
    top_units = _backbone_tops(model, unfreeze_top) if unfreeze_unit == "block" else None
    stage_two_optimizer = _stage_two_optimizer(model, fine_tune_learning_rate, backbone_learning_rate)
    metrics = list(metrics) if metrics is not None else None
    callbacks = list(callbacks) if callbacks else None
    if strategy is None:
        fit_kwargs = _fit_inputs(train_data, batch_size, "train_data")
        if val_data is not None:
            validation = _fit_inputs(val_data, batch_size, "val_data")
            fit_kwargs["validation_data"] = (
                validation["x"] if "y" not in validation else (validation["x"], validation["y"])
            )

        def train(make_optimizer, initial_epoch, epochs):
            model.compile(optimizer=make_optimizer(), loss=loss, metrics=metrics)
            return model.fit(
                initial_epoch=initial_epoch, epochs=epochs, callbacks=callbacks, verbose=verbose, **fit_kwargs
            )
    else:
        train = _trainer_stages(model, strategy, train_data, val_data, batch_size, loss, metrics, callbacks, verbose)

    # Stage 1: only the head learns.
    head_ids = {id(n.layer) for n in head}
    _apply_trainable(model, nodes, {id(n.layer): id(n.layer) in head_ids for n in leaves})
    head_history = train(lambda: keras.optimizers.Adam(head_learning_rate), 0, head_epochs)

    # Stage 2: the top of the body joins in, BatchNorm kept in inference mode.
    if top_units is None:
        body_candidates = [n for n in body if not _is_batchnorm(n.layer)]
        chosen = body_candidates[len(body_candidates) - unfreeze_top :] if unfreeze_top else []
        _apply_trainable(model, nodes, {id(n.layer): True for n in chosen})
    else:
        _apply_to_units(model, top_units, True, keep_batchnorm_frozen=True)
    fine_tune_history = train(stage_two_optimizer, head_epochs, head_epochs + fine_tune_epochs)
    return FineTuneResult(head_history, fine_tune_history)


def _backbone_tops(model, top: int) -> list[_Unit]:
    """The last ``top`` blocks of each backbone and the backbone's units above them."""
    backbones = _block_backbones(model, "fine_tune")
    units = []
    for backbone, blocks in zip(
        [b for b in backbones if b.blocks], _top_blocks(backbones, top, "fine_tune: unfreeze_top")
    ):
        if blocks:
            units += backbone.units[backbone.units.index(blocks[0]) :]
    return units


def _stage_two_optimizer(model, learning_rate, backbone_learning_rate):
    """``() -> optimizer`` for stage 2 of :func:`fine_tune` (called where it must be built)."""
    if backbone_learning_rate is None:
        return lambda: keras.optimizers.Adam(learning_rate)
    backbone_rate = check_number(
        backbone_learning_rate, "fine_tune: backbone_learning_rate", minimum=0, exclusive_minimum=True
    )
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
        raise TypeError(
            "fine_tune: backbone_learning_rate is set as a fraction of fine_tune_learning_rate, which must then "
            f"be a number; got {type(learning_rate).__name__}: {_short_repr(learning_rate)}"
        )
    rate = check_number(learning_rate, "fine_tune: fine_tune_learning_rate", minimum=0, exclusive_minimum=True)
    backbones = _backbones(model)
    if not backbones:
        raise ValueError(
            f"fine_tune: backbone_learning_rate needs a keras-hub backbone (keras_hub.models.Backbone) in model "
            f"{model.name!r}, and it has none; leave it None to train everything at fine_tune_learning_rate"
        )
    backbone_ids = {id(weight) for backbone in backbones for weight in backbone.layer.weights}

    def make_optimizer():
        scaled = [variable for variable in model.trainable_variables if id(variable) in backbone_ids]
        return _ScaledRateAdam(rate, rate_scale=backbone_rate / rate, scaled_variables=scaled)

    return make_optimizer


def _trainer_stages(model, strategy, train_data, val_data, batch_size, loss, metrics, callbacks, verbose):
    """``train(make_optimizer, initial_epoch, epochs) -> History`` for :func:`fine_tune`
    with a strategy: compile under it, train with ``xmodal_tf.training.Trainer``."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(
            f"fine_tune: strategy must be a tf.distribute.Strategy or None; got "
            f"{type(strategy).__name__}: {_short_repr(strategy)}"
        )
    replicas = int(strategy.num_replicas_in_sync)  # (the Trainer refuses a batch_size they do not divide)
    train_dataset = _trainer_dataset(train_data, batch_size, replicas, "train_data", shuffle=True)
    validation = (
        None if val_data is None else _trainer_dataset(val_data, batch_size, replicas, "val_data", shuffle=False)
    )

    def train(make_optimizer, initial_epoch, epochs):
        from xmodal_tf.training import Trainer

        with strategy.scope():
            model.compile(optimizer=make_optimizer(), loss=loss, metrics=metrics)
        trainer = Trainer(model, None, strategy=strategy, progress=bool(verbose))
        logs = trainer.fit(
            train_dataset, epochs, validation_data=validation, initial_epoch=initial_epoch, callbacks=callbacks
        )
        history = keras.callbacks.History()
        history.set_model(model)
        history.epoch = list(logs.pop("epoch"))
        history.history = {key: values for key, values in logs.items() if key not in ("steps", "seconds")}
        history.params = {"epochs": epochs, "verbose": verbose}
        return history

    return train


def _trainer_dataset(data, batch_size, replicas, role, shuffle):
    """A ``tf.data.Dataset`` of global batches for the Trainer (fine_tune with a strategy)."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{role} as a tuple must be (x, y); got {len(data)} items")
        from xmodal_tf.data import make_dataset

        return make_dataset(data[0], data[1], batch_size=batch_size, shuffle=shuffle, drop_remainder=replicas > 1)
    raise TypeError(
        f"{role} must be a tf.data.Dataset or an (x, y) tuple when fine_tune trains on a "
        f"strategy; got {type(data).__name__}"
    )

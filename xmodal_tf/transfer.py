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

Design notes (the gaps in Keras 3 this fills): docs/DESIGN.md (section xmodal_tf/transfer.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import warnings
from collections import defaultdict
from typing import Any, NamedTuple

import keras

from xmodal_tf._validation import check_int, check_positive_int

__all__ = [
    "FineTuneResult",
    "ShapeMismatch",
    "TransferReport",
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
    """Sets leaf flags to ``wanted`` (id -> bool); returns paths whose state changed.

    Keras' ``trainable`` setter is recursive and a frozen sub-model hides all of its
    layers, so unfreezing a leaf makes its enclosing sub-models (and the model)
    trainable again and then restores every other layer's own flag.
    """
    leaves = _weighted_leaves(nodes)
    before_effective = {id(n.layer): _effectively_trainable(n, model) for n in leaves}
    own_flags = {id(model): model.trainable}
    own_flags.update({id(n.layer): n.layer.trainable for n in nodes})
    target_flags = dict(own_flags)
    for node in leaves:
        if id(node.layer) in wanted:
            target_flags[id(node.layer)] = wanted[id(node.layer)]
            if wanted[id(node.layer)]:
                for ancestor in (model, *node.ancestors):
                    target_flags[id(ancestor)] = True
    ordered = [model, *(n.layer for n in nodes)]  # pre-order: parents before children
    # A shared sub-model can be reset by a parent visited after it; a few passes settle.
    for _ in range(len(ordered) + 1):
        changed = False
        for layer in ordered:
            if layer.trainable != target_flags[id(layer)]:
                layer.trainable = target_flags[id(layer)]
                changed = True
        if not changed:
            break
    return [n.path for n in leaves if _effectively_trainable(n, model) != before_effective[id(n.layer)]]


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


def freeze(model, layers=None, *, up_to=None, pattern=None, recompile: bool = False) -> list[str]:
    """Make layers non-trainable (BatchNorm layers then run in inference mode).

    Give at most one selector (``layers``, ``up_to`` or ``pattern``); with none, every
    layer of the model is frozen. Only the leaf layers' own flags are set; enclosing
    sub-models stay as they are.

    Args:
        model: a built ``keras.Model``; changed in place.
        layers: names/paths or layer objects (one or a list). A sub-model freezes all its
            layers; a layer inside a sub-model freezes just that layer.
        up_to: a name; every weight-owning layer up to and including it, in walk order
            (``model.layers`` order with sub-models opened recursively in place, so
            naming a sub-model freezes through its last layer).
        pattern: a regex, ``re.search``-ed against each layer's path and name; a
            matching sub-model freezes all its layers.
        recompile: the flags only take effect in ``fit`` after compiling again. If the
            model is compiled and something changed: with ``False`` (default) a
            ``UserWarning`` asks you to call ``model.compile(...)``; with ``True`` the
            model is recompiled from ``model.get_compile_config()``, which builds a
            *fresh* optimizer (its state, e.g. Adam moments, is lost).

    Returns:
        The paths of weight-owning layers that went from trainable to frozen.

    Raises:
        TypeError: ``model`` is not a keras.Model.
        ValueError: unbuilt model, an unknown or ambiguous name (close names are
            suggested), or more than one selector.
    """
    _check_model(model, "model")
    _check_built(model, "model")
    nodes = _walk(model)
    selected = _select(model, nodes, layers, up_to, pattern, "freeze")
    changed = _apply_trainable(model, nodes, {id(n.layer): False for n in selected})
    _after_trainable_change(model, changed, recompile, "freeze")
    return changed


def unfreeze(
    model, layers=None, *, top=None, pattern=None, keep_batchnorm_frozen: bool = True, recompile: bool = False
) -> list[str]:
    """Make layers trainable again; with none selected, the whole model.

    Give at most one selector (``layers``, ``top`` or ``pattern``). Unfreezing a layer
    inside a frozen sub-model also makes the enclosing sub-model(s) and the model
    trainable, while their other layers keep their own flags (stay frozen if they were).

    Args:
        model: a built ``keras.Model``; changed in place.
        layers: as in :func:`freeze`.
        top: N, the last N weight-owning layers in walk order (BatchNorm layers are not
            counted when ``keep_batchnorm_frozen``; N larger than the count means all).
        pattern: as in :func:`freeze`.
        keep_batchnorm_frozen: BatchNormalization layers in the selection keep their
            current flag (a frozen one stays frozen, i.e. in inference mode with its
            moving statistics fixed) -- the standard advice when fine-tuning. Pass
            ``False`` to unfreeze them too.
        recompile: as in :func:`freeze`.

    Returns:
        The paths of weight-owning layers that went from frozen to trainable.

    Raises:
        TypeError: ``model`` is not a keras.Model, or ``top`` is not an int.
        ValueError: unbuilt model, an unknown or ambiguous name, more than one selector,
            or a negative ``top``.
    """
    _check_model(model, "model")
    _check_built(model, "model")
    nodes = _walk(model)
    if top is not None:
        if pattern is not None or layers is not None:
            raise ValueError("unfreeze: give at most one of layers=, top=, pattern=")
        check_int(top, "unfreeze: top", minimum=0)
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


def fine_tune(
    model,
    train_data,
    val_data=None,
    *,
    head_layers: int = 1,
    unfreeze_top: int = 2,
    head_epochs: int = 5,
    fine_tune_epochs: int = 5,
    head_learning_rate: float = 1e-3,
    fine_tune_learning_rate: float = 1e-4,
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

    Args:
        model: a built model, e.g. from :func:`replace_head`. Its previous compile
            settings are replaced; on return it is compiled for stage 2.
        train_data: a ``tf.data.Dataset`` (or keras ``PyDataset``) yielding batches, or
            an ``(x, y)`` tuple of arrays batched with ``batch_size``.
        val_data: optional validation data, in the same forms as ``train_data``.
        head_layers: how many of the last weight-owning layers form the head (>= 1).
        unfreeze_top: how many body layers (BatchNorm not counted) join in stage 2.
        head_epochs: the epochs of stage 1.
        fine_tune_epochs: the epochs of stage 2.
        head_learning_rate: Adam's learning rate in stage 1.
        fine_tune_learning_rate: Adam's learning rate in stage 2.
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
            wrong type, or a ``strategy`` that is not a ``tf.distribute.Strategy``.
        ValueError: an unbuilt model, a count below its minimum, more head layers than
            the model has, or an ``(x, y)`` tuple of another length.
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
    nodes = _walk(model)
    leaves = _weighted_leaves(nodes)
    if head_layers > len(leaves):
        raise ValueError(
            f"fine_tune: head_layers={head_layers} but the model has only {len(leaves)} layers with weights"
        )
    head, body = leaves[-head_layers:], leaves[:-head_layers]
    metrics = list(metrics) if metrics is not None else None
    callbacks = list(callbacks) if callbacks else None
    if strategy is None:
        fit_kwargs = _fit_inputs(train_data, batch_size, "train_data")
        if val_data is not None:
            validation = _fit_inputs(val_data, batch_size, "val_data")
            fit_kwargs["validation_data"] = (
                validation["x"] if "y" not in validation else (validation["x"], validation["y"])
            )

        def train(learning_rate, initial_epoch, epochs):
            model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
            return model.fit(
                initial_epoch=initial_epoch, epochs=epochs, callbacks=callbacks, verbose=verbose, **fit_kwargs
            )
    else:
        train = _trainer_stages(model, strategy, train_data, val_data, batch_size, loss, metrics, callbacks, verbose)

    # Stage 1: only the head learns.
    head_ids = {id(n.layer) for n in head}
    _apply_trainable(model, nodes, {id(n.layer): id(n.layer) in head_ids for n in leaves})
    head_history = train(head_learning_rate, 0, head_epochs)

    # Stage 2: the top of the body joins in, BatchNorm kept in inference mode.
    body_candidates = [n for n in body if not _is_batchnorm(n.layer)]
    chosen = body_candidates[len(body_candidates) - unfreeze_top :] if unfreeze_top else []
    _apply_trainable(model, nodes, {id(n.layer): True for n in chosen})
    fine_tune_history = train(fine_tune_learning_rate, head_epochs, head_epochs + fine_tune_epochs)
    return FineTuneResult(head_history, fine_tune_history)


def _trainer_stages(model, strategy, train_data, val_data, batch_size, loss, metrics, callbacks, verbose):
    """``train(learning_rate, initial_epoch, epochs) -> History`` for :func:`fine_tune`
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

    def train(learning_rate, initial_epoch, epochs):
        from xmodal_tf.training import Trainer

        with strategy.scope():
            model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
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

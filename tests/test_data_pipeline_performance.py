"""The performance shape of the xmodal_tf.data pipelines (issue 14, "GPU-ready").

Structure is read from the serialized dataset graph (op types and their constant
arguments): every public pipeline ends in prefetch(AUTOTUNE), maps in parallel with
AUTOTUNE and a kept order, caches where its batches repeat (unshuffled), and caches
nothing after a random op. Values: what the pipelines yield is what slicing,
shuffling and batching the arrays themselves yields, and a cached pass repeats.
"""

import numpy as np
import pytest
import tensorflow as tf

from xmodal_tf.data import balanced_dataset, make_dataset, map_random_shifts, random_shift_pairs
from xmodal_tf.data.pipeline import in_memory_tensors

AUTOTUNE = -1
RANDOM_OPS = ("ShuffleDatasetV3", "ShuffleAndRepeatDatasetV2", "DirectedInterleaveDataset", "RandomDataset")


def graph_chain(dataset):
    """(chain, nodes): the dataset ops from the output back to the source, following
    each op's input dataset; nodes maps node names to GraphDef nodes."""
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    nodes = {node.name: node for node in graph.node}

    def inputs_of(node):
        return [nodes[name.lstrip("^").split(":")[0]] for name in node.input]

    output = next(node for node in graph.node if node.op == "_Retval")
    node, chain = inputs_of(output)[0], []
    while node is not None:
        chain.append(node)
        node = next((item for item in inputs_of(node) if "Dataset" in item.op), None)
    return chain, nodes


def constant(nodes, name):
    return tf.make_ndarray(nodes[name.split(":")[0]].attr["value"].tensor).item()


def op_types(dataset):
    return [node.op for node in graph_chain(dataset)[0]]


def first_random_index(ops):
    """Index of the op nearest the output that draws at random (len(ops) if none)."""
    return min((ops.index(op) for op in RANDOM_OPS if op in ops), default=len(ops))


def arrays(n=30):
    rows = np.arange(n, dtype=np.float64)
    return (np.stack([rows, -rows], axis=1), (10 * rows).astype(np.int64)[:, None]), rows.astype(np.int64)


def public_pipelines():
    (x1, x2), y = arrays()
    unbalanced = np.array([0] * 20 + [1] * 7 + [2] * 3)
    return {
        "make_dataset shuffled": make_dataset((x1, x2), y, batch_size=8, seed=0),
        "make_dataset shuffled, repeat": make_dataset((x1, x2), y, batch_size=8, seed=0, repeat=True),
        "make_dataset unshuffled": make_dataset((x1, x2), y, batch_size=8, shuffle=False),
        "make_dataset dict, unshuffled, repeat": make_dataset(
            {"a": x1, "b": x2}, batch_size=6, shuffle=False, repeat=True
        ),
        "make_dataset cache=False": make_dataset(x1, batch_size=8, shuffle=False, cache=False),
        "balanced_dataset": balanced_dataset({"a": x1, "b": x2}, unbalanced, batch_size=8, seed=0),
    }


@pytest.mark.parametrize("name", list(public_pipelines()))
def test_every_pipeline_ends_in_prefetch_autotune_after_a_parallel_ordered_map(name):
    chain, nodes = graph_chain(public_pipelines()[name])
    last = chain[0]
    assert last.op == "PrefetchDataset", [node.op for node in chain]
    assert constant(nodes, last.input[1]) == AUTOTUNE
    ours = chain[: first_random_index([node.op for node in chain])]  # not sample_from_datasets' own map
    maps = [node for node in ours if "Map" in node.op]
    assert maps and all(node.op == "ParallelMapDatasetV2" for node in maps), [node.op for node in chain]
    for node in maps:
        assert constant(nodes, node.input[-1]) == AUTOTUNE  # num_parallel_calls
        assert node.attr["deterministic"].s == b"true"  # the order under a seed is kept


@pytest.mark.parametrize("name", list(public_pipelines()))
def test_nothing_is_cached_after_a_random_op(name):
    ops = op_types(public_pipelines()[name])
    downstream_of_random = ops[: first_random_index(ops)] if set(ops) & set(RANDOM_OPS) else []
    assert "CacheDatasetV2" not in downstream_of_random, ops


def test_unshuffled_pipelines_cache_their_batches_unless_told_not_to():
    x = arrays()[0][0]
    assert "CacheDatasetV2" in op_types(make_dataset(x, batch_size=8, shuffle=False))
    assert "CacheDatasetV2" in op_types(make_dataset(x, batch_size=10, shuffle=False, repeat=True))
    assert "CacheDatasetV2" not in op_types(make_dataset(x, batch_size=8, shuffle=False, cache=False))


def test_batches_that_straddle_epochs_are_not_cached_and_still_straddle():
    x = np.arange(10)
    dataset = make_dataset(x, batch_size=4, shuffle=False, repeat=True)
    assert "CacheDatasetV2" not in op_types(dataset)  # 4 does not divide 10
    batches = [batch.numpy().tolist() for batch in dataset.take(4)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]


def test_a_second_pass_over_a_cached_pipeline_yields_the_same_elements():
    (x1, x2), y = arrays(25)
    cached = make_dataset({"a": x1, "b": x2}, y, batch_size=7, shuffle=False)
    uncached = make_dataset({"a": x1, "b": x2}, y, batch_size=7, shuffle=False, cache=False)

    def one_pass(dataset):
        return [[leaf.numpy() for leaf in tf.nest.flatten(batch)] for batch in dataset]

    first, second, reference = one_pass(cached), one_pass(cached), one_pass(uncached)
    assert [len(batch[-1]) for batch in first] == [7, 7, 7, 4]
    for batches in (second, reference):
        assert len(batches) == len(first)
        for got, want in zip(batches, first):
            for got_leaf, want_leaf in zip(got, want):
                np.testing.assert_array_equal(got_leaf, want_leaf)
    np.testing.assert_array_equal(np.concatenate([batch[-1] for batch in first]), y)


@pytest.mark.parametrize(
    "kwargs",
    [{"seed": 3}, {"seed": 3, "drop_remainder": True}, {"seed": 3, "repeat": True}, {"shuffle": False, "repeat": True}],
)
def test_elements_equal_slicing_shuffling_and_batching_the_arrays(kwargs):
    """The pipeline gathers shuffled indices; its order under a seed is the order of the
    plain from_tensor_slices -> shuffle -> (repeat) -> batch pipeline."""
    (x1, x2), y = arrays(23)
    ours = make_dataset((x1, x2), y, batch_size=5, **kwargs)
    reference = tf.data.Dataset.from_tensor_slices(((x1.astype(np.float32), x2), y))
    if kwargs.get("shuffle", True):
        reference = reference.shuffle(23, seed=kwargs["seed"], reshuffle_each_iteration=True)
    if kwargs.get("repeat"):
        reference = reference.repeat()
    reference = reference.batch(5, drop_remainder=kwargs.get("drop_remainder", False))
    assert ours.element_spec == reference.element_spec
    steps = 12 if kwargs.get("repeat") else None  # past two epochs of 23 / 5 batches
    for _ in range(2):  # a second pass: a reshuffled epoch in both
        got = list(ours.take(steps) if steps else ours)
        want = list(reference.take(steps) if steps else reference)
        assert len(got) == len(want)
        for got_batch, want_batch in zip(got, want):
            for got_leaf, want_leaf in zip(tf.nest.flatten(got_batch), tf.nest.flatten(want_batch)):
                np.testing.assert_array_equal(got_leaf.numpy(), want_leaf.numpy())
        if steps:
            break  # a second iterator of a repeated, seeded pipeline depends on read-ahead


def test_the_arrays_are_held_in_host_memory():
    tensors = in_memory_tensors({"a": np.zeros((3, 2)), "b": (np.ones(3),)})
    assert all("CPU" in tensor.device for tensor in tf.nest.flatten(tensors))


@pytest.mark.parametrize("flag", ["cache", "shuffle", "repeat", "drop_remainder"])
def test_flags_must_be_booleans(flag):
    with pytest.raises(TypeError, match=rf"{flag} must be True or False"):
        make_dataset(np.zeros((4, 2)), batch_size=2, **{flag: "yes"})


# ------------------------------------------------------------ random shifts in parallel

SHIFT_SHAPES = ((5, 3, 1), (5, 4, 1))


def shift_halves(n=40):
    images = np.random.default_rng(0).uniform(1, 2, size=(n, 5, 7)).astype(np.float32)
    return images[:, :, :3].reshape(n, -1), images[:, :, 3:].reshape(n, -1)


def test_map_random_shifts_gives_the_shifts_of_a_sequential_map_on_every_pass():
    left, right = shift_halves()
    plain = make_dataset((left, right), batch_size=8, seed=1)
    reference = plain.map(random_shift_pairs(SHIFT_SHAPES, 2, seed=5))
    ours = map_random_shifts(
        make_dataset((left, right), batch_size=8, seed=1), random_shift_pairs(SHIFT_SHAPES, 2, seed=5)
    )
    passes = {"ours": [], "reference": []}
    for _ in range(2):
        for name, dataset in (("ours", ours), ("reference", reference)):
            passes[name].append(np.concatenate([np.concatenate([a.numpy(), b.numpy()], axis=1) for a, b in dataset]))
    for got, want in zip(passes["ours"], passes["reference"]):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(passes["ours"][0], passes["ours"][1])  # new draws each pass
    unshifted = np.sort(np.concatenate([left, right], axis=1), axis=0)
    assert not np.array_equal(np.sort(passes["ours"][0], axis=0), unshifted)


def test_map_random_shifts_draws_sequentially_moves_pixels_in_parallel_and_prefetches():
    left, right = shift_halves()
    dataset = map_random_shifts(
        make_dataset((left, right), batch_size=8, shuffle=False), random_shift_pairs(SHIFT_SHAPES, 1, seed=0)
    )
    chain, nodes = graph_chain(dataset)
    assert [node.op for node in chain[:3]] == ["PrefetchDataset", "ParallelMapDatasetV2", "MapDataset"]
    assert constant(nodes, chain[0].input[1]) == AUTOTUNE
    assert constant(nodes, chain[1].input[-1]) == AUTOTUNE
    assert chain[1].attr["deterministic"].s == b"true"
    assert "CacheDatasetV2" in [node.op for node in chain[3:]]  # cached before the random map


def test_map_random_shifts_with_zero_shift_is_the_identity():
    left, right = shift_halves(8)
    dataset = map_random_shifts(
        make_dataset((left, right), batch_size=8, shuffle=False), random_shift_pairs(SHIFT_SHAPES, 0)
    )
    got_left, got_right = next(iter(dataset))
    np.testing.assert_array_equal(got_left.numpy(), left)
    np.testing.assert_array_equal(got_right.numpy(), right)


def test_map_random_shifts_bad_arguments_are_named():
    left, right = shift_halves(8)
    dataset = make_dataset((left, right), batch_size=4)
    with pytest.raises(TypeError, match="random_shift_pairs"):
        map_random_shifts(dataset, lambda a, b: (a, b))
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        map_random_shifts((left, right), random_shift_pairs(SHIFT_SHAPES, 1))

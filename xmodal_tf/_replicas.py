"""Replica-aware helpers for code that runs inside ``tf.distribute`` replicas.

Every function here is the identity (or the obvious single-device value) outside a
strategy or with one replica, so models call them unconditionally: ``num_replicas``,
``replica_id``, ``in_replica_context``, ``all_reduce_sum`` (a sum over replicas, with a
gradient), ``all_gather_rows`` (every replica's rows, in replica order), ``global_rows``
and ``draw_rows`` (random draws made for the global batch, each replica keeping its rows,
so that N replicas draw what one device draws on the same global batch).

All collectives must run outside ``tf.cond`` / ``tf.while_loop`` branches of the replica
function (``MirroredStrategy`` synchronises through ``merge_call``, which control flow
does not allow); callers compute statistics unconditionally and branch afterwards.

Design notes: docs/DESIGN.md (section xmodal_tf/_replicas.py).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = [
    "all_gather_rows",
    "all_reduce_sum",
    "draw_rows",
    "global_rows",
    "in_replica_context",
    "num_replicas",
    "replica_id",
]


def in_replica_context() -> bool:
    """True inside ``strategy.run`` of a strategy with more than one replica."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return False
    return tf.distribute.get_replica_context().num_replicas_in_sync > 1


def num_replicas() -> int:
    """The number of replicas in sync (1 outside a strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_id():
    """This replica's global index, an int32 scalar tensor (0 outside a replica context)."""
    if not in_replica_context():
        return tf.constant(0, tf.int32)
    return tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)


def all_reduce_sum(values):
    """``values`` summed over all replicas, with a gradient.

    The gradient of a summed statistic is summed back to every replica.

    Args:
        values: a tensor or a nested structure of tensors.

    Returns:
        The sums, in the structure of ``values`` (``values`` itself outside replicas).
    """
    if not in_replica_context():
        return values
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)


def all_gather_rows(tensor):
    """All replicas' rows of ``tensor``, in replica order.

    Args:
        tensor: this replica's rows (axis 0); replicas may have different numbers of rows.

    Returns:
        ``(gathered, offset)``: the rows of every replica concatenated along axis 0, and
        the int32 index of this replica's first row in ``gathered``. Outside replicas:
        ``(tensor, 0)``.
    """
    if not in_replica_context():
        return tensor, tf.constant(0, tf.int32)
    context = tf.distribute.get_replica_context()
    gathered = context.all_gather(tensor, axis=0)
    counts = context.all_gather(tf.reshape(tf.shape(tensor)[0], [1]), axis=0)
    offset = tf.reduce_sum(counts[: replica_id()])
    return gathered, offset


def global_rows(local_rows):
    """Where this replica's share lies in the global batch, for equal shares.

    Equal shares are what ``drop_remainder`` batches split over replicas give.

    Args:
        local_rows: this replica's number of rows, an int or an int32 scalar tensor.

    Returns:
        ``(offset, total)``, int32 scalars: this replica's first row in the global batch,
        and the global batch size. Outside replicas: ``(0, local_rows)``.
    """
    local_rows = tf.convert_to_tensor(local_rows, tf.int32)
    if not in_replica_context():
        return tf.constant(0, tf.int32), local_rows
    return replica_id() * local_rows, num_replicas() * local_rows


def draw_rows(draw, local_rows):
    """This replica's rows of a random draw made for the whole global batch.

    Inside replicas the draw is made for ``num_replicas() * local_rows`` rows and this
    replica keeps its own: replicas draw differently, and together they draw what one
    device draws for the global batch.

    Args:
        draw: ``draw(rows)`` returns a tensor with ``rows`` rows, from a seed that every
            replica shares (a ``keras.random.SeedGenerator`` on the model).
        local_rows: this replica's number of rows.

    Returns:
        A tensor of ``local_rows`` rows; ``draw(local_rows)`` outside replicas.
    """
    if not in_replica_context():
        return draw(local_rows)
    offset, total = global_rows(local_rows)
    return draw(total)[offset : offset + local_rows]

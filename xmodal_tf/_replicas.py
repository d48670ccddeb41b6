"""Replica-aware helpers for code that runs inside ``tf.distribute`` replicas.

Every function here is the identity (or the obvious single-device value) outside a
strategy or with one replica, so models call them unconditionally:

* ``num_replicas()``, ``replica_id()``: the replica count and this replica's global index
  (0 outside a replica context).
* ``all_reduce_sum(values)``: sums a nested structure of tensors over replicas, with a
  gradient (the gradient of a summed statistic is summed back to every replica).
* ``all_gather_rows(tensor)``: every replica's rows, in replica order, and the offset of
  this replica's rows in the result (rows may differ between replicas).
* ``global_rows(local_rows)``: where this replica's share lies in the global batch,
  assuming equal shares (what ``drop_remainder`` batches split over replicas give).
  Random draws use it: draw for the global batch from the shared seed and keep this
  replica's rows. Replicas then draw different values, and the draws equal a single
  device's on the same global batch.

All collectives must run outside ``tf.cond`` / ``tf.while_loop`` branches of the replica
function (``MirroredStrategy`` synchronises through ``merge_call``, which control flow
does not allow); callers compute statistics unconditionally and branch afterwards.
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
    """``values`` (a tensor or a nested structure of them) summed over all replicas."""
    if not in_replica_context():
        return values
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)


def all_gather_rows(tensor):
    """(gathered, offset): all replicas' rows of ``tensor`` along axis 0, in replica order,
    and the int32 index of this replica's first row in ``gathered``."""
    if not in_replica_context():
        return tensor, tf.constant(0, tf.int32)
    context = tf.distribute.get_replica_context()
    gathered = context.all_gather(tensor, axis=0)
    counts = context.all_gather(tf.reshape(tf.shape(tensor)[0], [1]), axis=0)
    offset = tf.reduce_sum(counts[: replica_id()])
    return gathered, offset


def global_rows(local_rows):
    """(offset, total): this replica's first row in the global batch and the global batch
    size, for equal shares. Outside replicas: (0, local_rows)."""
    local_rows = tf.convert_to_tensor(local_rows, tf.int32)
    if not in_replica_context():
        return tf.constant(0, tf.int32), local_rows
    return replica_id() * local_rows, num_replicas() * local_rows


def draw_rows(draw, local_rows):
    """This replica's rows of a random draw made for the whole global batch.

    ``draw(rows)`` must return a tensor with ``rows`` rows from a seed that every replica
    shares (a ``keras.random.SeedGenerator`` on the model). Outside replicas it is
    ``draw(local_rows)``. Inside, the draw is made for ``num_replicas() * local_rows``
    rows and this replica keeps its own: replicas draw differently, and together they
    draw what one device draws for the global batch.
    """
    if not in_replica_context():
        return draw(local_rows)
    offset, total = global_rows(local_rows)
    return draw(total)[offset : offset + local_rows]

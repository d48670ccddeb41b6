"""Random draws and batch statistics under a 2-replica MirroredStrategy equal one device's.

Two logical CPU devices must be configured before TensorFlow initialises, so every
check runs in ONE fresh interpreter (each start costs seconds) that prints a JSON
report on its last line; the test asserts on that report:

* ``ReplicaDropout``: the replicas' masks differ, and together they equal the same
  layer's mask on one device for the whole batch. Keras' own ``Dropout`` draws the same
  mask on both replicas, which is why ``ReplicaDropout`` exists.
* ``ModalityDropout``: the same two properties for its presence-mask draws.
* ``mlp_encoder(batch_norm=True, sync_batch_norm=True, dropout=...)`` in training mode:
  2 replicas equal one device on the global batch; without ``sync_batch_norm`` each
  replica normalises with its own statistics and the outputs differ.
"""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from xmodal_tf.encoders import mlp_encoder
    from xmodal_tf.layers import ModalityDropout, ReplicaDropout

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}


    def per_replica(value):
        # Equal shares of the rows, in replica order (what a drop_remainder batch gives).
        rows = value.shape[0] // strategy.num_replicas_in_sync
        return strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(value[context.replica_id_in_sync_group * rows:
                                              (context.replica_id_in_sync_group + 1) * rows]))


    def replicated_call(layer, value):
        # Each replica's training-mode output on its share of value, as NumPy arrays.
        step = tf.function(lambda batch: strategy.run(lambda rows: layer(rows, training=True), args=(batch,)))
        return [np.asarray(part) for part in strategy.experimental_local_results(step(per_replica(value)))]


    def report(prefix, halves, single):
        result[prefix + "_halves_equal"] = bool(np.array_equal(halves[0], halves[1]))
        result[prefix + "_vs_single"] = float(np.max(np.abs(np.concatenate(halves) - single)))
        result[prefix + "_dropped_fraction"] = float(np.mean(single == 0))


    ones = np.ones((8, 6), "float32")
    mask = np.ones((16, 2), "float32")
    with strategy.scope():
        replica_dropout = ReplicaDropout(0.5, seed=3)
        keras_dropout = keras.layers.Dropout(0.5, seed=3)
        modality_dropout = ModalityDropout([0.5, 0.5], seed=5)
    report("replica_dropout", replicated_call(replica_dropout, ones),
           np.asarray(ReplicaDropout(0.5, seed=3)(ones, training=True)))
    keras_halves = replicated_call(keras_dropout, ones)
    result["keras_dropout_halves_equal"] = bool(np.array_equal(keras_halves[0], keras_halves[1]))
    result["keras_dropout_dropped_fraction"] = float(np.mean(np.concatenate(keras_halves) == 0))
    report("modality_dropout", replicated_call(modality_dropout, mask),
           np.asarray(ModalityDropout([0.5, 0.5], seed=5)(mask, training=True)))

    # The replicas' shares come from different distributions, so per-replica batch
    # statistics are far from the global batch's.
    features = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    features[:8] += 3.0
    features[8:] -= 3.0


    def build(sync):
        keras.utils.set_random_seed(1)
        return mlp_encoder(5, 3, hidden_units=(8, 8), activation="relu", batch_norm=True,
                           sync_batch_norm=sync, dropout=0.3, name="encoder")


    for sync in (True, False):
        single = np.asarray(build(sync)(features, training=True))
        with strategy.scope():
            encoder = build(sync)
        replicated = np.concatenate(replicated_call(encoder, features))
        result["encoder_sync_%s_vs_single" % sync] = float(np.max(np.abs(replicated - single)))
        result["encoder_sync_%s_output_scale" % sync] = float(np.max(np.abs(single)))
    print(json.dumps(result))
""")


def run_script() -> dict:
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=repo_root, env=env, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_two_replicas_draw_different_masks_and_match_one_device():
    result = run_script()
    assert result["replicas"] == 2

    # ReplicaDropout: replicas differ, and together they are one device's draw, exactly.
    assert not result["replica_dropout_halves_equal"], result
    assert result["replica_dropout_vs_single"] == 0.0, result
    assert 0.2 < result["replica_dropout_dropped_fraction"] < 0.8, result
    # Keras' Dropout gives every replica the same mask: the reason ReplicaDropout exists.
    assert result["keras_dropout_halves_equal"], result
    assert 0.2 < result["keras_dropout_dropped_fraction"] < 0.8, result

    # ModalityDropout: the same two properties for its presence-mask draws.
    assert not result["modality_dropout_halves_equal"], result
    assert result["modality_dropout_vs_single"] == 0.0, result
    assert 0.2 < result["modality_dropout_dropped_fraction"] < 0.8, result

    # Synchronised BatchNorm (and ReplicaDropout inside the encoder): 2 replicas == one device.
    assert result["encoder_sync_True_vs_single"] < 1e-5, result
    # Per-replica statistics: a difference on the scale of the outputs themselves.
    assert result["encoder_sync_False_vs_single"] > 0.1 * result["encoder_sync_False_output_scale"], result
    assert result["encoder_sync_False_vs_single"] > 0.5, result

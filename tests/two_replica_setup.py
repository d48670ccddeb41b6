"""Shared start of the subprocess scripts that compare a 2-replica step with one device.

Two logical CPU devices must be configured before TensorFlow initialises its devices,
so the comparisons run in a fresh interpreter; this is the common preamble: the two
devices, the imports, paired data (96 rows) and ``build()``, a tiny seeded DeepCCA.
"""

import textwrap

PREAMBLE = textwrap.dedent("""
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from xmodal_tf.encoders import mlp_encoder
    from xmodal_tf.models import DeepCCA
    from xmodal_tf.training import DeepCCATrainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 20)).astype("float32")
    y = (x[:, :10] @ rng.normal(size=(10, 12)) + rng.normal(size=(96, 12))).astype("float32")

    def build():
        keras.utils.set_random_seed(1)
        return DeepCCA(mlp_encoder(20, 4, hidden_units=(16,), name="ex"),
                       mlp_encoder(12, 4, hidden_units=(16,), name="ey"))

    def compare_with_one_device(build_model, learning_rate):
        # 3 SGD steps on batches of 32, with model.fit on two replicas, against one device:
        #   global_batch=True  -> the gradient of the loss of each whole batch of 32;
        #   global_batch=False -> the MEAN of the gradients of its two halves (one per replica).
        # Returns (results, the last two-replica model, the strategy).
        def reference(whole_batch):
            model = build_model()
            initial = [w.numpy() for w in model.trainable_weights]
            losses = []
            for start in range(0, 96, 32):
                parts = ([slice(start, start + 32)] if whole_batch
                         else [slice(start, start + 16), slice(start + 16, start + 32)])
                gradients = []
                for part in parts:
                    with tf.GradientTape() as tape:
                        loss = model.batch_loss(x[part], y[part], training=True)["loss"]
                    gradients.append(tape.gradient(loss, model.trainable_weights))
                    losses.append(float(loss))
                for variable, *part_gradients in zip(model.trainable_weights, *gradients):
                    variable.assign(variable - learning_rate * sum(part_gradients) / len(part_gradients))
                    if variable.constraint is not None:  # e.g. a temperature's clip, as the optimizer does
                        variable.assign(variable.constraint(variable))
            moved = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(initial, model.trainable_weights))
            return model, moved, float(np.mean(losses))

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32, drop_remainder=True)
        results = {"replicas": strategy.num_replicas_in_sync}
        for global_batch in (True, False):
            expected, moved, expected_loss = reference(global_batch)
            with strategy.scope():
                model = build_model()
                if not global_batch:
                    model = type(model).from_config({**model.get_config(), "global_batch": False})
                    model.set_weights(build_model().get_weights())
                model.compile(optimizer=keras.optimizers.SGD(learning_rate))
            history = model.fit(dataset, epochs=1, verbose=0).history
            results[f"difference_{global_batch}"] = max(
                float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(model.trainable_weights,
                                                                             expected.trainable_weights))
            results[f"moved_{global_batch}"] = moved
            results[f"loss_{global_batch}"] = history["loss"][0]
            results[f"expected_loss_{global_batch}"] = expected_loss
        results.update(difference=results["difference_True"], moved=results["moved_True"])
        return results, model, strategy
""")


def run_replica_comparison(script: str) -> dict:
    """Run a two-replica comparison script in a fresh interpreter and return the JSON it
    prints last, after the checks every comparison shares: two replicas, weights that
    really moved (so the comparison is not vacuous), and replicas equal to one device."""
    import json
    import os
    import subprocess
    import sys

    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=repo_root, env=env, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["moved"] > 1e-2
    assert result["difference"] < 1e-5
    return result

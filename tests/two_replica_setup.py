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
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               cwd=repo_root, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["moved"] > 1e-2
    assert result["difference"] < 1e-5
    return result

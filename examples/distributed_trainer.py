"""DeepCCA on every device of this machine (or of a cluster) with xm.training.Trainer.

    python examples/distributed_trainer.py                      # auto: all GPUs, else one device
    python examples/distributed_trainer.py --quick              # a smoke test: 2 epochs
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
        python examples/distributed_trainer.py --strategy multiworker   # on every worker

The batch is the global batch (split over the replicas) and the Deep CCA objective is
the global batch's, so the result does not depend on the number of devices. Runs
offline on scikit-learn's digits in a few seconds.
"""

import argparse
import tempfile

import keras

import xmodal_tf as xm
from xmodal_tf.training import make_strategy

parser = argparse.ArgumentParser()
parser.add_argument("--strategy", default="auto", choices=xm.training.STRATEGIES)
parser.add_argument("--quick", action="store_true", help="a smoke test: 2 epochs")
args = parser.parse_args()

strategy = make_strategy(args.strategy)  # first: a multi-worker strategy must start before other TF work
data = xm.data.load_two_view_digits()
x, y, _ = data.train
batch = 256 - 256 % strategy.num_replicas_in_sync  # the global batch splits evenly over the replicas
with strategy.scope():  # models and optimizers in the strategy's scope

    def encoder(name):
        return xm.encoders.mlp_encoder(
            32, 10, hidden_units=(128,), activation="relu", batch_norm=True, sync_batch_norm=True, name=name
        )

    model = xm.models.DeepCCA(encoder("encoder_x"), encoder("encoder_y"), n_components=10)
    trainer = xm.training.Trainer(
        model, keras.optimizers.Adam(1e-3), strategy=strategy, checkpoint_dir=tempfile.mkdtemp(), eval_every=10
    )
trainer.fit(
    xm.data.make_dataset((x, y), batch_size=batch, seed=0, drop_remainder=True),
    epochs=2 if args.quick else 30,
    validation_data=data.validation[:2],
)
model.fit_linear_cca(x, y)
print(
    f"{strategy.num_replicas_in_sync} replica(s); test total correlation of the top 10: "
    f"{model.score(*data.test[:2]):.3f} (linear CCA on the raw views: about 5.8)"
)

"""Every model under tf.distribute: N replicas (and N workers) train like one device.

* Two logical CPUs (``MirroredStrategy``, in a fresh interpreter): for each model, a few
  ``Trainer`` steps on the global batch give the weights of the same steps on one
  device within 1e-5, with dropout, modality dropout, GAN noise and (synchronised)
  BatchNorm switched ON: random draws are made for the global batch and sliced, so
  they are the same; separately, the two replicas' draws differ.
* Two ``MultiWorkerMirroredStrategy`` workers on 127.0.0.1 (and a single-process
  reference, all three started together): ``Trainer`` for DeepCCA, the cGAN and a
  fusion classifier, and ``model.fit`` for the dual encoder, end with identical
  weights on both workers, equal to the single process within 1e-5.
* The CLI: ``deepcca --strategy multiworker`` on two workers, the chief alone writing
  the run directory, metrics equal to ``--strategy default``; bad ``TF_CONFIG`` and an
  unreachable peer give a clear message within a bounded time.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from multiworker import REPO_ROOT, start_workers, tf_config, wait_for

# The models under test, built identically by every process from fixed seeds.
MODELS = textwrap.dedent("""
    import json, os
    import numpy as np
    import tensorflow as tf
    import keras
    from xmodal_tf.encoders import mlp_encoder
    from xmodal_tf.models import (ConditionalGAN, DeepCCA, DualEncoder, MultimodalAutoencoder,
                                  build_discriminator, build_fusion_classifier, build_generator)
    from xmodal_tf.training import Trainer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 12)).astype("float32")
    Y = (X[:, :6] @ rng.normal(size=(6, 10)) + 0.5 * rng.normal(size=(96, 10))).astype("float32")
    LABELS = (X[:, 0] > 0).astype("int32") + (Y[:, 0] > 0).astype("int32")     # 3 classes
    IMAGES = rng.uniform(size=(96, 8, 8, 1)).astype("float32")

    def encoder(dim, out, name, dropout=0.2):
        return mlp_encoder(dim, out, hidden_units=(16,), activation="relu", batch_norm=True,
                           sync_batch_norm=True, dropout=dropout, name=name)

    def build(kind):
        keras.utils.set_random_seed(7)
        if kind in ("deepcca", "dccae"):
            decoders = {}
            if kind == "dccae":
                decoders = dict(decoder_x=mlp_encoder(4, 12, hidden_units=(8,), name="dx"),
                                decoder_y=mlp_encoder(4, 10, hidden_units=(8,), name="dy"),
                                reconstruction_weight=1.0)
            return DeepCCA(encoder(12, 4, "ex"), encoder(10, 4, "ey"), n_components=3, **decoders)
        if kind == "mae":
            return MultimodalAutoencoder({"x": encoder(12, 6, "ex"), "y": encoder(10, 6, "ey")},
                                         {"x": mlp_encoder(5, 12, hidden_units=(), name="dx"),
                                          "y": mlp_encoder(5, 10, hidden_units=(), name="dy")},
                                         code_dim=5, modality_dropout=0.5, seed=3)
        if kind == "dual":
            return DualEncoder(encoder(12, 6, "ea"), encoder(10, 6, "eb"), projection_dim=4)
        if kind == "cgan":
            return ConditionalGAN(build_generator((8, 8, 1), 6, num_classes=3, base_filters=4, sync_batch_norm=True),
                                  build_discriminator((8, 8, 1), num_classes=3, base_filters=4),
                                  num_classes=3, seed=5, ema_decay=0.9)
        if kind == "fusion":
            model = build_fusion_classifier({"x": encoder(12, 6, "ex"), "y": encoder(10, 6, "ey")}, fusion="concat",
                                            num_classes=3, modality_dropout=0.3, dropout=0.2, seed=2,
                                            unimodal_loss_weight=1.0, unimodal_distillation=0.5)
            model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
        raise ValueError(kind)

    # Plain SGD: Adam's first steps divide by |gradient| and so magnify the rounding
    # differences of near-zero gradients summed in another order (measured: 2e-4 with Adam,
    # 6e-8 with SGD on the same DeepCCA steps).
    def optimizer(kind):
        if kind == "cgan":
            return (keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1))
        return None if kind == "fusion" else keras.optimizers.SGD(0.01 if kind == "dual" else 0.1)

    def dataset(kind):
        if kind in ("deepcca", "dccae", "dual"):
            data = (X, Y)
        elif kind == "mae":
            data = {"x": X, "y": Y}
        elif kind == "cgan":
            data = (IMAGES, LABELS)
        else:
            data = ({"x": X, "y": Y}, LABELS)
        return tf.data.Dataset.from_tensor_slices(data).batch(32, drop_remainder=True)

    def train(kind, strategy):
        with strategy.scope():
            model = build(kind)
            trainer = Trainer(model, optimizer(kind), strategy=strategy, progress=False)
        initial = [w.numpy().copy() for w in model.weights]
        history = trainer.fit(dataset(kind), epochs=1)
        return model, initial, history

    def weights(model):
        return [w.numpy().astype("float64").ravel().tolist() for w in model.weights]
""")

MIRRORED_SCRIPT = (
    textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""")
    + MODELS
    + textwrap.dedent("""
    one_device = tf.distribute.get_strategy()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {"replicas": mirrored.num_replicas_in_sync}
    for kind in ("deepcca", "dccae", "mae", "cgan", "dual", "fusion"):
        reference, initial, expected = train(kind, one_device)
        model, _, history = train(kind, mirrored)
        results[kind] = {  # relative to the weights' size where they exceed 1
            "difference": max(float((np.abs(a.numpy() - b.numpy()) / np.maximum(1.0, np.abs(b.numpy()))).max())
                              for a, b in zip(model.weights, reference.weights)),
            "moved": max(float(np.abs(a - b.numpy()).max()) for a, b in zip(initial, reference.weights)),
            "steps": history["steps"][0],
            # The model's own random stream advanced once per global step, as on one device.
            "seed_state": [np.asarray(m.seed_generator.state.numpy()).tolist() if hasattr(m, "seed_generator")
                           else None for m in (model, reference)],
            "logs": {key: [history[key][0], expected[key][0]] for key in history
                     if key not in ("epoch", "seconds", "steps")},
        }

    # The replicas' random draws differ (and together are one device's draw).
    with mirrored.scope():
        gan, autoencoder = build("cgan"), build("mae")
    noise = mirrored.run(tf.function(lambda: gan.sample_latent(4)))
    masks = mirrored.run(tf.function(lambda: autoencoder.draw_modality_mask(32)))
    noise, masks = ([t.numpy() for t in mirrored.experimental_local_results(v)] for v in (noise, masks))
    results["noise_differs"] = bool(np.abs(noise[0] - noise[1]).max() > 1e-3)
    results["masks_differ"] = bool(np.abs(masks[0] - masks[1]).max() > 0)

    # A global batch that does not split evenly over the replicas is refused.
    with mirrored.scope():
        model = build("deepcca")
        trainer = Trainer(model, keras.optimizers.SGD(0.1), strategy=mirrored, progress=False)
    try:
        trainer.fit(tf.data.Dataset.from_tensor_slices((X, Y)).batch(33, drop_remainder=True), epochs=1)
        results["uneven_error"] = ""
    except ValueError as error:
        results["uneven_error"] = str(error)
    print(json.dumps(results))
""")
)


def run_script(script: str, timeout: float = 420) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_two_replicas_train_every_model_like_one_device():
    result = run_script(MIRRORED_SCRIPT)
    assert result["replicas"] == 2
    for kind in ("deepcca", "dccae", "mae", "cgan", "dual", "fusion"):
        outcome = result[kind]
        assert outcome["steps"] == 3, kind
        assert outcome["moved"] > 1e-2, kind  # the comparison is not vacuous
        assert outcome["difference"] < 1e-5, (kind, outcome["difference"])
        assert outcome["seed_state"][0] == outcome["seed_state"][1], kind
        for key, (replicas, one_device) in outcome["logs"].items():
            np.testing.assert_allclose(replicas, one_device, rtol=1e-4, atol=1e-5, err_msg=f"{kind} {key}")
    assert result["noise_differs"] and result["masks_differ"]
    assert "33 rows does not split evenly over 2 replicas" in result["uneven_error"]


# ----------------------------------------------------------------------------- multi-worker
WORKER_SCRIPT = MODELS + textwrap.dedent("""
    if os.environ.get("TF_CONFIG"):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    results = {"replicas": strategy.num_replicas_in_sync}
    for kind in ("deepcca", "cgan", "fusion"):
        model, _, history = train(kind, strategy)
        results[kind] = {"weights": weights(model), "loss": history.get("loss", history.get("d_loss"))[0]}

    # model.fit under MultiWorkerMirroredStrategy (xmodal_tf.models.base.MultiWorkerFitMixin).
    with strategy.scope():
        model = build("dual")
        model.compile(optimizer=optimizer("dual"))
    history = model.fit(dataset("dual"), epochs=2, verbose=0).history
    results["fit"] = {"weights": weights(model), "loss": history["loss"]}
    print(json.dumps(results))
""")


@pytest.mark.multiworker
def test_two_workers_train_like_one_process():
    processes = start_workers([sys.executable, "-c", WORKER_SCRIPT], count=2)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    env.pop("TF_CONFIG", None)
    processes.append(
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )
    )
    outputs = wait_for(processes, timeout=420)
    for index, (code, _, stderr) in enumerate(outputs):
        assert code == 0, f"process {index} exited with {code}:\n{stderr[-4000:]}"
    chief, worker, single = (json.loads(stdout.strip().splitlines()[-1]) for _, stdout, _ in outputs)
    assert chief["replicas"] == worker["replicas"] == 2 and single["replicas"] == 1
    for kind in ("deepcca", "cgan", "fusion", "fit"):
        for a, b, c in zip(chief[kind]["weights"], worker[kind]["weights"], single[kind]["weights"]):
            assert a == b, kind  # the workers hold identical weights
            np.testing.assert_allclose(a, c, atol=1e-5, rtol=1e-5, err_msg=kind)
        np.testing.assert_allclose(chief[kind]["loss"], single[kind]["loss"], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- the CLI
# Two phases (shifted epochs, then one plain epoch): two fit calls, each saving on every worker.
DEEPCCA_SETTINGS = [
    "deepcca",
    "--set",
    'models=["deepcca"]',
    "--set",
    "epochs=3",
    "--set",
    "hidden_units=[32]",
    "--set",
    "final_reg=[1e-4]",
    "--set",
    "batch_size=128",
    "--set",
    "shift=1",
    "--set",
    "unshifted_final_epochs=1",
]


@pytest.mark.multiworker
def test_cli_deepcca_on_two_workers_matches_one_process(tmp_path):
    run_dir = tmp_path / "multi"
    command = [
        sys.executable,
        "-m",
        "xmodal_tf.train",
        *DEEPCCA_SETTINGS,
        "--strategy",
        "multiworker",
        "--worker-timeout",
        "120",
        "--logdir",
        str(run_dir),
    ]
    outputs = wait_for(start_workers(command, count=2), timeout=420)
    for index, (code, _, stderr) in enumerate(outputs):
        assert code == 0, f"worker {index} exited with {code}:\n{stderr[-4000:]}"
    assert "the chief writes the run directory" in outputs[1][1]
    assert "Epoch 3/3" in outputs[0][1] and "Epoch" not in outputs[1][1]  # progress from the chief only

    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribution"] == {"strategy": "multiworker", "replicas": 2, "workers": 2, "task": "worker 0"}
    # One writer: one events file per TensorBoard run, one checkpoint series (pruned to
    # its last checkpoint after success).
    assert len(list((run_dir / "deepcca").glob("events.out.tfevents.*"))) == 1
    history = json.loads((run_dir / "checkpoints" / "deepcca" / "history.json").read_text())
    assert [logs["epoch"] for logs in history["epochs"]] == [0, 1, 2]
    assert history["calls"] == [{"first": 0, "until": 2}, {"first": 2, "until": 3}]
    assert sorted(p.name for p in (run_dir / "checkpoints" / "deepcca").glob("epoch-*.index")) == ["epoch-3.index"]

    single_dir = tmp_path / "single"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    env.pop("TF_CONFIG", None)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmodal_tf.train",
            *DEEPCCA_SETTINGS,
            "--strategy",
            "default",
            "--logdir",
            str(single_dir),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    multi = json.loads((run_dir / "metrics.json").read_text())["results"]["deepcca"]
    single = json.loads((single_dir / "metrics.json").read_text())["results"]["deepcca"]
    # The same global batches, global objective and synchronised BatchNorm: equal up to
    # float rounding in the summation order.
    for split in ("train", "validation", "test"):
        key = f"{split}_total_correlation"
        assert abs(multi[key] - single[key]) < 1e-3, (key, multi[key], single[key])


def test_cli_refuses_malformed_tf_config(tmp_path, monkeypatch, capsys):
    from xmodal_tf.train import main

    for text, message in [
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "not 'host:port'"),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
            "task index 2 is out of range",
        ),
        ("", "needs the TF_CONFIG environment variable"),
    ]:
        monkeypatch.setenv("TF_CONFIG", text)
        began = time.monotonic()
        code = main(["deepcca", "--strategy", "multiworker", "--logdir", str(tmp_path / "run")])
        assert code == 2 and time.monotonic() - began < 10
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.multiworker
def test_worker_without_its_peer_stops_with_a_message(tmp_path):
    ports = [free for free in __import__("multiworker").free_ports(2)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT, TF_CONFIG=tf_config(ports, 0))
    began = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmodal_tf.train",
            "deepcca",
            "--strategy",
            "multiworker",
            "--worker-timeout",
            "5",
            "--logdir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )
    elapsed = time.monotonic() - began
    assert completed.returncode != 0 and elapsed < 90
    assert f"could not reach its peers ['127.0.0.1:{ports[1]}'] within 5 s" in completed.stderr
    assert not pathlib.Path(tmp_path / "run").exists()

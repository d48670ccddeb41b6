"""One TensorBoard scheme for every experiment: read back the event files of a short run
of each and check the runs, tag groups and steps, and the key figures (PNG and image)."""

import pathlib

import pytest
from figure_checks import png_size
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from xmodal_tf import train
from xmodal_tf.experiments.base import TAG_GROUPS

SHORT = {
    "cca": ["--set", "n_components=3"],
    "deepcca": ["--set", "hidden_units=[16]", "--set", "epochs=2", "--set", "batch_size=64", "--set", "n_components=4"],
    "mae": [
        "--set",
        "epochs=2",
        "--set",
        "train_size=200",
        "--set",
        "code_dim=8",
        "--set",
        "embedding_dim=8",
        "--set",
        "filters=[8]",
        "--set",
        "decoder_hidden_units=[16]",
        "--set",
        "batch_size=100",
    ],
    "fusion": [
        "--set",
        "seeds=1",
        "--set",
        'strategies=["concat"]',
        "--set",
        "epochs=2",
        "--set",
        "batch_size=64",
        "--set",
        "encoder_hidden_units=[8]",
        "--set",
        "embedding_dim=4",
        "--set",
        "hidden_units=[8]",
        "--set",
        "missing_fractions=[1.0]",
    ],
    "cgan": [
        "--set",
        "steps=4",
        "--set",
        "steps_per_epoch=2",
        "--set",
        "batch_size=32",
        "--set",
        "classifier_epochs=1",
        "--set",
        "samples_per_condition=2",
        "--set",
        "generator_filters=4",
        "--set",
        "discriminator_filters=4",
    ],
    "retrieval": [
        "--set",
        "epochs=2",
        "--set",
        "filters=[8]",
        "--set",
        "embedding_dim=16",
        "--set",
        "projection_dim=8",
    ],
    "transfer": [
        "--set",
        "label_fractions=[0.05]",
        "--set",
        "seeds=1",
        "--set",
        "pretrain_epochs=1",
        "--set",
        "target_epochs=2",
        "--set",
        "distill_epochs=2",
        "--set",
        "min_epoch_steps=2",
        "--set",
        "filters=[8]",
        "--set",
        "embedding_dim=8",
    ],
    "crossmodal": [
        "--set",
        "epochs=2",
        "--set",
        "train_size=200",
        "--set",
        "filters=[4]",
        "--set",
        "code_dim=8",
        "--set",
        "batch_size=64",
        "--set",
        "n_components=4",
        "--set",
        "probe_c=[1.0]",
    ],
}
HEADLINE = {  # one headline figure each run must show
    "cca": "test/total_correlation",
    "deepcca": "test/deepcca_total_correlation",
    "mae": "test/dropout/probe_accuracy/left_to_right",
    "fusion": "test/accuracy_complete/concat",
    "cgan": "test/generated_accuracy",
    "retrieval": "test/image_to_text_recall@1",
    "transfer": "test/accuracy_5%_labels/transfer",
    "crossmodal": "test/left_to_right_accuracy/linear_cca",
}
FIGURES = {  # each run's key figures: <run directory>/<name>.png and the image test_details/<name>
    "cca": ["canonical_correlations"],
    "deepcca": ["canonical_correlations"],
    "mae": ["reconstructions_left", "reconstructions_right"],
    "fusion": ["accuracy_vs_missing_left", "accuracy_vs_missing_right"],
    "cgan": ["generated_samples"],
    "retrieval": ["recall_at_k"],
    "transfer": ["accuracy_vs_label_fraction"],
    "crossmodal": ["probe_accuracy"],
}


def read_runs(logdir: pathlib.Path) -> dict:
    """{run folder: {plugin name: {tag: [steps]}}} of every folder holding event files."""
    runs = {}
    for folder in sorted({path.parent for path in logdir.rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
        accumulator.Reload()
        plugins = {}
        for tag in accumulator.Tags()["tensors"]:
            plugin = accumulator.SummaryMetadata(tag).plugin_data.plugin_name
            plugins.setdefault(plugin, {})[tag] = [event.step for event in accumulator.Tensors(tag)]
        runs[str(folder.relative_to(logdir))] = plugins
    return runs


@pytest.mark.parametrize("experiment", sorted(SHORT))
def test_every_run_follows_the_tag_scheme(experiment, tmp_path):
    logdir = tmp_path / "run"
    assert train.main([experiment, "--logdir", str(logdir), *SHORT[experiment]]) == 0
    runs = read_runs(logdir)
    assert "." in runs, "the run directory itself holds the final figures"
    for run, plugins in runs.items():
        scalars = plugins.get("scalars", {})
        assert scalars, f"run {run!r} holds no scalars: {sorted(plugins)}"
        for tag, steps in scalars.items():
            assert tag.split("/", 1)[0] in TAG_GROUPS, f"{run}: tag {tag!r} is outside {TAG_GROUPS}"
            assert min(steps) >= 1, f"{run}: {tag} has a step {min(steps)} (steps count from 1)"
        for plugin in ("images", "text"):
            for tag, steps in plugins.get(plugin, {}).items():
                assert min(steps) >= 1, f"{run}: {plugin} {tag} has a step {min(steps)}"
    assert HEADLINE[experiment] in runs["."]["scalars"]
    assert "hparams" in runs["."], "the run's settings for the HParams tab"
    images = runs["."].get("images", {})
    for name in FIGURES[experiment]:
        assert images.get(f"test_details/{name}") == [1], f"no TensorBoard image test_details/{name}: {sorted(images)}"
        png_size(logdir / f"{name}.png")
    assert sorted(path.stem for path in logdir.glob("*.png")) == sorted(FIGURES[experiment])

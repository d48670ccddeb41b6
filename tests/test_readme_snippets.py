"""Every ```python snippet of README.md, executed (issue 16: "every README snippet runs as written").

How the snippets are run:

* README.md is split into sections at its ``##`` / ``###`` headings. The snippets of one
  section run in document order in one namespace (a later snippet may use an earlier
  one's names); every section starts from a fresh namespace holding only the prelude
  the README states, ``import keras, numpy as np, xmodal_tf as xm``.
* Sections outside "Using the library" show a fragment that names the reader's own
  objects (``model``, ``x``, ...). ``USER_OBJECTS`` below defines those names, on the
  offline digits, before the section runs; the snippet's own lines are not changed.
* Each section runs in a fresh temporary working directory (snippets write
  ``dcca.keras``, checkpoints and TensorBoard logs), with outgoing network connections
  refused: the snippets must work offline and without ../shared.
* Sizes: by default every ``...epochs=N`` in a snippet (``epochs``, ``head_epochs``,
  ``fine_tune_epochs``) is replaced by 1, and ``initial_epoch=M`` (M > 0) by 1 with the
  ``epochs=`` on the same line by 2, so the whole module runs in well under two
  minutes on 2 CPU cores. ``XMODAL_README_FULL=1`` runs the snippets exactly as written
  (the README's epoch counts). Nothing else in the text is changed.
* ``CHECKS`` asserts each section's key outputs (the shapes its comments state).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import socket

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
FULL = os.environ.get("XMODAL_README_FULL", "") not in ("", "0")
PRELUDE = "import keras\nimport numpy as np\nimport xmodal_tf as xm\n"


# ---------------------------------------------------------------------- reading the README


def readme_sections(text: str) -> list[tuple[str, list[tuple[int, str]]]]:
    """[(section title, [(line number, code), ...]), ...] for every section with a python
    snippet, in document order. The title is "## h2" or "## h2 / ### h3"."""
    sections: dict[str, list[tuple[int, str]]] = {}
    h2 = h3 = None
    in_block, language, start, lines = False, "", 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        if in_block:
            if line.strip() == "```":
                if language == "python":
                    title = f"## {h2}" + (f" / ### {h3}" if h3 else "")
                    sections.setdefault(title, []).append((start, "\n".join(lines) + "\n"))
                in_block = False
            else:
                lines.append(line)
            continue
        if line.startswith("```"):
            in_block, language, start, lines = True, line[3:].strip().lower(), number, []
        elif line.startswith("## "):
            h2, h3 = line[3:].strip(), None
        elif line.startswith("### "):
            h3 = line[4:].strip()
    assert not in_block, "README.md ends inside a fenced block"
    return list(sections.items())


SECTIONS = readme_sections(README.read_text(encoding="utf-8"))


def shorten(code: str) -> str:
    """The snippet with its training sizes cut (see the module docstring)."""
    if FULL:
        return code
    out = []
    for line in code.splitlines(keepends=True):
        if re.search(r"\binitial_epoch=[1-9]\d*", line):
            line = re.sub(r"\binitial_epoch=\d+", "initial_epoch=1", line)
            line = re.sub(r"\bepochs=\d+", "epochs=2", line)
        else:
            line = re.sub(r"\b(\w*epochs)=\d+", r"\1=1", line)
        out.append(line)
    return "".join(out)


# ---------------------------------------------------------------------- the reader's own objects


def _digits_pairs():
    import xmodal_tf as xm

    data = xm.data.load_two_view_digits()
    return data.train.view1, data.train.view2


def _scaling_objects(ns):
    import xmodal_tf as xm

    ns["x"], ns["y"] = _digits_pairs()
    ns["encoder_x"] = xm.encoders.mlp_encoder(32, 50, hidden_units=(64,))
    ns["encoder_y"] = xm.encoders.mlp_encoder(32, 50, hidden_units=(64,), name="encoder_y")


def _gpu_objects(ns):
    import xmodal_tf as xm

    ns["model"] = xm.models.DeepCCA(
        xm.encoders.mlp_encoder(32, 10, hidden_units=(64,)),
        xm.encoders.mlp_encoder(32, 10, hidden_units=(64,), name="encoder_y"),
        n_components=10,
    )
    ns["image_encoder"] = xm.encoders.cnn_encoder((8, 8, 1), 32, name="image_encoder")
    ns["text_encoder"] = xm.encoders.text_encoder(["zero", "one", "two"], embedding_dim=32)


# Section title -> function that puts the names the section's fragment takes from the
# reader into the namespace.
USER_OBJECTS = {
    "## Scaling: several devices and several machines": _scaling_objects,
    "## GPUs: mixed precision and XLA": _gpu_objects,
}

# Section title -> pytest.mark.xfail(strict=True) for a snippet known to fail as written.
KNOWN_FAILURES = {}  # {section title: pytest.mark.xfail(strict=True, ...)} for a README bug not fixed yet


# ---------------------------------------------------------------------- what each section must produce


def _check_cca(ns):
    assert ns["x"].shape == (1078, 32) and ns["y"].shape == (1078, 32) and ns["labels"].shape == (1078,)
    assert ns["x_c"].shape == (360, 10) and ns["y_c"].shape == (360, 10)
    assert ns["cca"].canonical_correlations_.shape == (10,)


def _check_encoders(ns):
    assert tuple(ns["enc"].output.shape) == (None, 64)
    assert tuple(ns["img"].output.shape) == (None, 128)
    assert ns["report"].copied, "nothing was transferred"
    assert not ns["report"].mismatched
    assert len(ns["fine_tune_history"].history["loss"]) >= 1


def _check_deepcca(ns):
    assert ns["x_c"].shape == (360, 10) and ns["y_c"].shape == (360, 10)
    assert np.isfinite(ns["model"].score(ns["x_test"], ns["y_test"]))
    assert pathlib.Path("dcca.keras").is_file()
    assert "val_total_correlation" in ns["history"]


def _check_autoencoder(ns):
    assert ns["codes"].shape == (360, 64)
    assert ns["right_from_left"].shape == (360, 8, 4, 1)


def _check_gan(ns):
    assert ns["samples"].shape == (80, 8, 8, 1)
    assert pathlib.Path("cgan.keras").is_file()


def _check_retrieval(ns):
    assert ns["indices"].shape == (360, 5) and ns["scores"].shape == (360, 5)
    assert 0.0 <= ns["metrics"]["recall@1"] <= 1.0


def _check_fusion(ns):
    assert ns["right_only"].shape == (360, 10)
    assert ns["mixed"].shape == (360, 10)


def _check_pretrained(ns):
    assert tuple(ns["text_net"](np.array(["the digit one"])).shape) == (1, 32)
    assert len(ns["xm"].transfer.backbone_blocks(ns["dual"])) == 2
    assert pathlib.Path("pretrained_dual.keras").is_file()


def _check_cca_family(ns):
    assert np.isfinite(ns["ey"].score(ns["x_test"], ns["y_test"]))
    assert ns["ey"].view_loss.get_config()["unbiased"] is False
    assert [v.shape for v in ns["mcca"].transform(ns["test_views"])] == [(360, 10)] * 3
    assert 0 < ns["mcca"].score(ns["test_views"]) <= 10
    assert ns["plain"].view_dims == [10, 10]


def _check_trainer(ns):
    assert "val_loss" in ns["history"]


CHECKS = {
    "## Using the library": _check_cca,
    "## Using the library / ### Encoders and transfer": _check_encoders,
    "## Using the library / ### DeepCCA and DCCAE": _check_deepcca,
    "## Using the library / ### Pretrained backbones (keras-hub)": _check_pretrained,
    "## Using the library / ### The CCA family: one loss interface, small batches, three or more views": (
        _check_cca_family
    ),
    "## Using the library / ### Multimodal autoencoder": _check_autoencoder,
    "## Using the library / ### Conditional GAN": _check_gan,
    "## Using the library / ### Contrastive dual encoder and retrieval": _check_retrieval,
    "## Using the library / ### Fusion classifiers": _check_fusion,
    "## Using the library / ### The training loop (`xm.training.Trainer`)": _check_trainer,
}


# ---------------------------------------------------------------------- running them


@contextlib.contextmanager
def no_network():
    """Outgoing connections to anything but this machine raise OSError."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"README snippet tried to reach {address!r}; the snippets must run offline")
        return real_connect(sock, address)

    socket.socket.connect = connect
    try:
        yield
    finally:
        socket.socket.connect = real_connect


def _slug(title: str) -> str:
    """ "## Using the library / ### Fusion classifiers" -> "fusion-classifiers"."""
    last = title.split(" / ")[-1].lstrip("#")
    return re.sub(r"[^a-z0-9]+", "-", last.lower()).strip("-").split("-xm-")[0]


def _params():
    for title, snippets in SECTIONS:
        marks = [KNOWN_FAILURES[title]] if title in KNOWN_FAILURES else []
        yield pytest.param(title, snippets, id=_slug(title), marks=marks)


def test_every_python_block_is_found():
    text = README.read_text(encoding="utf-8")
    opened = len(re.findall(r"^```python\s*$", text, flags=re.MULTILINE))
    assert opened == sum(len(snippets) for _, snippets in SECTIONS) > 0
    # A check for every section of "Using the library", so none runs unchecked.
    library = [title for title, _ in SECTIONS if title.startswith("## Using the library")]
    assert set(library) <= set(CHECKS), set(library) - set(CHECKS)
    assert set(CHECKS) <= {title for title, _ in SECTIONS}, "CHECKS names a section the README no longer has"


def test_shorten_cuts_epochs_only():
    code = (
        "model.fit(pairs, epochs=55)\nmodel.fit(pairs, initial_epoch=55, epochs=65)\n"
        "fine_tune(new, data, head_epochs=5, fine_tune_epochs=5)\nk = 50\n"
    )
    expected = (
        "model.fit(pairs, epochs=1)\nmodel.fit(pairs, initial_epoch=1, epochs=2)\n"
        "fine_tune(new, data, head_epochs=1, fine_tune_epochs=1)\nk = 50\n"
    )
    assert shorten(code) == (code if FULL else expected)


@pytest.mark.parametrize(("title", "snippets"), list(_params()))
def test_readme_snippets_run(title, snippets, tmp_path, monkeypatch):
    import keras

    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    ns: dict = {"__name__": "readme_snippet"}
    exec(compile(PRELUDE, "<README prelude>", "exec"), ns)
    if title in USER_OBJECTS:
        USER_OBJECTS[title](ns)
    policy = keras.config.dtype_policy()
    try:
        with no_network():
            for line, code in snippets:
                # Compiled under README.md's name with the snippet's line offset, so a
                # traceback points at the README line that failed.
                source = "\n" * line + shorten(code)
                exec(compile(source, str(README), "exec"), ns)
    finally:
        keras.config.set_dtype_policy(policy)  # a mixed-precision snippet must not leak
    if title in CHECKS:
        CHECKS[title](ns)

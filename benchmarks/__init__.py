"""xmodal_tf's benchmarks: speed ratios against floors, not pass/fail.

``python -m benchmarks`` (or ``make bench``) runs every module listed in ``BENCHMARKS``
that has a ``rows(*, quick=False, precisions=...)`` function and writes one Markdown
table (``benchmarks/results.md`` by default) headed by the machine, the device, the
versions, the date and the command; see ``benchmarks/__main__.py``. Each module also
runs on its own (``python benchmarks/bench_models.py``) with more detailed output.

A row is a dict with the keys of ``ROW_KEYS``: ``benchmark`` (what is measured),
``what`` (which loop or variant), ``precision``, ``floor`` (a short description of the
floor), ``floor_ms``, ``step_ms`` and ``ratio`` (``step_ms / floor_ms``; the target is
``TARGET``). Extra keys (e.g. ``paired_ratio``) are allowed and left out of the table.
"""

#: The benchmark modules, in the order the suite runs them (``benchmarks/bench_<name>.py``).
BENCHMARKS = ("cca", "deepcca", "pipeline", "models", "probe")
#: Every step should be at most this many times its floor.
TARGET = 1.15
#: The keys every row has.
ROW_KEYS = ("benchmark", "what", "precision", "floor", "floor_ms", "step_ms", "ratio")

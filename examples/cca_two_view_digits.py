"""Linear CCA between the left and right halves of digits, then cross-view classification.

    python examples/cca_two_view_digits.py [--quick]

A classifier trained on the canonical variates of the LEFT halves labels RIGHT halves
it has never seen: CCA put both views into one shared space.
"""

import argparse

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

import xmodal_tf as xm

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smoke test: one ridge candidate")
quick = parser.parse_args().quick

data = xm.data.load_two_view_digits()
left, right, labels = data.train

# Pick the ridge by 3-fold cross-validation of the held-out canonical correlation.
search = GridSearchCV(xm.CCA(n_components=10), {"reg": [1e-3] if quick else [1e-4, 1e-3, 1e-2]}, cv=3)
search.fit(left, right)
cca = search.best_estimator_
print(f"best reg: {cca.reg}, training correlations: {cca.canonical_correlations_.round(2)}")
print(f"test mean canonical correlation: {cca.score(*data.test[:2]):.3f}")

left_test, right_test = cca.transform(*data.test[:2])
classifier = LogisticRegression(max_iter=2000).fit(cca.transform(left), labels)
print(
    f"trained on left halves, accuracy on right halves: "
    f"{classifier.score(right_test, data.test.labels):.3f} (chance 0.1)"
)

# Streaming: the same fit from chunks, as from a tf.data pipeline or a generator.
streamed = xm.CCA(n_components=10, reg=cca.reg)
for start in range(0, len(left), 256):
    streamed.partial_fit(left[start : start + 256], right[start : start + 256])
print("partial_fit matches fit:", abs(streamed.canonical_correlations_ - cca.canonical_correlations_).max() < 1e-10)

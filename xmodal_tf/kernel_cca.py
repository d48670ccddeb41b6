"""Kernel CCA for two views: linear CCA on an explicit (Nyström) kernel feature map.

``KernelCCA`` maps each view to features of its kernel (RBF, polynomial, or the view
itself for the linear kernel) with scikit-learn's ``Nystroem`` on ``n_landmarks`` rows,
then fits ``xmodal_tf.CCA`` with a ridge per view on those features. With ``n_landmarks``
at or above the number of training rows the map is exact on them (their Gram matrix is
the kernel matrix); fewer landmarks bound the cost at O(n m^2) for m landmarks, so that
50k samples fit on 2 cores in minutes. With ``kernel="linear"`` it is ``CCA`` itself.

Design notes: docs/DESIGN.md (section xmodal_tf/kernel_cca.py).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.kernel_approximation import Nystroem
from sklearn.utils.validation import check_is_fitted

from xmodal_tf._validation import check_choice, check_finite_rows, check_int, check_number, check_positive_int
from xmodal_tf.cca import CCA, _as_view, _check_same_rows, _resolve_dtype

__all__ = ["KERNELS", "KernelCCA"]

KERNELS = ("rbf", "poly", "linear")


class KernelCCA(TransformerMixin, BaseEstimator):
    """Kernel canonical correlation analysis between two views.

    Args:
        n_components: number of canonical directions k (>= 1).
        kernel: "rbf" (exp(-gamma |a - b|^2)), "poly" ((gamma a.b + coef0)^degree) or
            "linear" (the view itself: then this is ``CCA``).
        gamma: the kernel's scale, one float > 0 or a pair (X's, Y's); None: 1 / (the
            view's number of features x its variance), scikit-learn's "scale".
        degree: the polynomial kernel's degree (>= 1).
        coef0: the polynomial kernel's constant term.
        reg: ridge added to each view's feature covariance (C + reg I), one float >= 0 or
            a pair; with a nonlinear kernel the features can be many and collinear, so
            keep it above 0.
        n_landmarks: rows sampled for the Nyström map of each view (>= 1); with at least
            as many as the training rows the map is exact on them.
        random_state: seed of the landmark sampling (an int, or None).
        dtype: "float64" (default) or "float32" for the linear CCA step.

    Attributes:
        feature_maps_: the two fitted ``Nystroem`` maps (None for the linear kernel).
        cca_: the fitted ``CCA`` on the two views' features.
        canonical_correlations_: (k,) training correlations, largest first.
        n_features_in_: X's number of features.
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        kernel: str = "rbf",
        gamma=None,
        degree: int = 3,
        coef0: float = 1.0,
        reg=1e-3,
        n_landmarks: int = 1000,
        random_state=None,
        dtype="float64",
    ):
        self.n_components = n_components
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.reg = reg
        self.n_landmarks = n_landmarks
        self.random_state = random_state
        self.dtype = dtype

    def fit(self, X, Y) -> KernelCCA:
        """Fit the feature maps and the linear CCA on the training pairs.

        Args:
            X: (n, p) first view.
            Y: (n, q) second view (a 1-D Y is one feature), the same n rows.

        Returns:
            The fitted estimator.

        Raises:
            TypeError: a setting or a view of the wrong type.
            ValueError: a bad setting, views of different lengths, NaN or inf values.
        """
        self._check_settings()
        views = self._views(X, Y, "fit")
        gammas = self._gammas(views)
        self.feature_maps_ = [
            self._feature_map(view, gamma, index) for index, (view, gamma) in enumerate(zip(views, gammas))
        ]
        self.cca_ = CCA(self.n_components, reg=self.reg, dtype=self.dtype).fit(*self._features(views))
        self.canonical_correlations_ = self.cca_.canonical_correlations_
        self.n_features_in_ = views[0].shape[1]
        return self

    def transform(self, X, Y=None):
        """Canonical variates of new rows.

        Args:
            X: (n, p) rows of the first view.
            Y: (n, q) rows of the second view, or None.

        Returns:
            X's (n, k) variates, or the pair ``(x_c, y_c)`` when Y is given.
        """
        check_is_fitted(self, "cca_")
        if Y is None:
            return self.cca_.transform(self._map(_as_view(X, "X", self._dtype()), 0))
        return self.cca_.transform(*self._features(self._views(X, Y, "transform")))

    def correlations(self, X, Y) -> np.ndarray:
        """(k,) correlation of each pair of canonical variates on the given rows."""
        check_is_fitted(self, "cca_")
        return self.cca_.correlations(*self._features(self._views(X, Y, "correlations")))

    def score(self, X, Y) -> float:
        """Mean canonical correlation on the given rows (the estimator's default score)."""
        return float(np.mean(self.correlations(X, Y)))

    # ------------------------------------------------------------------ internals
    def _dtype(self) -> np.dtype:
        return _resolve_dtype(self.dtype)

    def _check_settings(self) -> None:
        check_positive_int(self.n_components, "KernelCCA n_components")
        check_choice(self.kernel, "KernelCCA kernel", KERNELS)
        check_positive_int(self.degree, "KernelCCA degree")
        check_number(self.coef0, "KernelCCA coef0")
        check_positive_int(self.n_landmarks, "KernelCCA n_landmarks")
        check_int(self.random_state, "KernelCCA random_state", allow_none=True)

    def _views(self, X, Y, method: str) -> list[np.ndarray]:
        dtype = self._dtype()
        views = [_as_view(X, "X", dtype), _as_view(Y, "Y", dtype, one_feature_1d=True)]
        _check_same_rows(views, ("X", "Y"))
        for view, name in zip(views, ("X", "Y")):
            check_finite_rows(view, name, where=f"KernelCCA.{method}")
        return views

    def _gammas(self, views) -> list[float | None]:
        if self.kernel == "linear":
            return [None, None]
        pair = self.gamma if isinstance(self.gamma, (tuple, list)) else (self.gamma, self.gamma)
        if len(pair) != 2:
            raise ValueError(f"KernelCCA gamma must be one number or a pair (X's, Y's); got {self.gamma!r}.")
        gammas = []
        for gamma, view, name in zip(pair, views, ("X", "Y")):
            if gamma is None:  # scikit-learn's "scale": 1 / (features x variance)
                variance = float(view.var())
                gamma = 1.0 / (view.shape[1] * variance) if variance > 0 else 1.0
            gammas.append(check_number(gamma, f"KernelCCA gamma for {name}", minimum=0, exclusive_minimum=True))
        return gammas

    def _feature_map(self, view: np.ndarray, gamma, index: int):
        if self.kernel == "linear":
            return None
        seed = None if self.random_state is None else int(self.random_state) + index
        landmarks = min(self.n_landmarks, len(view))
        # Nystroem hands each kernel only the parameters it takes (rbf: gamma alone).
        nystroem = Nystroem(
            kernel=self.kernel,
            gamma=gamma,
            degree=self.degree,
            coef0=self.coef0,
            n_components=landmarks,
            random_state=seed,
        )
        return nystroem.fit(view)

    def _map(self, view: np.ndarray, index: int) -> np.ndarray:
        feature_map = self.feature_maps_[index]
        if feature_map is None:
            return view
        return feature_map.transform(view).astype(self._dtype(), copy=False)

    def _features(self, views) -> list[np.ndarray]:
        return [self._map(view, index) for index, view in enumerate(views)]

"""Multivariate drift: can a classifier tell the window from the reference?

A small gradient-boosting classifier learns reference-vs-window on one half of the
rows and scores the other half; under no drift the held-out scores of the two samples
are exchangeable, so a one-sided Mann–Whitney test of "window rows score higher" has
its nominal level. Why not alibi-detect's ``ClassifierDrift`` as configured before: its
out-of-fold probabilities came from three models trained on differently balanced folds
and were pooled into one KS test, which raised 13–18 % false alarms at a nominal 5 %; it
also shuffles with NumPy's global random state, so a window's verdict was not
reproducible.

Cost is bounded whatever the window size: at most ``max_rows`` rows are drawn from each
sample (a drift that a classifier only sees in more than a thousand rows is left to the
per-feature tests), and one classifier is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from monitoring.two_sample import Drift


@dataclass(frozen=True)
class ClassifierTest:
    p_value: float = 0.05
    max_rows: int = 1000
    """Rows drawn from each sample at most."""
    max_iter: int = 30
    max_leaf_nodes: int = 15

    def __call__(self, reference: np.ndarray, window: np.ndarray, *, seed: int) -> Drift:
        from sklearn.ensemble import HistGradientBoostingClassifier

        rng = np.random.default_rng(seed)
        ref = _draw(reference, self.max_rows, rng)
        cur = _draw(window, self.max_rows, rng)
        train_ref, test_ref = _halves(len(ref), rng)
        train_cur, test_cur = _halves(len(cur), rng)
        if min(len(train_ref), len(test_ref), len(train_cur), len(test_cur)) == 0:
            return Drift(is_drift=False, p_value=1.0, distance=0.5)  # too few rows to test
        x_train = np.concatenate([ref[train_ref], cur[train_cur]])
        y_train = np.r_[np.zeros(len(train_ref)), np.ones(len(train_cur))]
        classifier = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            early_stopping=False,
            random_state=seed % 2**32,
        ).fit(x_train, y_train)
        scores_ref = classifier.predict_proba(ref[test_ref])[:, 1]
        scores_cur = classifier.predict_proba(cur[test_cur])[:, 1]
        result = stats.mannwhitneyu(scores_cur, scores_ref, alternative="greater")
        auc = float(result.statistic) / (len(scores_cur) * len(scores_ref))
        p = float(result.pvalue)
        return Drift(is_drift=p < self.p_value, p_value=p, distance=auc)


def _draw(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[rng.choice(len(x), size=n, replace=False)]


def _halves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    return order[: n // 2], order[n // 2 :]

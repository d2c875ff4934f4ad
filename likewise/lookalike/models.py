"""Per-seed scorers over :class:`~likewise.lookalike.features.UserFeatures`.

Every model here is linear in the user's features (the embedding, and one weight per value of
each demographic field), so each is a :class:`LinearScorer` and scoring tens of millions of
users is a matrix-vector product plus table lookups, in bounded chunks:

* **centroid**: cosine similarity of the user's embedding to the seed's mean embedding;
* **pu**: a positive-unlabelled classifier, bagged logistic regression: each bag fits the seed
  (positives) against a fresh random sample of everyone else (unlabelled), and the bags'
  coefficients are averaged (for a linear model that is averaging their scores);
* **demographics**: the same classifier on demographics alone (a baseline);
* **ensemble**: the average of the centroid and PU scores, each standardised over the
  candidates.

All randomness comes from a generator the caller seeds, so a seed always gets the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from likewise.lookalike.features import UserFeatures

BAGS = 5
MAX_POSITIVES = 50_000  # per bag, sampled from larger seeds
MIN_UNLABELLED = 2_000
CHUNK = 1 << 20


@dataclass(frozen=True)
class LinearScorer:
    """``score(u) = embedding[u] @ w + sum_f tables[f][code_f(u)] + bias``."""

    name: str
    w: np.ndarray  # (k,)
    tables: tuple[np.ndarray, ...]  # per demographic field, weight per code
    bias: float = 0.0

    def score(self, f: UserFeatures, rows: np.ndarray | None = None) -> np.ndarray:
        """Scores of ``rows`` (user ids; all users if None), float32."""
        n = f.n if rows is None else len(rows)
        out = np.empty(n, np.float32)
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            idx = slice(lo, hi) if rows is None else rows[lo:hi]
            s = np.full(hi - lo, self.bias, np.float32)
            if f.dim and self.w.size:
                s += f.embedding[idx] @ self.w.astype(np.float32)
            codes = f.demographics.codes[idx]
            for j, table in enumerate(self.tables):
                if table.size:
                    s += table.astype(np.float32)[codes[:, j]]
            out[lo:hi] = s
        return out

    def scaled(self, factor: float, shift: float = 0.0) -> LinearScorer:
        return LinearScorer(
            self.name,
            self.w * factor,
            tuple(t * factor for t in self.tables),
            (self.bias + shift) * factor,
        )


def _no_tables(f: UserFeatures) -> tuple[np.ndarray, ...]:
    return tuple(np.zeros(size) for size in f.demographics.sizes)


def centroid(f: UserFeatures, seed: np.ndarray) -> LinearScorer:
    """Cosine similarity to the seed's mean embedding (users without engagement: 0)."""
    w = np.zeros(f.dim)
    if f.dim and len(seed):
        mean = f.embedding[seed].astype(np.float64).mean(axis=0)
        norm = np.linalg.norm(mean)
        if norm > 0:
            w = mean / norm
    return LinearScorer("centroid", w, _no_tables(f))


def _design(f: UserFeatures, rows: np.ndarray, *, embedding: bool) -> np.ndarray:
    """Dense training rows: the embedding (optional) and one-hot demographic codes."""
    sizes = f.demographics.sizes
    parts = [f.embedding[rows].astype(np.float64)] if embedding and f.dim else []
    codes = f.demographics.codes[rows]
    for j, size in enumerate(sizes):
        onehot = np.zeros((len(rows), size))
        onehot[np.arange(len(rows)), codes[:, j]] = 1.0
        parts.append(onehot)
    return np.hstack(parts) if parts else np.zeros((len(rows), 0))


def _split_coef(
    f: UserFeatures, coef: np.ndarray, bias: float, *, embedding: bool, name: str
) -> LinearScorer:
    k = f.dim if embedding else 0
    w = coef[:k] if k else np.zeros(f.dim)
    tables = []
    at = k
    for size in f.demographics.sizes:
        tables.append(coef[at : at + size].copy())
        at += size
    return LinearScorer(name, w, tuple(tables), bias)


def pu_classifier(
    f: UserFeatures,
    seed: np.ndarray,
    unlabelled: np.ndarray,
    rng: np.random.Generator,
    *,
    embedding: bool = True,
    name: str = "pu",
    bags: int = BAGS,
) -> LinearScorer:
    """Bagged logistic regression of the seed against samples of ``unlabelled`` (user ids
    not in the seed)."""
    coef_sum: np.ndarray | None = None
    bias_sum = 0.0
    for _ in range(bags):
        pos = seed if len(seed) <= MAX_POSITIVES else rng.choice(seed, MAX_POSITIVES, False)
        size = min(len(unlabelled), max(len(pos), MIN_UNLABELLED))
        neg = rng.choice(unlabelled, size, replace=False) if size else unlabelled[:0]
        rows = np.concatenate([pos, neg])
        y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
        x = _design(f, rows, embedding=embedding)
        if x.shape[1] == 0 or len(neg) == 0:
            return LinearScorer(name, np.zeros(f.dim), _no_tables(f))
        model = LogisticRegression(C=1.0, max_iter=300)
        model.fit(x, y)
        coef = model.coef_[0]
        coef_sum = coef if coef_sum is None else coef_sum + coef
        bias_sum += float(model.intercept_[0])
    assert coef_sum is not None
    return _split_coef(f, coef_sum / bags, bias_sum / bags, embedding=embedding, name=name)


def standardised(
    scorer: LinearScorer, f: UserFeatures, sample: np.ndarray
) -> tuple[LinearScorer, np.ndarray]:
    """The scorer rescaled to mean 0 and deviation 1 over ``sample`` (user ids), and its
    scores there."""
    s = scorer.score(f, sample).astype(np.float64)
    sd = float(s.std()) or 1.0
    out = scorer.scaled(1.0 / sd, -float(s.mean()))
    return out, (s - s.mean()) / sd


def ensemble(a: LinearScorer, b: LinearScorer, f: UserFeatures, sample: np.ndarray) -> LinearScorer:
    """The mean of ``a`` and ``b``, each standardised over ``sample``."""
    sa, _ = standardised(a, f, sample)
    sb, _ = standardised(b, f, sample)
    return LinearScorer(
        "ensemble",
        (sa.w + sb.w) / 2,
        tuple((x + y) / 2 for x, y in zip(sa.tables, sb.tables, strict=True)),
        (sa.bias + sb.bias) / 2,
    )

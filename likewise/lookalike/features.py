"""A snapshot of what lookalike models read about every platform user.

* **Behaviour**: the feature store's weights per user and item (categories, creators, business
  accounts), as TF-IDF rows (log-damped weights, rare items count more, rows of unit length),
  and a **user embedding** learned from them: a truncated SVD of users x items, fitted on a
  sample of users and applied to all (users with no engagement get the zero vector).
* **Demographics**: country, OS, age band, gender and language as small integer codes per
  field (0: unknown), from the platform's user table.
* Who may never be selected (opted out of personalised ads, or erased).

Building one reads the merged features once; :class:`FeatureSnapshots` keeps the newest and
builds again only when the feature store or the users changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyroaring import BitMap
from sklearn.decomposition import TruncatedSVD

from likewise.store.features import FeatureMatrix, FeatureStore
from likewise.store.graph import PlatformGraph

EMBEDDING_DIM = 32
SVD_SAMPLE = 200_000  # users the embedding is fitted on
AGE_BANDS = (18, 25, 35, 45, 55)  # band edges: 13-17, 18-24, 25-34, 35-44, 45-54, 55+
TOP_COUNTRIES = 60
TOP_LANGUAGES = 30
DEMOGRAPHIC_FIELDS = ("country", "os", "age", "gender", "language")


@dataclass(frozen=True)
class Demographics:
    """Per user (row = uid), a code per field; ``labels[f][code]`` names it (code 0 is
    unknown, the last code of country and language is "other")."""

    codes: np.ndarray  # (n, len(DEMOGRAPHIC_FIELDS)) uint8
    labels: tuple[tuple[str, ...], ...]
    country: np.ndarray  # (n,) uint16 code into ``countries`` (0: unknown); all countries
    countries: tuple[str, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(x) for x in self.labels)


@dataclass(frozen=True)
class UserFeatures:
    n: int  # users (uids 0 .. n-1)
    embedding: np.ndarray  # (n, k) float32, rows of unit length or zero
    demographics: Demographics
    excluded: BitMap  # never selected nor counted
    items: int  # vocabulary size
    engaged: int  # users with any engagement
    version: tuple[int, int]  # (feature generation, graph change mark)

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[1])


def tfidf(matrix: FeatureMatrix, n: int) -> sp.csr_matrix:
    """Users x items: log-damped weights times inverse document frequency, rows of unit
    length."""
    m = len(matrix.items)
    keep = matrix.uid < n
    uid, item = matrix.uid[keep], matrix.item[keep]
    values = np.log1p(np.maximum(matrix.w[keep], 0)).astype(np.float32)
    users = max(1, int(np.count_nonzero(np.bincount(uid, minlength=n))))  # distinct users
    df = np.bincount(item, minlength=m).astype(np.float64)
    idf = np.log((1 + users) / (1 + df)) + 1.0
    values *= idf[item].astype(np.float32)
    norms = np.sqrt(np.bincount(uid, weights=values.astype(np.float64) ** 2, minlength=n))
    values /= np.maximum(norms[uid], 1e-12).astype(np.float32)
    x = sp.csr_matrix((values, (uid, item)), shape=(n, m), dtype=np.float32)
    x.sum_duplicates()
    return x


def embed(x: sp.csr_matrix, *, dim: int = EMBEDDING_DIM, seed: int = 0) -> np.ndarray:
    """(n, k) user embedding: a truncated SVD fitted on a sample of the engaged users, applied
    to everyone, rows scaled to unit length. ``k`` is at most ``dim`` and less than the
    number of items."""
    n, m = x.shape
    k = min(dim, m - 1)
    engaged = np.flatnonzero(np.diff(x.indptr) > 0)
    if k < 1 or len(engaged) < 2:
        return np.zeros((n, 0), np.float32)
    rng = np.random.default_rng(seed)
    sample = engaged
    if len(sample) > SVD_SAMPLE:
        sample = np.sort(rng.choice(engaged, SVD_SAMPLE, replace=False))
    k = min(k, len(sample) - 1)
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=seed)
    svd.fit(x[sample])
    factors = svd.components_.T.astype(np.float32)  # (m, k)
    out = np.empty((n, k), np.float32)
    step = 1 << 20
    for lo in range(0, n, step):  # bounded temporaries at tens of millions of users
        block = np.asarray(x[lo : lo + step] @ factors, dtype=np.float32)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        np.divide(block, norms, out=block, where=norms > 0)
        out[lo : lo + step] = block
    return out


def _codes(column: pa.ChunkedArray, top: int | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes 1.. for the ``top`` most common values (all if None), ``top + 1`` for the rest,
    0 for null or empty."""
    values = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    counts = pc.value_counts(values.drop_null()) if values.null_count < len(values) else None
    labels: list[str] = []
    if counts is not None and len(counts):
        names = counts.field("values").to_pylist()
        freq = counts.field("counts").to_numpy()
        order = sorted(range(len(names)), key=lambda i: (-int(freq[i]), str(names[i])))
        labels = [str(names[i]) for i in order]
    other = top is not None and len(labels) > top
    kept = labels[:top] if top is not None else labels
    index = pc.index_in(values, value_set=pa.array(kept, pa.string()))
    codes = pc.fill_null(pc.add(index, 1), 0).to_numpy(zero_copy_only=False)
    if other:
        codes = np.where(
            pc.is_valid(values).to_numpy(zero_copy_only=False) & (codes == 0), len(kept) + 1, codes
        )
    out_labels = ("unknown", *kept, *(("other",) if other else ()))
    return codes.astype(np.int64), out_labels


def demographics(graph: PlatformGraph, n: int) -> Demographics:
    with graph.connect() as con:
        users = con.sql(
            f"SELECT uid, country, os, age, gender, language FROM users WHERE uid < {int(n)}"
        ).to_arrow_table()
    uid = users["uid"].to_numpy().astype(np.int64)
    codes = np.zeros((n, len(DEMOGRAPHIC_FIELDS)), np.uint8)
    labels: dict[str, tuple[str, ...]] = {}
    for name, top in (
        ("country", TOP_COUNTRIES),
        ("os", None),
        ("gender", None),
        ("language", TOP_LANGUAGES),
    ):
        c, labels[name] = _codes(users[name], top)
        codes[uid, DEMOGRAPHIC_FIELDS.index(name)] = np.minimum(c, 255)
    age = pc.fill_null(users["age"].cast(pa.int64()), -1).to_numpy()
    band = np.where(age < 0, 0, 1 + np.searchsorted(np.array(AGE_BANDS), age, side="right"))
    codes[uid, DEMOGRAPHIC_FIELDS.index("age")] = band
    labels["age"] = ("unknown", "13-17", "18-24", "25-34", "35-44", "45-54", "55+")
    # Every country (not only the top ones): locations select on it.
    country_codes, countries = _codes(users["country"], None)
    country = np.zeros(n, np.uint16)
    country[uid] = country_codes
    return Demographics(codes, tuple(labels[f] for f in DEMOGRAPHIC_FIELDS), country, countries)


def user_count(graph: PlatformGraph) -> int:
    with graph.connect() as con:
        row = con.execute("SELECT coalesce(max(uid) + 1, 0) FROM users").fetchone()
    return int(row[0]) if row else 0


def build_features(
    store: FeatureStore, graph: PlatformGraph, *, min_month: int | None = None
) -> UserFeatures:
    version = (store.generation, graph.change_mark())
    n = user_count(graph)
    matrix = store.read(min_month=min_month)
    x = tfidf(matrix, n)
    engaged = int(np.count_nonzero(np.diff(x.indptr)))
    embedding = embed(x)
    del x
    return UserFeatures(
        n=n,
        embedding=embedding,
        demographics=demographics(graph, n),
        excluded=graph.excluded(),
        items=len(matrix.items),
        engaged=engaged,
        version=version,
    )


class FeatureSnapshots:
    """The newest :class:`UserFeatures`, built again only when the feature store or the
    platform's users changed (one build at a time; readers of the old one keep it)."""

    def __init__(
        self,
        store: FeatureStore,
        graph: PlatformGraph,
        *,
        min_month: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.store = store
        self.graph = graph
        self.min_month = min_month
        self._lock = threading.Lock()
        self._current: UserFeatures | None = None

    def get(self) -> UserFeatures:
        with self._lock:
            version = (self.store.generation, self.graph.change_mark())
            if self._current is None or self._current.version != version:
                self._current = build_features(self.store, self.graph, min_month=self.min_month())
            return self._current

"""The lookalike builder on planted data: users of two tastes, a seed from one of them.

``UserFeatures`` is built by the real code (:func:`tfidf`, :func:`embed`) from feature rows
written here, so the structure is known exactly: the seed's taste group must come first.
"""

from __future__ import annotations

import numpy as np
from pyroaring import BitMap

from likewise.domain.lookalike import MobileOS
from likewise.lookalike.build import build_lookalike, eligible_users
from likewise.lookalike.features import Demographics, UserFeatures, embed, tfidf
from likewise.lookalike.models import centroid, pu_classifier
from likewise.store.features import FeatureMatrix

N = 4000
ITEMS = [f"creator:{i}" for i in range(40)]


def planted(seed: int = 0) -> tuple[UserFeatures, np.ndarray]:
    """Users 0..N-1; even users like creators 0-19, odd ones 20-39. Countries alternate in
    blocks (US, GB), OS by user id mod 3 (0: ios)."""
    rng = np.random.default_rng(seed)
    uid, item, w = [], [], []
    for u in range(N):
        base = 0 if u % 2 == 0 else 20
        for c in rng.choice(20, 4, replace=False):
            uid.append(u)
            item.append(base + c)
            w.append(float(rng.integers(1, 5)))
        if rng.random() < 0.3:  # some noise outside the taste
            uid.append(u)
            item.append(int(rng.integers(0, 40)))
            w.append(1.0)
    matrix = FeatureMatrix(
        np.array(uid, np.uint32), np.array(item, np.uint32), np.array(w, np.float32), ITEMS, 1
    )
    x = tfidf(matrix, N)
    codes = np.zeros((N, 5), np.uint8)
    codes[:, 0] = 1 + (np.arange(N) // 100) % 2  # country: 1 US, 2 GB
    codes[:, 1] = np.where(np.arange(N) % 3 == 0, 1, 2)  # os: 1 ios, 2 android
    labels = (
        ("unknown", "US", "GB"),
        ("unknown", "ios", "android"),
        ("unknown",),
        ("unknown",),
        ("unknown",),
    )
    demo = Demographics(codes, labels, codes[:, 0].astype(np.uint16), ("unknown", "US", "GB"))
    f = UserFeatures(
        n=N,
        embedding=embed(x, dim=8),
        demographics=demo,
        excluded=BitMap(),
        items=40,
        engaged=N,
        version=(1, 0),
    )
    return f, np.arange(N)


def test_the_seeds_taste_comes_first() -> None:
    f, _ = planted()
    seed = BitMap(range(0, 600, 2))  # 300 even users
    result = build_lookalike(
        f,
        seed,
        countries=["US", "GB"],
        os=MobileOS.ALL,
        share=0.1,
        include_source=False,
        excluded=BitMap(),
    )
    members = np.array(result.members.to_array())
    assert len(members) == round(0.1 * N)
    assert (members % 2 == 0).mean() > 0.95  # the even taste
    assert not (result.members & seed)
    r = result.report
    assert r.seed_size == 300 and r.held_out == 60
    # Half the other users share the taste and cannot be told apart: the best AUC is 0.75.
    assert r.auc is not None and 0.7 < r.auc < 0.8
    assert r.lift is not None and r.lift > 1.5  # top 10% of a 50% group: recall ~0.2, lift ~2
    assert {m.model for m in r.models} == {"centroid", "pu", "ensemble"}
    assert r.model in {"centroid", "pu", "ensemble"}


def test_eligibility_os_country_exclusion_and_include_source() -> None:
    f, _ = planted()
    excluded = BitMap(range(0, 4000, 7))
    seed = BitMap(range(0, 600, 2))
    result = build_lookalike(
        f,
        seed,
        countries=["GB"],
        os=MobileOS.IOS,
        share=0.2,
        include_source=True,
        excluded=excluded,
    )
    mask = eligible_users(f, ["GB"], MobileOS.IOS, excluded)
    eligible = BitMap(np.flatnonzero(mask).astype(np.uint32))
    assert result.members <= eligible
    assert not (result.members & excluded)
    for u in result.members:
        assert (u // 100) % 2 == 1 and u % 3 == 0  # GB and iOS
    assert (seed & eligible) <= result.members  # include_source: the eligible seed is in
    assert len(result.members - seed) == round(0.2 * len(eligible))


def test_deterministic_for_a_seed() -> None:
    f, _ = planted()
    seed = BitMap(range(1, 801, 2))
    kw = dict(
        countries=["US", "GB"], os=MobileOS.ALL, share=0.05, include_source=False, excluded=BitMap()
    )
    a = build_lookalike(f, seed, **kw)  # type: ignore[arg-type]
    b = build_lookalike(f, seed, **kw)  # type: ignore[arg-type]
    assert a.members == b.members and a.report == b.report
    other = build_lookalike(f, BitMap(range(1, 803, 2)), **kw)  # type: ignore[arg-type]
    assert other.report != a.report or other.members != a.members


def test_a_seed_outside_the_locations_has_no_quality_numbers() -> None:
    f, _ = planted()
    seed = BitMap(u for u in range(0, 4000, 2) if (u // 100) % 2 == 0)  # US only
    result = build_lookalike(
        f,
        seed,
        countries=["GB"],
        os=MobileOS.ALL,
        share=0.1,
        include_source=False,
        excluded=BitMap(),
    )
    assert result.report.recall is None and "cannot be measured" in result.report.note
    assert len(result.members) == round(0.1 * 2000)
    assert (np.array(result.members.to_array()) % 2 == 0).mean() > 0.9  # still the taste


def test_models_are_linear_and_demographics_only_ignores_taste() -> None:
    f, _ = planted()
    seed = np.arange(0, 600, 2)
    rest = np.arange(600, N)
    c = centroid(f, seed)
    s = c.score(f)
    assert s[0::2].mean() > s[1::2].mean() + 0.5
    demo = pu_classifier(f, seed, rest, np.random.default_rng(0), embedding=False)
    assert not demo.w.any()
    d = demo.score(f)
    # Taste is invisible to it: even and odd users score alike.
    assert abs(d[0::2].mean() - d[1::2].mean()) < 0.2


def test_one_item_learns_no_embedding_and_demographics_still_rank() -> None:
    """One item: no embedding can be learned; the builder still ranks on demographics."""
    n = 400
    matrix = FeatureMatrix(
        np.arange(n, dtype=np.uint32),
        np.zeros(n, np.uint32),
        np.ones(n, np.float32),
        ["category:x"],
        1,
    )
    embedding = embed(tfidf(matrix, n))
    assert embedding.shape == (n, 0)
    codes = np.zeros((n, 5), np.uint8)
    codes[:, 0] = 1  # everyone in the US
    codes[:, 1] = 1 + np.arange(n) % 2  # even users iOS, odd Android
    labels = (
        ("unknown", "US"),
        ("unknown", "ios", "android"),
        ("unknown",),
        ("unknown",),
        ("unknown",),
    )
    demo = Demographics(codes, labels, codes[:, 0].astype(np.uint16), ("unknown", "US"))
    f = UserFeatures(
        n=n,
        embedding=embedding,
        demographics=demo,
        excluded=BitMap(),
        items=1,
        engaged=n,
        version=(1, 0),
    )
    seed = BitMap(range(0, 200, 2))  # 100 iOS users
    result = build_lookalike(
        f,
        seed,
        countries=["US"],
        os=MobileOS.ALL,
        share=0.25,
        include_source=False,
        excluded=BitMap(),
    )
    members = np.array(result.members.to_array())
    assert len(members) == 100 and not (result.members & seed)
    assert (members % 2 == 0).all()  # the seed's OS: the only signal there is

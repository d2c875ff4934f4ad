"""Build a lookalike: hold part of the seed out, measure the models, expand the best one.

1. **Eligible** users: in the chosen countries, on the chosen OS, not opted out nor erased.
   The lookalike's size is the tier's share of them: ``n = round(share * eligible)``.
2. **Quality**: a deterministic fifth of the seed is held out; every model (centroid,
   PU classifier, their ensemble) is fitted on the rest and ranks the eligible users outside the
   training part. The report gives, for each, recall of the held-out members in the top ``n``,
   lift (that recall over ``n`` / candidates: what a random pick of ``n`` would find) and AUC.
   Seeds too small to hold any out are reported without numbers.
3. **Members**: the model with the best held-out recall at the lookalike's size (by AUC when
   fewer than 200 members are held out: recall is noise then) is fitted again on the whole
   seed, and the top ``n`` eligible non-seed users are the lookalike, plus the seed's eligible
   members when ``include_source``.

Everything random comes from a generator seeded by the seed's members, so the same seed and
features give the same lookalike and report.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pyroaring import BitMap
from sklearn.metrics import roc_auc_score

from likewise.domain.lookalike import MobileOS
from likewise.lookalike.features import UserFeatures
from likewise.lookalike.models import LinearScorer, centroid, ensemble, pu_classifier

HOLDOUT = 0.2
MIN_HELD_OUT = 5  # fewer held-out members than this: no quality numbers
MIN_HELD_FOR_RECALL = 200  # held-out members needed to choose a model by recall, not AUC
AUC_NEGATIVES = 200_000
STANDARDISE_SAMPLE = 100_000
MODELS = ("centroid", "pu", "ensemble")


@dataclass(frozen=True)
class ModelQuality:
    model: str
    recall: float | None
    lift: float | None
    auc: float | None


@dataclass(frozen=True)
class QualityReport:
    seed_size: int  # usable seed members
    held_out: int  # held-out members among the eligible users
    size: int  # the lookalike's size without the seed
    eligible: int
    share: float
    model: str  # the model the lookalike uses
    recall: float | None
    lift: float | None
    auc: float | None
    models: list[ModelQuality] = field(default_factory=list)
    features_users: int = 0  # users with engagement features
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Lookalike:
    members: BitMap
    report: QualityReport


def eligible_users(
    f: UserFeatures, countries: Sequence[str], os: MobileOS, excluded: BitMap
) -> np.ndarray:
    """Boolean mask over users: in ``countries``, on ``os``, not excluded."""
    demo = f.demographics
    codes = [i for i, c in enumerate(demo.countries) if c in set(countries)]
    mask = np.isin(demo.country, np.array(codes, np.uint16)) if codes else np.zeros(f.n, bool)
    if os is not MobileOS.ALL:
        labels = demo.labels[1]  # os
        want = os.value.lower()
        os_codes = [i for i, label in enumerate(labels) if label.lower() == want]
        mask &= np.isin(demo.codes[:, 1], np.array(os_codes, np.uint8))
    gone = np.asarray(excluded.to_array(), np.int64)
    gone = gone[gone < f.n]
    mask[gone] = False
    return mask


def rng_for(seed: BitMap) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(seed.serialize()))


def _fit(
    names: Sequence[str],
    f: UserFeatures,
    train: np.ndarray,
    unlabelled: np.ndarray,
    sample: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, LinearScorer]:
    """The named models fitted on ``train``; the ensemble reuses the other two (the PU
    classifier is the costly one: fitted once)."""
    out: dict[str, LinearScorer] = {}
    c = centroid(f, train)
    pu = pu_classifier(f, train, unlabelled, rng) if {"pu", "ensemble"} & set(names) else None
    for name in names:
        if name == "centroid":
            out[name] = c
        elif name == "pu":
            assert pu is not None
            out[name] = pu
        else:
            assert pu is not None
            out[name] = ensemble(c, pu, f, sample)
    return out


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest scores; among equal scores the lower position wins, so
    the cut is deterministic. Linear time (a partition, not a sort)."""
    if n <= 0:
        return np.zeros(0, np.int64)
    if n >= len(scores):
        return np.arange(len(scores))
    kth = len(scores) - n
    threshold = np.partition(scores, kth)[kth]
    above = np.flatnonzero(scores > threshold)
    ties = np.flatnonzero(scores == threshold)[: n - len(above)]
    return np.concatenate([above, ties])


def _measure(
    name: str,
    scores: np.ndarray,
    candidates: np.ndarray,
    held: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> ModelQuality:
    """Quality of one model's ``scores`` of ``candidates``; ``held`` marks (over all users)
    the held-out seed members among them."""
    is_held = held[candidates]
    top = _top(scores, n)
    found = int(is_held[top].sum())
    recall = found / int(is_held.sum())
    lift = recall / (n / len(candidates)) if n and len(candidates) else None
    negatives = np.flatnonzero(~is_held)
    if len(negatives) > AUC_NEGATIVES:
        negatives = rng.choice(negatives, AUC_NEGATIVES, replace=False)
    positives = np.flatnonzero(is_held)
    auc = None
    if len(negatives) and len(positives):
        y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
        s = np.concatenate([scores[positives], scores[negatives]])
        auc = float(roc_auc_score(y, s))
    return ModelQuality(name, round(recall, 4), _round(lift), _round(auc))


def _merit(r: ModelQuality, held: int, models: Sequence[str]) -> tuple[float, float, int]:
    """How a model ranks for the choice: with enough held-out members, by recall at the
    lookalike's size (what the tier delivers: the best model at 1 % is not the best at 10 %),
    then AUC; with few, recall is noise: by AUC. Ties go to the earlier model."""
    recall = r.recall or 0.0
    auc = r.auc or 0.0
    if held >= MIN_HELD_FOR_RECALL:
        return (recall, auc, -models.index(r.model))
    return (auc, recall, -models.index(r.model))


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def build_lookalike(
    f: UserFeatures,
    seed: BitMap,
    *,
    countries: Sequence[str],
    os: MobileOS,
    share: float,
    include_source: bool,
    excluded: BitMap,
    models: Sequence[str] = MODELS,
    holdout: float = HOLDOUT,
) -> Lookalike:
    """The lookalike of ``seed`` (usable members: opted-out and erased users already removed)
    and its quality report."""
    rng = rng_for(seed)
    seed_ids = np.asarray(seed.to_array(), np.int64)
    seed_ids = seed_ids[seed_ids < f.n]
    mask = eligible_users(f, countries, os, excluded)
    eligible = int(mask.sum())
    size = round(share * eligible)
    in_seed = np.zeros(f.n, bool)
    in_seed[seed_ids] = True

    # Quality: fit on most of the seed, rank the rest of the eligible users.
    shuffled = rng.permutation(seed_ids)
    n_held = int(len(shuffled) * holdout)
    held, train = np.sort(shuffled[:n_held]), np.sort(shuffled[n_held:])
    in_train = np.zeros(f.n, bool)
    in_train[train] = True
    q_candidates = np.flatnonzero(mask & ~in_train)
    held_eligible = held[mask[held]]
    is_held = np.zeros(f.n, bool)
    is_held[held_eligible] = True
    unlabelled_q = q_candidates[~is_held[q_candidates]]
    sample = _sample(q_candidates, rng)
    results: list[ModelQuality] = []
    note = ""
    if len(held_eligible) >= MIN_HELD_OUT and len(unlabelled_q):
        for name, scorer in _fit(models, f, train, unlabelled_q, sample, rng).items():
            scores = scorer.score(f, q_candidates)
            results.append(_measure(name, scores, q_candidates, is_held, size, rng))
        best = max(results, key=lambda r: _merit(r, len(held_eligible), models))
        chosen = best.model
    else:
        chosen = "ensemble" if "ensemble" in models else models[0]
        note = (
            f"fewer than {MIN_HELD_OUT} held-out seed members are eligible (in the chosen "
            "locations and OS): quality cannot be measured"
        )
        best = ModelQuality(chosen, None, None, None)

    # Members: the chosen model on the whole seed.
    candidates = np.flatnonzero(mask & ~in_seed)
    scorer = _fit([chosen], f, seed_ids, candidates, _sample(candidates, rng), rng)[chosen]
    top = candidates[_top(scorer.score(f, candidates), size)] if len(candidates) else candidates
    members = BitMap(top.astype(np.uint32))
    if include_source:
        members |= BitMap(seed_ids[mask[seed_ids]].astype(np.uint32))
    report = QualityReport(
        seed_size=len(seed_ids),
        held_out=len(held_eligible),
        size=len(top),
        eligible=eligible,
        share=share,
        model=chosen,
        recall=best.recall,
        lift=best.lift,
        auc=best.auc,
        models=results,
        features_users=f.engaged,
        note=note,
    )
    return Lookalike(members, report)


def _sample(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(ids) <= STANDARDISE_SAMPLE:
        return ids
    return np.sort(rng.choice(ids, STANDARDISE_SAMPLE, replace=False))

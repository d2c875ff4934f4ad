"""Lookalike audiences: features, models, expansion and quality evaluation.

:mod:`~likewise.lookalike.features` turns the feature store (what users engage with) and the
platform's user attributes into a :class:`~likewise.lookalike.features.UserFeatures` snapshot
with a learned user embedding; :mod:`~likewise.lookalike.models` fits per-seed scorers on it;
:mod:`~likewise.lookalike.build` holds part of the seed out, measures each scorer, and expands
the chosen one to the requested share of the eligible population.
"""

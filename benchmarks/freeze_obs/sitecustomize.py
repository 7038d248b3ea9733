"""Experiment hook, not part of trpo-ng: stop the observation normaliser's updates late in a run.

With this folder on ``PYTHONPATH``, Python imports this file at start-up, in ``learn.py`` and in
each run it starts. With ``TRPO_FREEZE_OBS_AFTER=S`` and ``TRPO_BATCH_STEPS=B`` set, the
normaliser merges the first ``S // B`` batches (``B`` env steps each) and ignores the rest, as
VecNormalize with ``training = False`` would from then on; unset, it changes nothing. Used for
the "observation normaliser frozen late" runs in benchmarks/RESULTS.md, e.g.:

    TRPO_FREEZE_OBS_AFTER=750000 TRPO_BATCH_STEPS=2048 PYTHONPATH=benchmarks/freeze_obs \\
        python benchmarks/learn.py configs/walker2d.yaml --seeds 0 --steps 1000000
"""

from __future__ import annotations

import os

import numpy as np

_AFTER = os.environ.get("TRPO_FREEZE_OBS_AFTER")

if _AFTER:
    from trpo_ng.normalization import ObservationNormalizer

    _merged_batches = int(_AFTER) // int(os.environ["TRPO_BATCH_STEPS"])
    _update = ObservationNormalizer.update
    _calls = [0]

    def _update_until_frozen(self: ObservationNormalizer, obs_BD: np.ndarray) -> None:
        _calls[0] += 1
        if _calls[0] <= _merged_batches:
            _update(self, obs_BD)

    ObservationNormalizer.update = _update_until_frozen  # type: ignore[method-assign]

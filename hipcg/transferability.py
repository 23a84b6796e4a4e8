"""How much better than doing nothing: noise floor, null model and transferability score.

For every state point and model (docs/evaluation.md, "Transferability score"), on the same
RDF bins:

* **noise floor** -- the mapped atomistic RDF of the first half of the reference frames against
  that of the second half (contiguous, so the halves are as independent as the run allows):
  what two equally long samples of the *same* state disagree by.
* **null model** -- the atomistic RDF of the nearest trained state point (temperature, then
  pressure) used as the prediction for this one: what a model that does not respond to the
  state at all would score.
* **score** = (null - model) / (null - floor): 1 = as good as the reference against itself,
  0 = no better than reusing the training state's RDF, < 0 = worse than that.  Undefined
  (None) at trained points, and when null <= floor (the two states' structures do not
  separate beyond the noise: nothing to transfer).

All three errors use the RDF error of :func:`hipcg.analysis.rdf_error` (mean |g - g_ref|, max
over type pairs) on the range the compared RDFs share.
"""

from __future__ import annotations

import math

import numpy as np

from . import analysis as A

SEPARATION_FACTOR = 3.0  # a held-out state should differ from the trained one by >= 3x the floor


def max_error(rdfs: dict, reference: dict, n_bins: int | None = None) -> float | None:
    """Largest RDF error over the type pairs both sides have, on the first ``n_bins`` bins."""
    errors = []
    for key, ref in reference.items():
        if key in rdfs:
            n = min(len(rdfs[key].g), len(ref.g), n_bins or len(ref.g))
            errors.append(A.rdf_error(rdfs[key].g[:n], ref.g[:n]))
    errors = [e for e in errors if math.isfinite(e)]
    return max(errors) if errors else None


def noise_floor(halves: tuple[dict, dict] | None, n_bins: int | None = None) -> float | None:
    """The reference against itself: first half of the frames against the second."""
    if not halves:
        return None
    return max_error(halves[0], halves[1], n_bins)


def nearest_trained(row: dict, rows: list[dict]) -> dict | None:
    """The trained state point closest in temperature (then pressure) to ``row``."""
    trained = [r for r in rows if r["trained"] and r is not row]
    if not trained:
        return None
    return min(trained, key=lambda r: (abs(r["temperature"] - row["temperature"]),
                                       abs((r.get("pressure") or 1.0) - (row.get("pressure") or 1.0))))


def score(model: float | None, null: float | None, floor: float | None) -> float | None:
    if None in (model, null, floor) or not null > floor:
        return None
    return (null - model) / (null - floor)


def _bins(*rdf_dicts: dict) -> int:
    """Bins all the given RDF sets share (the shortest range among them)."""
    return min(len(r.g) for d in rdf_dicts for r in d.values())


def add_scores(state_points: list[dict]) -> None:
    """Fill ``rdf_noise_floor``, ``rdf_null``, ``null_from``, ``rdf_error_common`` and
    ``transferability_score`` into every model entry of every state point (in place).

    ``state_points`` are :func:`hipcg.evaluate.evaluate` rows (before JSON conversion): each
    has ``reference[model]`` with ``rdfs`` and ``rdf_halves``, and ``models[model]["nvt"]``
    with ``rdfs`` when the CG run did not blow up.
    """
    for row in state_points:
        donor = nearest_trained(row, state_points)
        for name, entry in row["models"].items():
            ref = row["reference"][name]
            nvt = entry.get("nvt") or {}
            cg = nvt.get("rdfs") if not nvt.get("blew_up") else None
            out = {"rdf_noise_floor": noise_floor(ref.get("rdf_halves")), "rdf_null": None,
                   "null_from": None, "rdf_error_common": None, "transferability_score": None,
                   "separation": None}
            if not row["trained"] and donor is not None:
                donor_ref = donor["reference"][name]["rdfs"]
                sets = [ref["rdfs"], donor_ref, *(ref.get("rdf_halves") or ())] + ([cg] if cg else [])
                n = _bins(*sets)
                floor = noise_floor(ref.get("rdf_halves"), n)
                null = max_error(donor_ref, ref["rdfs"], n)
                model = max_error(cg, ref["rdfs"], n) if cg else None
                out.update(rdf_noise_floor=floor, rdf_null=null, null_from=donor["name"],
                           rdf_error_common=model, transferability_score=score(model, null, floor),
                           separation=None if not floor else null / floor)
            entry.update(out)


def inside_noise(model: float | None, null: float | None, floor: float | None) -> bool:
    """The model's RDF error and the null model's differ by less than the noise floor."""
    if None in (model, null, floor):
        return False
    return bool(np.abs(null - model) < floor)

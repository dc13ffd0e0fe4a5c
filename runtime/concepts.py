"""Concept scores on the device from the bundle's FastCAV vectors: no PyTorch."""

from __future__ import annotations

import numpy as np


class ConceptScorer:
    def __init__(self, concepts: dict):
        self.names = list(concepts["names"])
        self.cavs = np.asarray(concepts["cavs"], np.float64)
        self.means = np.asarray(concepts["means"], np.float64)
        self.projections = np.asarray(concepts["head_projections"], np.float64)

    def score(self, embedding: np.ndarray, target: int, class_names) -> dict:
        """Per concept: cosine similarity of the centred embedding (FastCAV's centring) with the CAV, and
        the directional derivative of the target class logit along the CAV (W_c . v, exact for the
        linear head, so the same for every image of that class)."""
        centred = embedding.astype(np.float64)[None, :] - self.means
        cosine = (centred * self.cavs).sum(axis=1) / (np.linalg.norm(centred, axis=1) + 1e-12)
        return {"class": class_names[target], "scores": {
            name: {"cosine": float(cosine[i]), "directional_derivative": float(self.projections[target, i])}
            for i, name in enumerate(self.names)}}


def tcav_scores(concepts: list[dict]) -> dict:
    """Per explained class and concept: the share of images with a positive directional derivative. `concepts`:
    each image's `Result.concepts` (the report's "concepts")."""
    by_class: dict[str, list[dict]] = {}
    for scored in concepts:
        if scored:
            by_class.setdefault(scored["class"], []).append(scored["scores"])
    return {label: {"images": len(rows), "tcav": {
        concept: float(np.mean([row[concept]["directional_derivative"] > 0 for row in rows])) for concept in rows[0]}}
        for label, rows in by_class.items()}

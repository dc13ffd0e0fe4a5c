"""Where does the colour count's correlation with PH2's dermatologists stop, and what would lift it? On PH2's dev
half, cross-validated as `abcd_agreement.py` does (nested, 5 folds, 5 repeats): the shipped way (the sum of the six
colour rules' decisions), the count fitted directly (an ordinal rule for 1, 2, 3 or more colours), the sum taking at
least one brown, and two what-ifs that replace rules by the dermatologists' own answers: the two browns right, or
the four other colours right.

Reproduces "The colour count" in docs/abcde.md: `python -m studies.colour_count ../shared/data/real/ph2` (about a
CPU minute on 2 cores)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from melanomanet.abcd_rules import REPEATS, cross_validated, design, ph2_records
from melanomanet.data.ph2 import COLOURS

BROWNS = ("light_brown", "dark_brown")


def correlation(truth: np.ndarray, counts: list[np.ndarray]) -> float:
    return float(np.mean([np.corrcoef(truth, count)[0, 1] for count in counts]))


def main(ph2: Annotated[Path, typer.Argument(help="A PH2 folder with the dermatologists' annotations.")]):
    measured = [record for record in ph2_records(ph2) if record["features"] is not None]
    _, features = design(measured)
    truth = {colour: np.array([record["targets"][colour] for record in measured]) for colour in COLOURS}
    count = sum(truth.values())
    decided = {colour: cross_validated(features, truth[colour], "binary") for colour in COLOURS}
    fitted_count = cross_validated(features, np.minimum(count - 1, 2), "ordinal")

    def summed(repeat: int, answers: dict | None = None) -> np.ndarray:
        return sum((answers or {}).get(colour, decided[colour][repeat]) for colour in COLOURS)

    others = {colour: truth[colour] for colour in COLOURS if colour not in BROWNS}
    rows = {
        "sum of the six colour rules (shipped)": [summed(r) for r in range(REPEATS)],
        "count fitted directly (ordinal: 1, 2, 3+)": [1 + run for run in fitted_count],
        "sum, at least one brown": [summed(r) - sum(decided[b][r] for b in BROWNS)
                                    + np.maximum(1, sum(decided[b][r] for b in BROWNS)) for r in range(REPEATS)],
        "what if both browns were right": [summed(r, {b: truth[b] for b in BROWNS}) for r in range(REPEATS)],
        "what if the other four were right": [summed(r, others) for r in range(REPEATS)],
    }
    print(f"PH2 dev half, {len(measured)} measured; colours per lesion {np.bincount(count).tolist()} (0, 1, 2, ...)")
    for name, counts in rows.items():
        print(f"  {name:44s} r = {correlation(count, counts):.2f}")


if __name__ == "__main__":
    typer.run(main)

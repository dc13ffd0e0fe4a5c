"""The decision rules fitted to PH2's dermatologists (`melanomanet/abcd_rules.py`; plain numbers in
`models/abcd_rules.json`): the asymmetry score, the colours present and the dermoscopic structures, from
`features.py`. Each rule carries its cross-validated agreement with the dermatologists."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from runtime.errors import ManifestError

RULES_FILE = Path(__file__).parent / "models" / "abcd_rules.json"
COLOURS = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")
STRUCTURES = ("atypical_network", "dots_globules", "streaks", "regression", "blue_whitish_veil")
TARGET_KINDS = {"asymmetry": "ordinal", **{c: "binary" for c in COLOURS}, **{s: "binary" for s in STRUCTURES}}
# Stolz's D counts five structures; PH2 annotates a pigment network, dots/globules together and streaks, not
# structureless areas. Those measured reliably count; the rest leave the D term (and the TDS) a lower bound.
STOLZ_STRUCTURES = ("pigment network", "structureless areas", "branched streaks", "dots", "globules")


@lru_cache(maxsize=1)
def load_rules(path: Path = RULES_FILE) -> dict:
    try:
        rules = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ManifestError(f"{path}: the ABCD decision rules cannot be read ({error}); reinstall the package (or "
                            "refit them: mnet fit-abcd PH2_FOLDER)") from None
    missing = sorted(set(TARGET_KINDS) - set(rules.get("targets", {})))
    if missing:
        raise ManifestError(f"{path}: no rule for {', '.join(missing)}; refit them: mnet fit-abcd PH2_FOLDER")
    return rules


def decide(rule: dict, values: np.ndarray) -> int:
    """The class a fitted rule gives the features `values`: binary, 1 when the logistic probability reaches the
    rule's threshold; ordinal (the asymmetry score), how many of its steps (>= 1, >= 2) are reached in turn."""
    if rule["kind"] == "ordinal":
        first, second = (decide(step, values) for step in rule["steps"])
        return first + (first and second)
    standard = (np.asarray(values, np.float64) - rule["mean"]) / np.asarray(rule["scale"])
    logit = float(np.asarray(rule["coef"]) @ standard + rule["intercept"])
    threshold = rule["threshold"]
    return int(logit >= np.log(threshold / (1 - threshold)))  # the probability reaches the threshold


def readings(features: dict[str, float]) -> dict:
    """Asymmetry points, the colours present and the structures present, each among those shown only (their
    agreement with the dermatologists reaches the bar, `shown` in the rules file), as fitted."""
    rules = load_rules()
    values = np.array([features[name] for name in rules["features"]])
    decided = {target: decide(rule, values) for target, rule in rules["targets"].items()}
    shown = [s for s in STRUCTURES if rules["targets"][s].get("shown")]
    return {"asymmetry": decided["asymmetry"], "colours": [c for c in reliable_colours() if decided[c]],
            "structures": {s: bool(decided[s]) for s in shown}, "not_shown": [s for s in STRUCTURES if s not in shown]}


def reliable_colours() -> tuple[str, ...]:
    """The dermoscopic colours reported: those whose rule agrees with PH2's dermatologists at the bar the
    structures meet (kappa >= 0.4, `shown`); the others are `not_measured`, and count in neither C nor a score."""
    targets = load_rules()["targets"]
    return tuple(c for c in COLOURS if targets[c].get("shown"))


def agreement_of(target: str) -> dict:
    return load_rules()["targets"][target]["cross_validated"]


# The structures measured here that are among Stolz's five (PH2's streaks are the branched streaks of the rule).
COUNTED_IN_D = {"streaks": "branched streaks"}
TDS_NOTE = ("1.3 x A + 0.1 x B + 0.5 x C + 0.5 x D, with D counting only the structures measured here with "
            "kappa >= 0.4 against dermatologists; the others are not measured, so D and the score are lower bounds "
            "and must not be read against the TDS cut-offs (4.75, 5.45) as a complete score.")


def total_dermoscopy_score(points: int, cutoffs: int, colour_count: int, structures: dict[str, bool]) -> dict:
    """Stolz's TDS from what was measured; `complete` only when all five D structures were."""
    measured = [COUNTED_IN_D[s] for s in structures if s in COUNTED_IN_D]
    present = sum(bool(structures[s]) for s in structures if s in COUNTED_IN_D)
    unmeasured = [s for s in STOLZ_STRUCTURES if s not in measured]
    return {"value": round(1.3 * points + 0.1 * cutoffs + 0.5 * colour_count + 0.5 * present, 2),
            "complete": not unmeasured, "d_measured": measured, "d_not_measured": unmeasured,
            "note": TDS_NOTE if unmeasured else "Stolz's Total Dermoscopy Score, every term measured."}

"""The review decision. Its uncertainty rule (which score flags an image, above which threshold, and how that
threshold was chosen) travels in the manifest (`referral`); bundles without one use the paper's default. Beside
the rule, two triggers always refer, whatever the rule: a malignant top prediction (the safety net: a melanoma is
never shown under "no referral") and an input far from the training domain (a greyscale image)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from runtime.errors import ManifestError

DEFAULT_FLAG_THRESHOLD = 0.5
UNCERTAINTY_SCORES = ("predictive", "epistemic", "max_probability")
SCORES = UNCERTAINTY_SCORES + ("class_probability",)
SCORE_LABELS = {"predictive": "entropy", "epistemic": "mutual information", "max_probability": "1 - max p",
                "class_probability": "p"}
DEFAULT_CHOSEN_BY = "the paper's default, not chosen on data"
# Classes whose top prediction always refers: the malignant ones, and AK, pre-malignant (a precursor of SCC).
MALIGNANT_CLASSES = ("MEL", "BCC", "SCC", "AK")
PRE_MALIGNANT_CLASSES = ("AK",)


@dataclass(frozen=True)
class ReferralRule:
    """Refer when the score exceeds the threshold; for `class_probability`, when that class's probability
    (dropout off) reaches it."""

    score: str = "predictive"
    threshold: float = DEFAULT_FLAG_THRESHOLD
    class_name: str | None = None
    chosen_by: str = DEFAULT_CHOSEN_BY

    def __post_init__(self):
        if self.score not in SCORES:
            raise ManifestError(f"referral score {self.score!r} is not one of {', '.join(SCORES)}")
        if (self.score == "class_probability") != (self.class_name is not None):
            raise ManifestError("a referral rule names a class exactly when its score is class_probability")
        if not np.isfinite(self.threshold):
            raise ManifestError(f"referral threshold {self.threshold!r} is not a number")

    @classmethod
    def from_dict(cls, raw: dict | None, legacy_threshold: float = DEFAULT_FLAG_THRESHOLD) -> "ReferralRule":
        if not raw:
            return cls(threshold=legacy_threshold)
        try:
            return cls(score=raw["score"], threshold=float(raw["threshold"]), class_name=raw.get("class_name"),
                       chosen_by=str(raw.get("chosen_by", "")))
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"the manifest's referral rule {raw!r} is malformed ({error})") from None

    def to_dict(self) -> dict:
        return asdict(self)

    def value(self, uncertainty, probabilities: np.ndarray, class_names) -> float:
        if self.score == "class_probability":
            return float(probabilities[list(class_names).index(self.class_name)])
        if self.score == "max_probability":
            return float(1 - uncertainty.mean_probabilities.max())
        return float(getattr(uncertainty, self.score))

    def refers(self, value: float) -> bool:
        return value >= self.threshold if self.score == "class_probability" else value > self.threshold

    def describe(self, value: float) -> str:
        """'entropy 1.23 > 0.80, chosen for a 20 % referral rate on validation'."""
        name = SCORE_LABELS[self.score] + (f"({self.class_name})" if self.class_name else "")
        inclusive = self.score == "class_probability"
        relation = {(True, True): ">=", (True, False): ">", (False, True): "<", (False, False): "<="}[
            (self.refers(value), inclusive)]
        return f"{name} {value:.2f} {relation} {self.threshold:.2f}, {self.chosen_by}"


def review(rule: ReferralRule, uncertainty, probabilities: np.ndarray, class_names, input_warnings=()) -> dict:
    """The decision and every trigger that fired: a malignant or pre-malignant top prediction, the rule, an input
    warning (`runtime.domain`). JSON keys: the rule's, `value` (its score), `flagged`, `reason` (one line),
    `triggers` ({kind, label, detail} each; `label`: the trigger in a few words, as `review_reasons` lists it)."""
    value = rule.value(uncertainty, probabilities, class_names)
    label = class_names[int(np.argmax(probabilities))]
    triggers = []
    if label in MALIGNANT_CLASSES:
        kind = "pre-malignant" if label in PRE_MALIGNANT_CLASSES else "malignant"
        triggers.append({"kind": "malignant_prediction", "label": f"{kind} class {label}",
                         "detail": f"top prediction {label} is a {kind} class (always referred)"})
    if rule.refers(value):
        short = f"{rule.class_name} threshold" if rule.class_name else f"uncertainty ({SCORE_LABELS[rule.score]})"
        triggers.append({"kind": rule.score, "label": short, "detail": rule.describe(value)})
    triggers += [{"kind": "input_domain", "label": warning["kind"].replace("_", " "), "detail": warning["detail"]}
                 for warning in input_warnings]
    reason = "; ".join(trigger["detail"] for trigger in triggers) if triggers else (
        f"no trigger fired: {rule.describe(value)}; top prediction {label} is not a malignant or pre-malignant "
        "class")
    return {**rule.to_dict(), "value": value, "flagged": bool(triggers), "reason": reason, "triggers": triggers}


def review_reasons(referral: dict | None) -> str:
    """Each trigger that referred an image, in a few words ("not dermoscopy; MEL threshold"): the
    `review_reasons` column of summary.csv and the terminal table. Empty: none fired."""
    return "; ".join(trigger.get("label", trigger["kind"]) for trigger in (referral or {}).get("triggers", []))

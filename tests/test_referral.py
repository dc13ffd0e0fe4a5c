"""The review decision (runtime/referral.py, runtime/domain.py): a malignant top prediction is always referred,
whatever the uncertainty rule says; an input far from colour dermoscopy is referred and says why; "no referral"
is said only when no trigger fired, and never drawn in green."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.domain import GREYSCALE, NOT_DERMOSCOPY, domain_warnings
from runtime.manifest import CLASS_NAMES
from runtime.referral import MALIGNANT_CLASSES, PRE_MALIGNANT_CLASSES, ReferralRule, review, review_reasons
from runtime.uncertainty import Uncertainty
from tests.conftest import SAMPLES, SHARED_DATA


def confident(label: str, p: float = 0.74) -> tuple[Uncertainty, np.ndarray]:
    probabilities = np.full(len(CLASS_NAMES), (1 - p) / (len(CLASS_NAMES) - 1))
    probabilities[CLASS_NAMES.index(label)] = p
    entropy = float(-(probabilities * np.log(probabilities)).sum())
    return Uncertainty(probabilities, np.zeros_like(probabilities), entropy, entropy, 0.0, 10), probabilities


@pytest.mark.parametrize("label", MALIGNANT_CLASSES)
def test_a_malignant_top_prediction_is_referred_however_certain(label):
    """ISIC_0034500 once showed "MEL p = 0.74" under a green "no referral": entropy 0.68 <= 0.72."""
    uncertainty, probabilities = confident(label)
    rule = ReferralRule(threshold=uncertainty.predictive + 0.05, chosen_by="chosen on validation")
    decision = review(rule, uncertainty, probabilities, CLASS_NAMES)
    assert decision["flagged"] is True
    assert [trigger["kind"] for trigger in decision["triggers"]] == ["malignant_prediction"]
    kind = "pre-malignant" if label in PRE_MALIGNANT_CLASSES else "malignant"
    assert f"top prediction {label} is a {kind} class" in decision["reason"]
    assert review_reasons(decision) == f"{kind} class {label}"


def test_actinic_keratosis_is_called_pre_malignant_not_malignant():
    uncertainty, probabilities = confident("AK")
    decision = review(ReferralRule(threshold=9.0), uncertainty, probabilities, CLASS_NAMES)
    assert "AK is a pre-malignant class" in decision["reason"] and "a malignant class" not in decision["reason"]


def test_a_benign_confident_prediction_says_no_trigger_fired():
    uncertainty, probabilities = confident("NV", 0.95)
    decision = review(ReferralRule(), uncertainty, probabilities, CLASS_NAMES)
    assert decision["flagged"] is False and decision["triggers"] == []
    assert decision["reason"].startswith("no trigger fired: entropy")
    assert "NV is not a malignant or pre-malignant class" in decision["reason"]
    assert review_reasons(decision) == "" and review_reasons(None) == ""


def test_every_trigger_that_fired_is_named():
    uncertainty, probabilities = confident("MEL", 0.3)
    warning = {"kind": GREYSCALE, "detail": "the image has no colour"}
    decision = review(ReferralRule(threshold=0.5), uncertainty, probabilities, CLASS_NAMES, [warning])
    assert [trigger["kind"] for trigger in decision["triggers"]] == ["malignant_prediction", "predictive",
                                                                      "input_domain"]
    assert decision["reason"].count(";") == 2
    assert review_reasons(decision) == "malignant class MEL; uncertainty (entropy); greyscale"


def test_the_melanoma_threshold_and_a_phone_photo_are_named_as_reasons():
    uncertainty, probabilities = confident("NV", 0.8)
    rule = ReferralRule("class_probability", 0.01, "MEL", "chosen for MEL sensitivity >= 0.95 on validation")
    warning = {"kind": NOT_DERMOSCOPY, "detail": "the image does not look like dermoscopy"}
    decision = review(rule, uncertainty, probabilities, CLASS_NAMES, [warning])
    assert review_reasons(decision) == "MEL threshold; not dermoscopy"


def test_greyscale_is_out_of_domain_and_colour_dermoscopy_is_not():
    colour = cv2.cvtColor(cv2.imread(str(SAMPLES / "ISIC_0034376.jpg")), cv2.COLOR_BGR2RGB)
    grey = np.repeat(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert domain_warnings(colour) == []
    assert domain_warnings(grey)[0]["kind"] == GREYSCALE and "greyscale" in domain_warnings(grey)[0]["detail"]
    noisy = np.clip(grey.astype(np.int16) + np.random.default_rng(0).integers(-2, 3, grey.shape), 0, 255)
    assert domain_warnings(noisy.astype(np.uint8)), "JPEG-like noise on a grey image is still grey"


@pytest.mark.slow
def test_a_greyscale_tiff_is_referred_and_no_badge_is_green(bundle, tmp_path):
    from runtime.draw import GREEN, MUTED, RED
    from runtime.predictor import Predictor
    from runtime.report.panel import GAP, WIDTH, render_panel

    grey = cv2.cvtColor(cv2.imread(str(SAMPLES / "ISIC_0034390.jpg")), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "grey.tif"), grey)
    predictor = Predictor(bundle, mc_samples=4)
    result = predictor.predict(tmp_path / "grey.tif")
    assert result.referral["flagged"] and result.uncertainty.flagged
    assert "input_domain" in [trigger["kind"] for trigger in result.referral["triggers"]]
    assert result.to_dict()["referral"]["triggers"] == result.referral["triggers"]
    for image in SAMPLES.glob("*.jpg"):
        shown = predictor.predict(image)
        top = 30 if shown.is_demo else 0
        badge = tuple(int(v) for v in render_panel(shown)[top + 16, WIDTH - GAP - 3])
        assert badge == (RED if shown.uncertainty.flagged else MUTED) and badge != GREEN
        if shown.label in MALIGNANT_CLASSES:
            assert shown.uncertainty.flagged


def test_the_shipped_samples_are_dermoscopy_to_the_domain_check():
    for path in sorted(SAMPLES.glob("*.jpg")):
        assert domain_warnings(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)) == [], path


@pytest.mark.skipif(not (SHARED_DATA / "real" / "pad-ufes-20").is_dir(), reason="../shared/data/real not beside "
                                                                                 "the checkout")
def test_phone_photos_are_flagged_and_dermoscopy_is_not():
    """On a fixed subset of the data it was fitted on (studies/domain_check.py has the cross-validated figures):
    most PAD-UFES-20 phone photos are flagged, almost no dermoscopic image."""
    from sklearn.metrics import roc_auc_score

    from runtime.domain import NOT_DERMOSCOPY_THRESHOLD, not_dermoscopy_score

    real = SHARED_DATA / "real"
    phone = sorted((real / "pad-ufes-20" / "images").glob("*"))[:40]
    dermoscopy = sorted((real / "isic2017" / "images").glob("*.jpg"))[:40] + sorted(
        (real / "ph2" / "images").glob("*.jpg"))[:20]
    scores = {path: not_dermoscopy_score(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
              for path in phone + dermoscopy}
    labels = [path in phone for path in scores]
    assert roc_auc_score(labels, list(scores.values())) >= 0.9
    assert np.mean([scores[path] > NOT_DERMOSCOPY_THRESHOLD for path in phone]) >= 0.6
    assert np.mean([scores[path] > NOT_DERMOSCOPY_THRESHOLD for path in dermoscopy]) <= 0.05


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "real" / "pad-ufes-20").is_dir(), reason="../shared/data/real not beside "
                                                                                 "the checkout")
def test_a_phone_photo_is_reported_without_dermoscopic_claims(bundle):
    """A PAD-UFES-20 photo the domain check flags: referred for it, no dermoscopic colours, structures, scores or
    concept scores in its report, and its outline still measured."""
    from runtime.predictor import Predictor

    photos = sorted((SHARED_DATA / "real" / "pad-ufes-20" / "images").glob("*"))
    flagged = next(path for path in photos
                   if domain_warnings(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))[:1]
                   and domain_warnings(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))[0]["kind"]
                   == NOT_DERMOSCOPY)
    report = Predictor(bundle, mc_samples=4).predict(flagged).to_dict()
    assert "not dermoscopy" in review_reasons(report["referral"])
    abcde = report["abcde"]
    assert abcde["domain"] == NOT_DERMOSCOPY and report["concepts"] is None
    if abcde["status"] == "measured":
        assert abcde["color"]["status"] == abcde["structures"]["status"] == "not_applicable"
        assert abcde["color"]["present"] == abcde["structures"]["present"] == [] and abcde["tds"] is None

"""ABCD against experts on real dermoscopy (issue 32), on a fixed subset sized for CI (about 1.5 CPU minutes): the
lesion outline against expert masks (all 103 PH2 dev-half images, every third ISIC 2017 Part 1 image), and the
asymmetry score, colours and structures against PH2's dermatologists, cross-validated inside PH2
(`studies/abcd_agreement.py` prints the full tables). Plus the pieces with analytic truth: the fitted rules'
decisions, the Total Dermoscopy Score, the segmenter file checked against its record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from runtime.abcde.rules import COLOURS, STRUCTURES, decide, load_rules, total_dermoscopy_score
from runtime.abcde.segmenter import MODEL_FILE, session
from runtime.errors import ManifestError
from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real not beside the checkout")
TARGETS = {"median": 0.88, "mean": 0.82, "thresholded": 0.78, "withheld_share": 0.05, "measured_below_half_share": 0.02}


@pytest.fixture(scope="module")
def outlines():
    from studies.abcd_agreement import segmentation

    return {**segmentation([REAL / "ph2"], None, 2), **segmentation([REAL / "isic2017"], 152, 2)}


@needs_real
@pytest.mark.parametrize("name", ["PH2", "ISIC 2017"])
def test_outlines_meet_the_targets_against_expert_masks(outlines, name):
    row = outlines[name]["all"]
    print(name, json.dumps({k: v for k, v in row.items() if k != "mean_95ci"}))
    assert row["median"] >= TARGETS["median"] and row["mean"] >= TARGETS["mean"]
    assert row["thresholded"] >= TARGETS["thresholded"]
    assert row["withheld_share"] <= TARGETS["withheld_share"]
    assert row["measured_below_half_share"] <= TARGETS["measured_below_half_share"]


@needs_real
def test_ph2_melanomas_are_outlined_whole(outlines):
    melanomas = outlines["PH2"]["by_diagnosis"]["melanoma"]
    assert melanomas["images"] == 21 and melanomas["median"] >= 0.80


@needs_real
def test_readings_agree_with_the_dermatologists_out_of_fold():
    from studies.abcd_agreement import dermatologist_agreement

    agreement = dermatologist_agreement(REAL / "ph2", repeats=2)
    targets = agreement["targets"]
    print(json.dumps({t: round(r["kappa"], 2) for t, r in targets.items()}))
    assert agreement["measured"] >= 98
    assert targets["asymmetry"]["kappa"] >= 0.5 and targets["asymmetry"]["exact"] >= 0.65
    for colour in ("light_brown", "blue_gray", "black"):
        assert targets[colour]["kappa"] >= 0.4, colour
    # Below the 0.4 (open: docs/abcde.md): held at today's level so that they do not slip further.
    assert targets["white"]["kappa"] >= 0.2 and targets["dark_brown"]["kappa"] >= 0.1
    assert agreement["colour_count_correlation"] >= 0.4
    for structure in STRUCTURES:
        if load_rules()["targets"][structure]["shown"]:
            assert targets[structure]["kappa"] >= 0.35, structure  # shown at >= 0.4 with 5 repeats


def test_the_shipped_rules_show_only_structures_that_agree():
    rules = load_rules()["targets"]
    for structure in STRUCTURES:
        assert rules[structure]["shown"] == (rules[structure]["cross_validated"]["kappa"] >= 0.4)
    assert set(COLOURS) <= set(rules) and rules["asymmetry"]["kind"] == "ordinal"


def test_rules_decide_by_their_threshold_and_steps():
    binary = {"kind": "binary", "mean": [1.0, 0.0], "scale": [2.0, 1.0], "coef": [1.0, -1.0], "intercept": 0.0,
              "threshold": 0.7}
    # standardised (x - mean) / scale = (1, 0): logit 1, probability 0.73
    assert decide(binary, np.array([3.0, 0.0])) == 1
    assert decide({**binary, "threshold": 0.75}, np.array([3.0, 0.0])) == 0
    ordinal = {"kind": "ordinal", "steps": [binary, {**binary, "coef": [-1.0, 0.0]}]}
    assert decide(ordinal, np.array([3.0, 0.0])) == 1  # the second step (logit -1) is not reached
    assert decide({**ordinal, "steps": [binary, binary]}, np.array([3.0, 0.0])) == 2
    assert decide({**ordinal, "steps": [{**binary, "coef": [-1.0, 0.0]}, binary]}, np.array([3.0, 0.0])) == 0


def test_total_dermoscopy_score_counts_what_was_measured():
    score = total_dermoscopy_score(2, 3, 4, {"streaks": True, "blue_whitish_veil": True})
    assert score["value"] == pytest.approx(1.3 * 2 + 0.1 * 3 + 0.5 * 4 + 0.5 * 1)
    assert not score["complete"] and score["d_measured"] == ["branched streaks"]
    assert "structureless areas" in score["d_not_measured"] and "lower bounds" in score["note"]
    assert total_dermoscopy_score(0, 0, 1, {})["value"] == pytest.approx(0.5)


def test_a_changed_segmenter_file_is_refused(tmp_path):
    copy = tmp_path / MODEL_FILE.name
    shutil.copy(MODEL_FILE, copy)
    shutil.copy(MODEL_FILE.with_suffix(".json"), copy.with_suffix(".json"))
    assert session(copy) is not None
    tampered = tmp_path / "tampered" / MODEL_FILE.name
    tampered.parent.mkdir()
    shutil.copy(MODEL_FILE.with_suffix(".json"), tampered.with_suffix(".json"))
    data = bytearray(MODEL_FILE.read_bytes())
    data[-100] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="not the segmenter its record names"):
        session(tampered)

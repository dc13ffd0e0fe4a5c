"""The panel: every text fits inside the canvas (measured with the font metrics it is drawn with), long class
names are wrapped rather than clipped, and each kind of panel says what it shows."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

import runtime.draw
import runtime.report.panel
from runtime.draw import FONT
from runtime.predictor import Predictor
from runtime.report.panel import WIDTH, render_panel
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow
LONG_NAMES = tuple(f"class_{k}_with_a_remarkably_long_diagnostic_label_that_no_column_fits_{'x' * (8 * k)}"
                   for k in range(9))


@pytest.fixture(scope="module")
def results(bundle):
    predictor = Predictor(bundle, mc_samples=8)
    image = SAMPLES / "ISIC_0034376.jpg"
    predicted = predictor.predict(image)
    other = next(name for name in predictor.manifest.class_names if name != predicted.label)
    explained_other = predictor.predict(image, cam_class=other)
    calibrated = predictor.predict(image, mm_per_px=0.02)
    no_lesion = replace(predicted, abcde={**predicted.abcde, "asymmetry": None, "border": None, "color": None,
                                          "diameter": None, "partial_score": None,
                                          "segmentation": {"area_px": 0, "coverage": 0.0, "flags": ["no_lesion"]}},
                        lesion_mask=None, alignment=None)
    low_contrast = replace(predicted, abcde={**predicted.abcde, "segmentation": {
        **predicted.abcde["segmentation"], "flags": ["low_contrast", "touches_border"]}})
    concepts = {"scores": {name: {"cosine": 0.5, "directional_derivative": -0.1} for name in
                           ("asymmetry", "irregular_border", "multicolor", "large_diameter")}}
    flagged = {**predicted.referral, "flagged": True, "reason": "entropy 1.76 > 0.94, chosen for a 20 % referral "
                                                                "rate on validation"}
    return {"predicted": predicted, "other_class": explained_other, "mm_per_px": calibrated,
            "no_lesion": no_lesion, "low_contrast": low_contrast,
            "concepts": replace(predicted, concepts=concepts),
            "flagged": replace(predicted, referral=flagged, uncertainty=replace(predicted.uncertainty, flagged=True),
                               temperature=0.85),
            "long_names": replace(explained_other, class_names=LONG_NAMES, concepts=concepts)}


def _render_recording(result, monkeypatch):
    drawn = []
    original = runtime.draw.text

    def recording(canvas, value, origin, scale=0.5, colour=(0, 0, 0), thickness=1):
        (width, height), baseline = cv2.getTextSize(value, FONT, scale, thickness)
        drawn.append((value, int(origin[0]), int(origin[1]), width, height, baseline))
        original(canvas, value, origin, scale, colour, thickness)

    monkeypatch.setattr(runtime.draw, "text", recording)
    monkeypatch.setattr(runtime.report.panel, "text", recording)
    return render_panel(result), drawn


@pytest.mark.parametrize("kind", ["predicted", "other_class", "mm_per_px", "no_lesion", "low_contrast", "concepts",
                                  "flagged", "long_names"])
def test_every_text_fits_inside_the_panel(results, kind, monkeypatch):
    panel, drawn = _render_recording(results[kind], monkeypatch)
    assert panel.shape[1] == WIDTH and drawn
    for value, x, y, width, height, baseline in drawn:
        assert 0 <= x and x + width <= WIDTH, f"{value!r} runs off the side ({x} + {width} > {WIDTH})"
        assert y - height >= 0 and y + baseline <= panel.shape[0], f"{value!r} runs off the top or bottom"


def test_long_class_names_are_wrapped_not_clipped(results, monkeypatch):
    _, drawn = _render_recording(results["long_names"], monkeypatch)
    joined = "".join(value.replace(" ", "") for value, *_ in drawn)
    for name in LONG_NAMES:
        assert name in joined


def test_each_panel_kind_says_what_it_shows(results, monkeypatch):
    def words(kind):
        return " ".join(value for value, *_ in _render_recording(results[kind], monkeypatch)[1])

    other = results["other_class"]
    explained = other.class_names[other.cam_class]
    assert f"Heatmap explains {explained} (p = " in words("other_class")
    assert f"not the predicted {other.label}" in words("other_class")
    assert "Heatmap explains" not in words("predicted")
    assert "0.94, chosen for a 20 % referral rate" in words("flagged") and "REVIEW" in words("flagged")
    assert "temperature 0.85" in words("flagged")
    assert "no lesion found" in words("no_lesion") and "of 0-2" not in words("no_lesion")
    assert "low_contrast" in words("low_contrast")
    assert "mm" in words("mm_per_px") and "no --mm-per-px" not in words("mm_per_px")
    assert "directional derivative" in words("concepts") and "positive pushes" in words("concepts")
    predicted = words("predicted")
    for expected in (" of 0-2", " of 0-8", " of 1-6", "not Stolz's D", "Partial score", "Stolz's ABCD rule",
                     "not a Total Dermoscopy Score", "high attention", "maximum Feret diameter", "Review rule",
                     "not what the model has never seen"):
        assert expected in predicted
    if results["predicted"].abcde["skin"]:
        assert f"ITA {results['predicted'].abcde['skin']['ita_deg']:.0f} deg" in predicted
    rows, columns = results["predicted"].class_maps.shape[-2:]
    assert f"a {rows} x {columns} grid, smoothed" in predicted


def test_a_phone_photo_gets_no_dermoscopic_colour_or_structure_claims(results, monkeypatch):
    from runtime.abcde.analyze import NOT_APPLICABLE

    predicted = results["predicted"]
    reason = NOT_APPLICABLE["not_dermoscopy"]
    photo = replace(predicted, abcde={
        **predicted.abcde, "domain": "not_dermoscopy", "partial_score": None, "tds": None,
        "color": {"status": "not_applicable", "reason": reason, "present": [], "count": None,
                  "not_measured": [], "coverage": {}, "reference_present": []},
        "structures": {"status": "not_applicable", "reason": reason, "present": [], "measured": [],
                       "not_measured": []}})
    said = " ".join(" ".join(value for value, *_ in _render_recording(photo, monkeypatch)[1]).split())
    assert "clinical photo" in said and "Stolz's dermoscopy rule does not apply" in said
    assert "dermoscopic colour (" not in said and "dermoscopic colours (" not in said and "seen:" not in said
    assert "Partial score" not in said and "lesion outline" in said


def test_colours_below_the_agreement_bar_are_named_not_measured_and_one_is_singular(results, monkeypatch):
    predicted = results["predicted"]
    one = replace(predicted, abcde={**predicted.abcde, "color": {
        **predicted.abcde["color"], "present": ["black"], "count": 1, "not_measured": ["white", "dark_brown"]},
        "asymmetry": {**predicted.abcde["asymmetry"], "points": 1}})
    said = " ".join(" ".join(value for value, *_ in _render_recording(one, monkeypatch)[1]).split())
    assert "1 dermoscopic colour (black): 1 point of 1-6" in said and "1 point of 0-2" in said
    assert "not measured: white, dark brown (agreement with dermatologists below kappa 0.4)" in said


def test_untrained_classes_show_as_not_learnt_without_a_bar_or_a_number(results, monkeypatch):
    from runtime.report.panel import NOT_LEARNT

    predicted = replace(results["predicted"], untrained_classes=())
    untrained = replace(predicted, untrained_classes=("SCC", "UNK"))
    drawn = [value for value, *_ in _render_recording(untrained, monkeypatch)[1]]
    learnt = [value for value, *_ in _render_recording(predicted, monkeypatch)[1]]
    assert drawn.count(NOT_LEARNT) == 2 and NOT_LEARNT not in learnt
    numbers = [value for value in drawn if len(value) == 4 and value[1] == "." and value[0] in "01"]
    assert len(numbers) == len([value for value in learnt if len(value) == 4 and value[1] == "."
                                and value[0] in "01"]) - 2


def test_an_attention_peak_outside_the_lesion_is_said_under_the_heatmap(results, monkeypatch):
    predicted = results["predicted"]
    outside = replace(predicted, alignment={**predicted.alignment, "pointing_game": False, "inside_share": 0.07})
    inside = replace(predicted, alignment={**predicted.alignment, "pointing_game": True})
    said = " ".join(" ".join(value for value, *_ in _render_recording(outside, monkeypatch)[1]).split())
    assert "Its peak lies outside the lesion outline (7% of the attention inside)" in said
    quiet = " ".join(" ".join(value for value, *_ in _render_recording(inside, monkeypatch)[1]).split())
    assert "peak lies outside" not in quiet


def test_an_empty_heatmap_is_said_not_shown_blank(results, monkeypatch):
    empty = replace(results["predicted"], heatmap=np.zeros_like(results["predicted"].heatmap))
    _, drawn = _render_recording(empty, monkeypatch)
    paragraph = " ".join(" ".join(value for value, *_ in drawn).split())
    assert "the heatmap is empty" in paragraph, "a wrapped caption may split the phrase across lines, never drop it"


@pytest.mark.parametrize("kind", ["predicted", "other_class", "no_lesion", "long_names"])
def test_no_two_texts_overlap(results, kind, monkeypatch):
    """Wrapped captions push what follows them down (a caption wrapped over the ABCD legend once)."""
    _, drawn = _render_recording(results[kind], monkeypatch)
    boxes = [(value, x, y - height, x + width, y + baseline) for value, x, y, width, height, baseline in drawn]
    for index, (value, left, top, right, bottom) in enumerate(boxes):
        for other, left2, top2, right2, bottom2 in boxes[index + 1:]:
            assert right <= left2 or right2 <= left or bottom <= top2 or bottom2 <= top, \
                f"{value!r} overlaps {other!r}"


@pytest.mark.parametrize("width", [600, 1600, 2400, 4000])
def test_the_abcd_marks_sit_where_the_json_says_at_any_image_size(bundle, width):
    """A 4000 px photo once had its axes and Feret diameter drawn in the corner: the view is downscaled to at most
    2048 px, the JSON is in the original's pixels. The drawn Feret line must span the JSON's endpoints, scaled."""
    from runtime.abcde.overlay import FERET
    from runtime.report.panel import abcd_tile

    sample = cv2.cvtColor(cv2.imread(str(SAMPLES / "ISIC_0034335.jpg")), cv2.COLOR_BGR2RGB)
    image = cv2.resize(sample, (width, width * 3 // 4), interpolation=cv2.INTER_CUBIC)
    result = Predictor(bundle, mc_samples=2).predict(image)
    assert result.abcde["status"] == "measured"
    tile = abcd_tile(result)
    scale = tile.shape[1] / width
    ends = np.array(result.abcde["diameter"]["feret_endpoints"]) * scale
    rows, columns = np.nonzero(np.all(tile == FERET, axis=2))
    slack = 4 + 3 * max(2, round(max(tile.shape[:2]) / 300))
    assert abs(columns.min() - ends[:, 0].min()) <= slack and abs(columns.max() - ends[:, 0].max()) <= slack
    assert abs(rows.min() - ends[:, 1].min()) <= slack and abs(rows.max() - ends[:, 1].max()) <= slack

"""The panel: every text fits inside the canvas (measured with the font metrics it is drawn with), long class
names are wrapped rather than clipped, and each kind of panel says what it shows."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

import runtime.draw
import runtime.panel
from runtime.draw import FONT
from runtime.panel import WIDTH, render_panel
from runtime.predictor import Predictor
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
    monkeypatch.setattr(runtime.panel, "text", recording)
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
    assert "no lesion found" in words("no_lesion") and "points of 0-2" not in words("no_lesion")
    assert "low_contrast" in words("low_contrast")
    assert "mm" in words("mm_per_px") and "no --mm-per-px" not in words("mm_per_px")
    assert "directional derivative" in words("concepts") and "positive pushes" in words("concepts")
    predicted = words("predicted")
    for expected in ("points of 0-2", "points of 0-8", "points of 1-6", "not Stolz's D", "Partial score",
                     "not a Total Dermoscopy Score", "high attention", "maximum Feret diameter", "Review rule"):
        assert expected in predicted


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
    from runtime.panel import abcd_tile

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

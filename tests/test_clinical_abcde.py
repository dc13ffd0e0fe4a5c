"""ABCDE outside the dermoscopic world (issue 21): clinical-photo scenes with truth masks, the outline quality
check that withholds A-D, and --lesion-at."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from melanomanet.data.clinical import KINDS, render_clinical
from runtime.abcde.analyze import analyze
from runtime.abcde.segment import segment
from runtime.report.panel import abcd_lines

SKIN = (224, 178, 154)


def iou(first: np.ndarray, second: np.ndarray) -> float:
    return np.count_nonzero(first & second) / max(np.count_nonzero(first | second), 1)


@pytest.mark.parametrize("kind", KINDS)
def test_clinical_scenes_are_outlined(kind):
    """40 scenes of each kind (small dark, pale, several, hairy, stamped): median IoU against the truth."""
    scores = np.array([iou(segment(scene.image).mask, scene.mask)
                       for scene in (render_clinical(kind, 1000 + number) for number in range(40))])
    print(f"{kind}: IoU median {np.median(scores):.3f}, p10 {np.percentile(scores, 10):.3f}")
    assert np.median(scores) >= 0.85


def lit_skin(width: int = 480, height: int = 360) -> np.ndarray:
    """Plain skin with light falling off from left to right (a gain of 1 down to 0.6)."""
    gain = np.linspace(1.0, 0.6, width)[None, :, None]
    return np.clip(np.array(SKIN, np.float32) * gain + np.random.default_rng(0).normal(0, 2, (height, width, 3)),
                   0, 255).astype(np.uint8)


def assert_not_measured(result: dict):
    assert result["status"] in ("unreliable", "no_lesion") and result["reasons"]
    for key in ("asymmetry", "border", "color", "diameter", "partial_score"):
        assert result[key] is None


def test_a_lighting_gradient_is_not_measured():
    assert_not_measured(analyze(lit_skin()))


def test_a_lesion_cut_by_the_image_border_is_not_measured():
    image = lit_skin()
    cv2.circle(image, (0, 0), 150, (70, 44, 34), -1, cv2.LINE_AA)
    result = analyze(image)
    assert_not_measured(result)
    assert result["status"] == "unreliable" and any("edge of the image" in reason for reason in result["reasons"])


def test_an_outline_that_took_the_background_is_withheld_on_the_panel():
    result = analyze(lit_skin())
    lines = [text for _, text, _ in abcd_lines(result)]
    assert not any(letter for letter, _, _ in abcd_lines(result))
    assert len(lines) == 2 and ("not measured" in lines[1] or "no lesion" in lines[1])


def test_the_whole_dermoscopic_close_up_is_still_measured():
    from melanomanet.data.synth import render, sample_params

    image, truth, _ = render(sample_params(np.random.default_rng(3), "NV"), 384)
    result = analyze(image)
    assert result["status"] == "measured" and result["asymmetry"] is not None
    assert result["segmentation"]["mask"] == "learned"


def two_lesions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = lit_skin()
    masks = []
    for centre, radius in (((250, 170), 30), ((410, 70), 24)):
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.circle(mask, centre, radius, 1, -1)
        image[mask > 0] = (92, 58, 40)
        masks.append(mask)
    return cv2.GaussianBlur(image, (3, 3), 0), *masks


def test_lesion_at_picks_the_lesion_pointed_at():
    image, central, other = two_lesions()
    assert iou(segment(image).mask, central) >= 0.9
    assert iou(segment(image, lesion_at=(405, 75)).mask, other) >= 0.9
    assert analyze(image, lesion_at=(405, 75))["diameter"]["feret_px"] == pytest.approx(48, abs=3)


def test_lesion_at_on_the_command_line(tmp_path):
    from melanomanet.cli import app

    image, _, other = two_lesions()
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    runner = CliRunner()
    done = runner.invoke(app, ["abcde", str(path), "--lesion-at", "405,75", "--json", "-"])
    assert done.exit_code == 0, done.output
    centroid = json.loads(done.stdout)["asymmetry"]["centroid"]
    assert centroid == pytest.approx([410, 70], abs=2)
    outside = runner.invoke(app, ["abcde", str(path), "--lesion-at", "900,75"])
    assert outside.exit_code == 2 and "lies outside the image (480x360" in outside.output
    malformed = runner.invoke(app, ["abcde", str(path), "--lesion-at", "left"])
    assert malformed.exit_code == 2 and "is not X,Y" in malformed.output


def test_lesion_at_is_suggested_only_where_pointing_measures_the_lesion():
    """On CLIN_pale_0003 the panel suggested --lesion-at, and pointing at the lesion still gave "unreliable".
    Now a suggestion is a point that was tried: following it measures the lesion; without one, the advice is to
    retake the photo."""
    suggested, withheld = 0, 0
    for kind in ("pale", "several", "stamped"):
        for number in range(12):
            scene = render_clinical(kind, number)
            result = analyze(scene.image)
            if result["status"] != "unreliable":
                continue
            withheld += 1
            point = result["suggested_lesion_at"]
            advice = abcd_lines(result)[1][1]
            if point is None:
                assert "--lesion-at" not in advice and "Retake the photo" in advice
            else:
                suggested += 1
                assert analyze(scene.image, lesion_at=tuple(point))["status"] == "measured"
                assert f"--lesion-at {point[0]:.0f},{point[1]:.0f}" in advice
    assert withheld > 0, "the scenes no longer exercise the withheld path"

"""ABCD measurements against analytic truth, scikit-image, the synthetic generator's truth and real images."""

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.measure import regionprops

from melanomanet.data.synth import render, sample_params
from runtime.abcde.analyze import analyze
from runtime.abcde.api import evolution_between
from runtime.abcde.criteria import compactness, shape_asymmetry
from runtime.abcde.palette import COLOUR_NAMES, DERMOSCOPIC_COLOURS
from runtime.abcde.segment import segment, segment_classical
from runtime.abcde.shape import region
from runtime.imageio import load_image
from tests.conftest import SAMPLES

SKIN = (226, 178, 156)


def blank(height=450, width=600):
    return np.zeros((height, width), np.uint8)


def polygon_mask(points, height=450, width=600, supersample=8):
    """Digitise a polygon without bias: a pixel belongs to it when at least half its area is inside."""
    fine = np.zeros((height * supersample, width * supersample), np.uint8)
    corners = (np.asarray(points, float) + 0.5) * supersample - 0.5
    cv2.fillPoly(fine, [np.round(corners * 16).astype(np.int32)], 255, cv2.LINE_8, shift=4)
    return (cv2.resize(fine, (width, height), interpolation=cv2.INTER_AREA) >= 128).astype(np.uint8)


def rotated(points, degrees, centre=(300, 225)):
    angle = np.radians(degrees)
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.asarray(points, float) @ matrix.T + centre


@pytest.mark.parametrize("radius", [50, 80, 150])
def test_circle_is_symmetric_and_compact(radius):
    mask = blank()
    cv2.circle(mask, (300, 225), radius, 1, -1)
    geometry = region(mask)
    assert max(shape_asymmetry(geometry)) < 0.02
    assert compactness(geometry) == pytest.approx(1.0, abs=0.02)
    result = analyze(np.dstack([mask * 100] * 3).astype(np.uint8), mm_per_px=0.05, mask=mask)
    # The definition's points (fixed thresholds) against analytic truth; `points` is the rule fitted to PH2's
    # dermatologists (tests/test_abcd_agreement.py checks it against them).
    assert result["asymmetry"]["geometric_points"] == 0
    assert result["diameter"]["feret_px"] == pytest.approx(2 * radius, abs=1)
    assert result["diameter"]["equivalent_px"] == pytest.approx(2 * radius, abs=1)
    assert result["diameter"]["feret_mm"] == pytest.approx(2 * radius * 0.05, abs=0.05)


@pytest.mark.parametrize("angle", [0, 13, 45, 71, 90, 128])
def test_rotated_ellipses_are_symmetric(angle):
    mask = blank()
    cv2.ellipse(mask, ((300, 225), (300, 160), angle), 1, -1)
    assert max(shape_asymmetry(region(mask))) < 0.02


@pytest.mark.parametrize("angle", [20, 35, 61, 117])
@pytest.mark.parametrize("half_base,height", [(70, 200), (100, 150)])
def test_oblique_isosceles_triangle(angle, half_base, height):
    """About its symmetry axis: 0; about the perpendicular principal axis through the centroid the
    mirrored triangle overlaps 2/3 of it, so |M xor mirror(M)| / |M| = 2/3 whatever its proportions."""
    points = [(0, -2 * height / 3), (-half_base, height / 3), (half_base, height / 3)]
    mask = polygon_mask(rotated(points, angle))
    values = sorted(shape_asymmetry(region(mask)))
    assert values[0] < 0.02
    assert values[1] == pytest.approx(2 / 3, abs=0.02)
    image = np.dstack([mask * 90] * 3).astype(np.uint8)
    assert analyze(image, mask=mask)["asymmetry"]["geometric_points"] == 1


def test_rectangle_is_symmetric():
    mask = polygon_mask(rotated([(-150, -60), (150, -60), (150, 60), (-150, 60)], 27))
    assert max(shape_asymmetry(region(mask))) < 0.02


@pytest.mark.parametrize("sides,rotation", [(4, 10), (5, 7), (6, 0), (6, 17), (8, 33)])
def test_regular_polygon_compactness(sides, rotation):
    angles = np.radians(rotation) + np.linspace(0, 2 * np.pi, sides, endpoint=False)
    mask = polygon_mask(np.stack([300 + 150 * np.cos(angles), 225 + 150 * np.sin(angles)], 1))
    analytic = sides * np.tan(np.pi / sides) / np.pi
    assert compactness(region(mask)) == pytest.approx(analytic, rel=0.02)


def test_diameters_of_a_rectangle_at_known_spacing():
    mask = blank()
    mask[100:301, 150:451] = 1  # 301 x 201 pixels; centre-to-centre diagonal 300 x 200
    result = analyze(np.dstack([mask * 80] * 3).astype(np.uint8), mm_per_px=0.02, mask=mask)
    assert result["diameter"]["feret_px"] == pytest.approx(np.hypot(300, 200), abs=1)
    assert result["diameter"]["feret_mm"] == pytest.approx(np.hypot(300, 200) * 0.02, abs=0.05)
    assert result["diameter"]["large"] is True
    uncalibrated = analyze(np.dstack([mask * 80] * 3).astype(np.uint8), mask=mask)
    assert uncalibrated["diameter"]["feret_mm"] is None and uncalibrated["diameter"]["large"] is None


def test_colours_below_the_agreement_bar_are_not_measured_and_not_counted():
    from runtime.abcde.rules import agreement_of

    result = analyze(load_image(SAMPLES / "ISIC_0034335.jpg"))
    colour = result["color"]
    unreliable = [name for name in ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")
                  if agreement_of(name)["kappa"] < 0.4]
    assert colour["status"] == "measured" and colour["not_measured"] == unreliable == ["white", "red", "dark_brown"]
    assert not set(colour["present"]) & set(unreliable) and colour["count"] == len(colour["present"])
    partial = 1.3 * result["asymmetry"]["points"] + 0.1 * result["border"]["cutoff_segments"] + 0.5 * colour["count"]
    assert result["partial_score"]["value"] == pytest.approx(partial, abs=0.01)


@pytest.mark.parametrize("domain", ["not_dermoscopy", "greyscale"])
def test_off_dermoscopy_the_dermoscopic_readings_are_not_applicable_and_the_outline_stays(domain):
    from runtime.abcde.analyze import analyze_with_mask

    image = load_image(SAMPLES / "ISIC_0034335.jpg")
    dermoscopy, other = analyze_with_mask(image), analyze_with_mask(image, domain=domain)
    measured = other.measurements
    assert measured["status"] == "measured" and measured["domain"] == domain
    assert np.array_equal(other.mask, dermoscopy.mask)
    assert measured["diameter"] == dermoscopy.measurements["diameter"]
    assert measured["border"] == dermoscopy.measurements["border"]
    for block in ("color", "structures"):
        assert measured[block]["status"] == "not_applicable" and measured[block]["present"] == []
    assert measured["color"]["count"] is None and measured["color"]["reference_present"] == []
    assert measured["partial_score"] is None and measured["tds"] is None
    assert measured["asymmetry"]["fitted"] is False
    assert measured["asymmetry"]["points"] == measured["asymmetry"]["geometric_points"]


@pytest.mark.parametrize("shape", ["ellipse", "triangle", "blob"])
def test_region_properties_match_scikit_image(shape):
    mask = blank()
    if shape == "ellipse":
        cv2.ellipse(mask, ((310, 220), (260, 120), 33), 1, -1)
    elif shape == "triangle":
        mask = polygon_mask(rotated([(0, -140), (-90, 70), (120, 60)], 12))
    else:
        params = sample_params(np.random.default_rng(4), "MEL")
        _, mask, _ = render(params, 450)
    ours = region(mask)
    theirs = regionprops(mask.astype(int))[0]
    assert ours.area == pytest.approx(theirs.area, rel=0.01)
    assert ours.centroid[0] == pytest.approx(theirs.centroid[1], rel=0.01)
    assert ours.centroid[1] == pytest.approx(theirs.centroid[0], rel=0.01)
    assert ours.major_axis_length == pytest.approx(theirs.axis_major_length, rel=0.01)
    assert ours.minor_axis_length == pytest.approx(theirs.axis_minor_length, rel=0.01)
    assert ours.eccentricity == pytest.approx(theirs.eccentricity, rel=0.01)
    assert ours.solidity == pytest.approx(theirs.solidity, rel=0.01)
    # skimage: orientation is the angle between the row axis and the major axis.
    direction = np.array([np.cos(ours.orientation), np.sin(ours.orientation)])
    theirs_direction = np.array([np.sin(theirs.orientation), np.cos(theirs.orientation)])
    assert abs(direction @ theirs_direction) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("colours", [("dark_brown",), ("black", "white"), ("red", "blue_gray", "light_brown"),
                                     COLOUR_NAMES])
def test_exact_dermoscopic_colours_are_named(colours):
    image = np.full((400, 400, 3), SKIN, np.uint8)
    mask = blank(400, 400)
    cv2.circle(mask, (200, 200), 150, 1, -1)
    columns = np.arange(400)[None, :].repeat(400, 0)
    for name, stripe in zip(colours, np.array_split(np.arange(50, 351), len(colours))):
        image[(mask == 1) & np.isin(columns, stripe)] = DERMOSCOPIC_COLOURS[name]
    result = analyze(image, mask=mask)
    assert sorted(result["color"]["reference_present"]) == sorted(colours)  # `present`: fitted to dermatologists


def synthetic_lesions():
    """96 lesions of every class, each with four hairs, and the vignette."""
    for seed in range(96):
        rng = np.random.default_rng(100 + seed)
        label = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")[seed % 8]
        params = sample_params(rng, label)
        yield render(params.__class__(**{**params.__dict__, "hairs": 4}), 384)[:2]


def test_colour_route_matches_synthetic_truth():
    """The colour route (wide views, crops, lesions pointed at): IoU against the generator's mask."""
    ious = np.array([iou(segment_classical(image).mask, truth) for image, truth in synthetic_lesions()])
    print(f"IoU median {np.median(ious):.3f}, min {ious.min():.3f}, share >= 0.9: {np.mean(ious >= 0.9):.2f}")
    assert np.median(ious) >= 0.95
    assert np.mean(ious >= 0.9) >= 0.95
    assert ious.min() >= 0.8


def test_learned_route_on_synthetic_lesions():
    """Revised in the open (issue 32): the learned segmenter, trained on real lesions' expert masks, does not count
    the renderer's hard-edged white regions, lighter than the skin, as lesion (median IoU 0.85 where the colour
    route gets 0.97). Real dermoscopy is the evidence now: tests/test_abcd_agreement.py holds it to the targets."""
    ious = np.array([iou(segment(image).mask, truth) for image, truth in synthetic_lesions()])
    print(f"IoU median {np.median(ious):.3f}, p10 {np.percentile(ious, 10):.3f}")
    assert np.median(ious) >= 0.8


def iou(first, second) -> float:
    return np.count_nonzero(first & second) / max(np.count_nonzero(first | second), 1)


def test_black_lesion_touching_the_vignette_stays_in_view():
    from runtime.abcde.artifacts import field_of_view_mask

    image = np.full((200, 200, 3), SKIN, np.uint8)
    yy, xx = np.mgrid[0:200, 0:200]
    image[np.hypot(xx - 100, yy - 100) > 95] = 8
    cv2.circle(image, (150, 100), 50, (28, 24, 26), -1)
    view = field_of_view_mask(image)
    assert view[100, 150] == 1 and view[100, 175] == 1 and view[0, 0] == 0 and view[100, 199] == 0


def test_no_lesion_returns_flag_not_numbers():
    rng = np.random.default_rng(0)
    skin = np.clip(np.array(SKIN) + rng.normal(0, 3, (300, 400, 3)), 0, 255).astype(np.uint8)
    result = analyze(skin)
    assert "no_lesion" in result["segmentation"]["flags"]
    assert result["asymmetry"] is None and result["diameter"] is None and result["color"] is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=arrays(np.uint8, st.tuples(st.integers(16, 96), st.integers(16, 96), st.just(3))),
       data=st.data())
def test_arbitrary_images_and_masks_never_raise(image, data):
    mask = data.draw(arrays(np.uint8, image.shape[:2], elements=st.integers(0, 1)))
    for result in (analyze(image), analyze(image, mm_per_px=0.01, mask=mask)):
        if result["asymmetry"] is None:
            assert result["status"] in ("no_lesion", "unreliable") and result["reasons"]
            assert ("no_lesion" in result["segmentation"]["flags"]) == (result["status"] == "no_lesion")
            continue
        assert result["status"] == "measured"
        assert all(0 <= v <= 2 for v in result["asymmetry"]["shape_axes"])
        assert all(0 <= v <= 1 for v in result["asymmetry"]["color_axes"])
        assert result["asymmetry"]["points"] in (0, 1, 2)
        assert result["border"]["compactness"] >= 0.5
        assert 0 <= result["border"]["cutoff_segments"] <= 8
        assert 0 <= result["color"]["count"] <= 6
        assert result["diameter"]["feret_px"] >= 0
        assert 0 <= result["segmentation"]["coverage"] <= 1


@pytest.mark.parametrize("name", ["ISIC_0034335", "ISIC_0034338", "ISIC_0034376", "ISIC_0034390", "ISIC_0034500"])
def test_real_samples_are_segmented(name):
    result = analyze(load_image(SAMPLES / f"{name}.jpg"))
    # ISIC_0034338, a pale pink BCC: the segmenter is unsure of the whole view; the outline kept is its crusted
    # yellow centre, located in a crop (about 1.4 % of the frame; docs/abcde.md, limits).
    least = 0.01 if name == "ISIC_0034338" else 0.03
    assert least <= result["segmentation"]["coverage"] <= 0.90
    if name == "ISIC_0034390":  # diffuse BKL: the segmenter is unsure where it ends, so it is withheld, saying so
        assert result["status"] == "unreliable" and "unsure" in result["reasons"][0]
        return
    assert result["asymmetry"] is not None


@pytest.mark.parametrize("factor", [1.15, 1.3])
def test_evolution_recovers_known_growth(factor):
    prior = load_image(SAMPLES / "ISIC_0034335.jpg")
    height, width = prior.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 25, factor)
    matrix[:, 2] += (20, -15)
    follow_up = cv2.warpAffine(prior, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101)
    result = evolution_between(prior, follow_up)
    assert result["registration"]["registered"]
    assert result["registration"]["scale"] == pytest.approx(factor, rel=0.02)
    assert result["changes"]["linear_growth"] == pytest.approx(factor, rel=0.05)
    assert result["growth"] is True


def test_evolution_refuses_unrelated_images():
    first = load_image(SAMPLES / "ISIC_0034335.jpg")
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, first.shape, dtype=np.uint8)
    result = evolution_between(noise, first)
    assert result["registration"]["registered"] is False
    assert result["changes"] is None and "registration failed" in result["message"]


def test_the_change_picture_shows_the_prior_at_its_own_size():
    """The prior's outline was drawn after the alignment's scaling, so it sat on the current one while the text
    said "area x1.44". Drawn at its own size, its area is the current's divided by the area ratio reported."""
    from runtime.abcde.analyze import analyze_with_mask
    from runtime.abcde.api import compare
    from runtime.abcde.overlay import without_scale
    from runtime.abcde.quality import centroid

    prior = load_image(SAMPLES.parent / "followup" / "visit_1.jpg")
    current = load_image(SAMPLES.parent / "followup" / "visit_2.jpg")
    before, now = analyze_with_mask(prior), analyze_with_mask(current)
    evolution = compare(prior, current, before, now)
    assert evolution["growth"] and evolution["changes"]["area_ratio"] == pytest.approx(1.44, rel=0.06)
    height, width = now.mask.shape
    shown = cv2.warpAffine(before.mask, without_scale(np.array(evolution["registration"]["matrix"]),
                                                      centroid(before.mask)), (width, height),
                           flags=cv2.INTER_NEAREST)
    assert np.count_nonzero(now.mask) / np.count_nonzero(shown) == pytest.approx(
        evolution["changes"]["area_ratio"], rel=0.03)
    assert np.count_nonzero(shown & now.mask) / np.count_nonzero(shown) > 0.95, "the prior sits inside the lesion now"


def test_the_change_picture_has_a_legend_and_no_negative_zero(monkeypatch):
    import runtime.abcde.overlay as overlay

    prior = load_image(SAMPLES.parent / "followup" / "visit_1.jpg")
    current = load_image(SAMPLES.parent / "followup" / "visit_2.jpg")
    result = evolution_between(prior, current)
    result["registration"]["rotation_deg"] = -0.3
    assert "rotation 0 deg" in overlay.change_lines(result)[-1]
    drawn = []
    monkeypatch.setattr(overlay, "text", lambda canvas, value, *rest, **named: drawn.append(value))
    overlay.evolution_overlay(prior, current, np.zeros(prior.shape[:2], np.uint8), np.zeros(current.shape[:2],
                                                                                              np.uint8), result)
    for label in ("outline now", "prior outline", "axis the lesion is asymmetric about", "maximum Feret diameter"):
        assert label in drawn


def blind_segmenter(folder):
    """An ONNX segmenter that sees no lesion anywhere (probability 0), with its sha256 record."""
    import json

    import onnx
    from onnx import TensorProto, helper

    from runtime.abcde.segmenter import INPUT_SIZE
    from runtime.manifest import sha256_file

    width, height = INPUT_SIZE
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1], keepdims=1),
         helper.make_node("Mul", ["mean", "zero"], ["probability"])], "blind",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [1, 1, height, width])], [zero])
    path = folder / "blind.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    path.with_suffix(".json").write_text(json.dumps({"sha256": sha256_file(path)}))
    return path


def test_the_clinical_segmenter_is_tried_when_the_dermoscopy_one_fails(tmp_path):
    from runtime.abcde.segmenter import using_model

    image = load_image(SAMPLES / "ISIC_0034376.jpg")
    assert segment(image).segmenter == "dermoscopy"
    blind = blind_segmenter(tmp_path)
    with using_model(blind, "dermoscopy"):
        rescued = segment(image)
        assert rescued.segmenter == "clinical" and rescued.quality.reliable
        assert analyze(image)["segmentation"]["segmenter"] == "clinical"
        with using_model(blind, "clinical"):  # neither finds a lesion: the colour route outlines it
            fallback = segment(image)
    assert fallback.segmenter is None and fallback.found
    assert iou(fallback.mask > 0, rescued.mask > 0) > 0.5


@pytest.mark.parametrize("name", ["ISIC_0034335", "ISIC_0034376", "ISIC_0034500"])
def test_features_reuse_the_segmentations_working_copies_exactly(name):
    """The ABCD rules were fitted on features measured from scratch; the runtime hands over the segmentation's
    working view, its inpainted CIELAB and hair mask instead of making them again, and must get the very same
    numbers."""
    from runtime.abcde.features import measure_features

    image = load_image(SAMPLES / f"{name}.jpg")
    found = segment(image)
    assert found.cleaned_lab is not None and found.working_rgb is not None
    assert measure_features(image, found.mask, found) == measure_features(image, found.mask)


@pytest.mark.parametrize("skin_rgb", [(236, 200, 180), (198, 150, 120), (150, 100, 70), (90, 60, 45)])
def test_the_skin_around_a_lesion_has_the_ita_of_its_colour(skin_rgb):
    """ITA = arctan((L* - 50) / b*) of a uniform skin, CIELAB from scikit-image (an independent conversion)."""
    from skimage.color import rgb2lab

    from runtime.abcde.skin import ita_band, skin_tone

    image = np.zeros((300, 400, 3), np.uint8)
    image[:] = skin_rgb
    mask = blank(300, 400)
    cv2.circle(mask, (200, 150), 50, 1, -1)
    image[mask > 0] = (40, 30, 30)
    lightness, _, yellowness = rgb2lab(np.array([[skin_rgb]], np.uint8))[0, 0]
    expected = np.degrees(np.arctan((lightness - 50) / yellowness))
    found = skin_tone(image, mask)
    assert found["ita_deg"] == pytest.approx(expected, abs=1.0)
    assert found["band"] == ita_band(expected)


def test_ita_bands_follow_the_conventional_cut_points():
    from runtime.abcde.skin import ita_band

    assert [ita_band(v) for v in (60, 50, 30, 20, 0, -40)] == ["very light", "light", "intermediate", "tan", "brown",
                                                                "dark"]

"""The PNG panel a clinician reads at a glance: what was predicted and how sure, what the heatmap explains,
the review rule, the image with its GradCAM++ overlay and ABCD marks (each with its legend), probabilities with
their MC spread, ABCD points against the dermoscopic reference, concept scores, and the disclaimer.

The panel has a fixed width (about a tablet's, and an A4 page at 160 dpi); every text is wrapped to its column,
never clipped, and the height follows the content."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from runtime.abcde.overlay import AXIS_ASYMMETRIC, AXIS_SYMMETRIC, FERET, abcde_overlay
from runtime.abcde.palette import DERMOSCOPIC_COLOURS
from runtime.draw import (
    AMBER,
    BLUE,
    INK,
    MUTED,
    RED,
    banner,
    fit,
    heat_overlay,
    outline,
    paragraph,
    text,
    text_width,
    wrap,
)
from runtime.manifest import CLASS_DESCRIPTIONS
from runtime.report import DEMO_DISCLAIMER, DISCLAIMER, Explained

TILE_W, TILE_H, GAP = 440, 330, 16
WIDTH = 3 * TILE_W + 4 * GAP
RULE = (222, 226, 230)
MAX_HEIGHT = 4000
ABCD_HEADINGS = {
    "dermoscopy": "ABCD criteria (Stolz's ABCD rule of dermoscopy)",
    "not_dermoscopy": "ABCD criteria of a clinical photo (the naked-eye ABCD checklist: asymmetry, border, "
                      "diameter; Stolz's dermoscopy rule does not apply)",
    "greyscale": "ABCD criteria of a greyscale image (shape and size only)",
}
NOT_LEARNT = "not learnt: no training image of this class, so nothing is ruled out"
UNCERTAINTY_MEANING = (
    "MC dropout here switches off features only before the last layer: it shows how steady the answer is when "
    "the model leans on other features, not what the model has never seen. A low figure is no sign that the image "
    "is like the training images (the input-domain check looks at that).")
CONCEPT_LEGEND = ("In plain words: a positive cos means the image looks like the concept to the model; a positive dd "
                  "means the concept pushes the model towards the explained class. (cos: cosine of the embedding "
                  "with the concept vector; dd: directional derivative of the explained class's logit along it, "
                  "positive pushes towards that class.)")


def render_panel(result: Explained) -> np.ndarray:
    canvas = np.full((MAX_HEIGHT, WIDTH, 3), 255, np.uint8)
    top = 0
    if result.is_demo:
        banner(canvas, "DEMO WEIGHTS (synthetic training data) - not for diagnosis", 0, AMBER)
        top = 30
    top = _header(canvas, result, top)
    top = _tiles(canvas, result, top)
    left_end = _probability_bars(canvas, result, GAP, top + 10, 2 * TILE_W + GAP)
    right_end = _facts(canvas, result, GAP + 2 * (TILE_W + GAP), top + 10, TILE_W)
    top = max(left_end, right_end) + 6
    if result.concepts:
        top = _concepts(canvas, result.concepts, GAP, top + 8, WIDTH - 2 * GAP)
    top = _footer(canvas, result, top + 6)
    return canvas[:top + 8].copy()


def explained_title(result) -> tuple[str, bool]:
    """What the heatmap explains; True when it is not the predicted class."""
    explained, predicted = result.class_names[result.cam_class], result.label
    if explained == predicted:
        return f"Heatmap explains the predicted {predicted}", False
    return (f"Heatmap explains {explained} (p = {result.probabilities[result.cam_class]:.2f}), "
            f"not the predicted {predicted}"), True


def _header(canvas, result, top) -> int:
    uncertainty = result.uncertainty
    # Not flagged is drawn neutral, never green: no trigger fired is not a finding of "safe".
    message, colour = (("REVIEW: refer for a clinician's look", RED) if uncertainty.flagged
                       else ("no review trigger fired", MUTED))
    badge = text_width(message, 0.6, 2) + 24
    cv2.rectangle(canvas, (WIDTH - GAP - badge, top + 14), (WIDTH - GAP, top + 48), colour, -1)
    text(canvas, message, (WIDTH - GAP - badge + 12, top + 38), 0.6, (255, 255, 255), 2)
    label = result.label
    headline = f"{label}  {CLASS_DESCRIPTIONS.get(label, '')}   p = {result.probabilities.max():.2f}"
    y = paragraph(canvas, headline, (GAP, top + 34), WIDTH - 3 * GAP - badge, 1.0, INK, 2, leading=34)
    title, other = explained_title(result)
    if other:
        y = paragraph(canvas, title, (GAP, y), WIDTH - 2 * GAP, 1.0, BLUE, 2, leading=34)
    y = paragraph(canvas, f"image {result.image}", (GAP, y - 8), WIDTH - 2 * GAP, 0.5, MUTED)
    rule = f"Review rule: {result.referral['reason']}" if result.referral else "Review rule: none recorded"
    if result.temperature != 1.0:
        rule += f"; probabilities calibrated (temperature {result.temperature:.2f})"
    y = paragraph(canvas, rule, (GAP, y + 2), WIDTH - 2 * GAP, 0.5, colour, 1)
    cv2.line(canvas, (GAP, y - 6), (WIDTH - GAP, y - 6), RULE, 1)
    return y + 4


def _tiles(canvas, result, top) -> int:
    rgb = result.view_rgb
    heat = heat_overlay(rgb, result.heatmap)
    if result.lesion_mask is not None:
        heat = outline(heat, result.lesion_mask, (255, 255, 255), max(2, rgb.shape[0] // 200))
    explained = result.class_names[result.cam_class]
    tiles = [rgb, heat, abcd_tile(result)]
    rows, columns = result.heatmap_grid
    captions = ["Image", f"GradCAM++ of {explained}" + ("" if explained == result.label else
                                                         f" (requested; predicted {result.label})")
                + f": a {rows} x {columns} grid, smoothed to the image's size", _abcd_caption(result.abcde or {})]
    caption_ends = []
    for index, (picture, caption) in enumerate(zip(tiles, captions)):
        left = GAP + index * (TILE_W + GAP)
        canvas[top:top + TILE_H, left:left + TILE_W] = fit(picture, TILE_W, TILE_H)
        caption_ends.append(paragraph(canvas, caption, (left, top + TILE_H + 20), TILE_W, 0.5,
                                      INK if index == 1 else MUTED, 2 if index == 1 and explained != result.label
                                      else 1))
    heat_left = GAP + TILE_W + GAP
    if result.alignment and not result.alignment["pointing_game"]:
        caption_ends[1] = paragraph(
            canvas, f"Its peak lies outside the lesion outline ({result.alignment['inside_share']:.0%} of the "
                    "attention inside): the model may be looking at the skin or an artefact, not the lesion.",
            (heat_left, caption_ends[1]), TILE_W, 0.45, AMBER, 1)
    legend_top = max(caption_ends) - 7  # under the longest caption, however many lines it wrapped to
    empty = not np.any(result.heatmap > 0)
    ends = [legend_top + 6,
            _colour_bar(canvas, heat_left, legend_top, TILE_W, empty),
            _abcd_legend(canvas, GAP + 2 * (TILE_W + GAP), legend_top, TILE_W, result.abcde)]
    end = max(ends)
    cv2.line(canvas, (GAP, end), (WIDTH - GAP, end), RULE, 1)
    return end + 4


@lru_cache(maxsize=4)
def _attention_ramp(width: int) -> np.ndarray:
    """The heatmap's colour scale, low to high, as a 10-px-high RGB strip (drawn once per run)."""
    ramp = cv2.applyColorMap(np.linspace(0, 255, width).astype(np.uint8)[None].repeat(10, 0), cv2.COLORMAP_JET)
    return cv2.cvtColor(ramp, cv2.COLOR_BGR2RGB)


def _colour_bar(canvas, left, top, width, empty: bool) -> int:
    if empty:
        return paragraph(canvas, "no positive evidence for this class at the target layer: the heatmap is empty",
                         (left, top + 14), width, 0.45, AMBER)
    bar_width = width - 170
    canvas[top + 4:top + 14, left + 40:left + 40 + bar_width] = _attention_ramp(bar_width)
    text(canvas, "low", (left, top + 14), 0.42, MUTED)
    text(canvas, "high attention", (left + 48 + bar_width, top + 14), 0.42, MUTED)
    return top + 24


def abcd_tile(result: Explained) -> np.ndarray:
    """The ABCD marks on the view the result was analysed and is drawn on; the measurements are in the original
    image's pixels, so they are scaled to the view's."""
    rgb = result.view_rgb
    return abcde_overlay(rgb, result.abcde or {}, result.lesion_mask, rgb.shape[1] / result.image_size[0],
                         colour_key=False)


def _abcd_caption(abcde: dict) -> str:
    if abcde.get("asymmetry") is not None:
        return "ABCD: lesion outline, principal axes, maximum Feret diameter"
    if abcde.get("status") == "unreliable":
        return "ABCD: withheld, the outline failed its quality check"
    return "ABCD: no lesion found" if abcde else "ABCD: not run"


def _abcd_legend(canvas, left, top, width, abcde) -> int:
    """A key for what the ABCD tile shows: only the marks drawn on it, and the colours found by name."""
    if not abcde or abcde.get("asymmetry") is None:
        return top + 6
    asymmetric = abcde["asymmetry"]["points"]
    items = [("line", (255, 255, 255), "lesion outline")]
    if asymmetric:
        items.append(("line", AXIS_ASYMMETRIC, "axis the lesion is asymmetric about"))
    if asymmetric < 2:
        items.append(("line", AXIS_SYMMETRIC, "axis the lesion is symmetric about"))
    items.append(("line", FERET, "maximum Feret diameter"))
    items += [("swatch", DERMOSCOPIC_COLOURS[name], name.replace("_", " ")) for name in abcde["color"]["present"]]
    y, x = top + 12, left
    for kind, colour, label in items:
        needed = 30 + text_width(label, 0.42) + 14
        if x + needed > left + width:
            x, y = left, y + 20
        if kind == "line":
            cv2.line(canvas, (x, y - 4), (x + 24, y - 4), (120, 120, 120), 5, cv2.LINE_AA)
            cv2.line(canvas, (x + 1, y - 4), (x + 23, y - 4), colour, 3, cv2.LINE_AA)
        else:
            cv2.rectangle(canvas, (x + 4, y - 12), (x + 20, y + 2), colour, -1)
            cv2.rectangle(canvas, (x + 4, y - 12), (x + 20, y + 2), (120, 120, 120), 1)
        text(canvas, label, (x + 30, y), 0.42, MUTED)
        x += needed
    return y + 10


def _probability_bars(canvas, result, left, top, width) -> int:
    y = paragraph(canvas, "Class probabilities. The bar is the model's answer; the dot and whisker show how much "
                          "it varies when parts of the model are switched off at random (MC dropout mean +- 1 sd): "
                          "a long whisker means an unsteady answer.", (left, top + 8), width, 0.5, INK)
    labels = [f"{name}  {CLASS_DESCRIPTIONS.get(name, '')}".strip() for name in result.class_names]
    label_width = min(max(text_width(label, 0.45) for label in labels) + 12, width // 3)
    scale = width - label_width - 60
    mean, spread = result.uncertainty.mean_probabilities, result.uncertainty.spread
    predicted = int(np.argmax(result.probabilities))
    for index, (label, probability) in enumerate(zip(labels, result.probabilities)):
        lines = wrap(label, label_width - 8, 0.45)
        row = max(28, 16 * len(lines) + 10)
        learnt = result.class_names[index] not in result.untrained_classes
        for number, line in enumerate(lines):
            text(canvas, line, (left, y + 12 + number * 16), 0.45, INK if learnt else MUTED,
                 2 if index == result.cam_class else 1)
        x0 = left + label_width
        if not learnt:
            text(canvas, NOT_LEARNT, (x0, y + 13), 0.45, MUTED)
            y += row
            continue
        colour = BLUE if index == predicted else (173, 181, 189)
        cv2.rectangle(canvas, (x0, y), (x0 + scale, y + 16), (241, 243, 245), -1)
        cv2.rectangle(canvas, (x0, y), (x0 + int(scale * probability), y + 16), colour, -1)
        centre = x0 + int(scale * mean[index])
        low = x0 + int(scale * max(mean[index] - spread[index], 0))
        high = x0 + int(scale * min(mean[index] + spread[index], 1))
        cv2.line(canvas, (low, y + 8), (high, y + 8), INK, 2, cv2.LINE_AA)
        cv2.circle(canvas, (centre, y + 8), 4, INK, -1, cv2.LINE_AA)
        text(canvas, f"{probability:.2f}", (x0 + scale + 8, y + 13), 0.45, INK)
        y += row
    return y


def abcd_lines(abcde: dict | None) -> list[tuple[str, str, tuple | str | None]]:
    """The ABCD block as (criterion letter or '', text, colour): each criterion's value, the ABCD points it
    earns and the dermoscopic reference, then one summary line. Colour None is body text."""
    if abcde is None:
        return []
    if abcde.get("status") == "unreliable":
        return [("", "ABCD criteria", "heading"),
                ("", "not measured: the lesion outline failed its quality check (" + "; ".join(abcde["reasons"])
                     + "). " + retry_advice(abcde), AMBER)]
    if abcde.get("asymmetry") is None:
        return [("", "ABCD criteria", "heading"), ("", "no lesion found in the image: nothing measured", AMBER)]
    asymmetry, border, colour, diameter = abcde["asymmetry"], abcde["border"], abcde["color"], abcde["diameter"]
    size = (f"{diameter['feret_mm']:.1f} mm" if diameter["feret_mm"] is not None
            else f"{diameter['feret_px']:.0f} px (no --mm-per-px calibration, so no mm)")
    a_points, b_points = asymmetry["points"], border["cutoff_segments"]
    lines = [
        ("", ABCD_HEADINGS.get(abcde.get("domain", "dermoscopy"), ABCD_HEADINGS["dermoscopy"]), "heading"),
        ("A", f"{counted(a_points, 'point')} of 0-2 " + ("(the asymmetry rule fitted to PH2's dermatologists; "
              if asymmetry.get("fitted") else "(") + f"geometrically asymmetric about {asymmetry['geometric_points']}"
              f" of 2 principal axes: shape {asymmetry['shape']:.2f}, colour {asymmetry['color']:.2f})", None),
        ("B", f"abrupt pigment cut-off in {b_points} of 8 border sectors: {counted(b_points, 'point')} of 0-8 "
              f"(compactness {border['compactness']:.2f}; a circle is 1.00)", None),
        ("C", colour_text(colour), None),
        ("D", f"here the maximum diameter, {size}" + (", above 6 mm" if diameter["large"] else "")
              + "; not Stolz's D (differential structures), " + structures_text(abcde.get("structures")), None),
    ]
    skin = abcde.get("skin")
    if skin:
        lines.append(("", f"Skin around it: ITA {skin['ita_deg']:.0f} deg ({skin['band']}), measured under the "
                          "image's own light: an approximation of skin tone, not a Fitzpatrick type", MUTED))
    partial = abcde.get("partial_score")
    if partial:
        lines.append(("", f"Partial score (A, B and C terms only) = 1.3 x {a_points} + 0.1 x {b_points} + 0.5 x "
                          f"{colour['count']} = {partial['value']:.2f}. It lacks "
                          "the rule's D term, so it is not a Total Dermoscopy Score and says nothing against TDS "
                          "cut-offs; it only summarises what was measured.", MUTED))
    flags = abcde["segmentation"]["flags"]
    if flags:
        lines.append(("", f"segmentation flags: {', '.join(flags)}: read the numbers with care", AMBER))
    return lines


def counted(number: int, noun: str) -> str:
    """'1 point', '2 points'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def colour_text(colour: dict) -> str:
    """C: the dermoscopic colours measured reliably and their points, which are not measured, or why none is read."""
    if colour.get("status") == "not_applicable":
        return f"not applicable: {colour['reason']}"
    count = colour["count"]
    named = ", ".join(name.replace("_", " ") for name in colour["present"]) or "none"
    line = f"{counted(count, 'dermoscopic colour')} ({named}): {counted(count, 'point')} of 1-6"
    unreliable = colour.get("not_measured") or []
    if unreliable:
        line += (f"; not measured: {', '.join(name.replace('_', ' ') for name in unreliable)} (agreement with "
                 "dermatologists below kappa 0.4), so the count is a lower bound")
    return line


def structures_text(structures: dict | None) -> str:
    """Which dermoscopic structures were looked for (those agreeing with dermatologists at kappa >= 0.4) and seen."""
    if structures and structures.get("status") == "not_applicable":
        return "and dermoscopic structures are not applicable here"
    if not structures or not structures["measured"]:
        return "which is not measured"
    seen = ", ".join(name.replace("_", " ") for name in structures["present"]) or "none"
    looked = ", ".join(name.replace("_", " ") for name in structures["measured"])
    return f"which is not measured in full; of the structures looked for ({looked}), seen: {seen}"


def retry_advice(abcde: dict) -> str:
    """What to do about a withheld outline: point at the lesion where that was found to help, else retake."""
    point = abcde.get("suggested_lesion_at")
    if point:
        return f"Pointing at the lesion measures it: rerun with --lesion-at {point[0]:.0f},{point[1]:.0f}."
    return "Retake the photo closer, evenly lit, with the lesion whole and in the middle."


def _facts(canvas, result, left, top, width) -> int:
    u = result.uncertainty
    most = float(np.log(len(result.class_names)))
    lines = [("Uncertainty (MC dropout at the head)", "heading"),
             (f"How spread the answer is: {u.predictive / most:.0%} of the most it can be; of that, "
              f"{u.epistemic / max(u.predictive, 1e-12):.0%} changes as dropout switches features off, the rest "
              "is spread in every sample.", None),
             (UNCERTAINTY_MEANING, None),
             (f"entropy {u.predictive:.3f} = aleatoric {u.aleatoric:.3f} + epistemic {u.epistemic:.3f} nats; "
              f"{u.mc_samples} samples, seed {result.mc_seed}", MUTED)]
    lines += [(f"{key}  {value}" if key else value, colour) for key, value, colour in abcd_lines(result.abcde)]
    if result.alignment:
        lines.append((f"attention inside the lesion {result.alignment['inside_share']:.0%}, peak "
                      f"{'inside' if result.alignment['pointing_game'] else 'outside'} it", MUTED))
    y = top + 8
    for value, colour in lines:
        if colour == "heading":
            y = paragraph(canvas, value, (left, y + 4), width, 0.55, INK, 2, leading=24) + 2
        else:
            y = paragraph(canvas, value, (left, y), width, 0.42, INK if colour is None else colour, 1,
                          leading=19) + 3
    return y


def _concepts(canvas, concepts, left, top, width) -> int:
    parts = [f"{name}: cos {score['cosine']:+.2f}, dd {score['directional_derivative']:+.2f}"
             for name, score in concepts["scores"].items()]
    y = paragraph(canvas, "Concepts (FastCAV):   " + "   ".join(parts), (left, top + 16), width, 0.45, INK)
    return paragraph(canvas, CONCEPT_LEGEND, (left, y), width, 0.42, MUTED)


def _footer(canvas, result, top) -> int:
    cv2.line(canvas, (GAP, top), (WIDTH - GAP, top), RULE, 1)
    y = paragraph(canvas, DISCLAIMER, (GAP, top + 22), WIDTH - 2 * GAP, 0.42, MUTED)
    model = result.model
    return paragraph(canvas, f"model {model['name']} ({model['sha256'][:12]}) on {model['backend']}; trained on "
                             f"{model['trained_on']}" + ("  - " + DEMO_DISCLAIMER if result.is_demo else ""),
                     (GAP, y), WIDTH - 2 * GAP, 0.42, MUTED)

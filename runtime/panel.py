"""The PNG panel a clinician reads at a glance: image, GradCAM++ overlay, ABCDE marks, probabilities with
their MC spread, the review flag, and the disclaimer."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.abcde.overlay import abcde_overlay
from runtime.draw import (
    AMBER,
    BLUE,
    GREEN,
    INK,
    MUTED,
    RED,
    banner,
    fit,
    heat_overlay,
    outline,
    text,
    text_width,
)
from runtime.manifest import CLASS_DESCRIPTIONS
from runtime.report import DEMO_DISCLAIMER, DISCLAIMER

TILE_W, TILE_H, GAP = 440, 330, 16
WIDTH = 3 * TILE_W + 4 * GAP


def render_panel(result) -> np.ndarray:
    rgb = result.extra["rgb"]
    concepts_height = 40 if result.concepts else 0
    height = 64 + 34 + TILE_H + 30 + 300 + concepts_height + 56 + (30 if result.is_demo else 0)
    canvas = np.full((height, WIDTH, 3), 255, np.uint8)
    top = 0
    if result.is_demo:
        banner(canvas, "DEMO WEIGHTS (synthetic training data) - not for diagnosis", 0, AMBER)
        top = 30
    _header(canvas, result, top)
    top += 64 + 34
    heat = heat_overlay(rgb, result.heatmap)
    if result.lesion_mask is not None:
        heat = outline(heat, result.lesion_mask, (255, 255, 255), max(2, rgb.shape[0] // 200))
    tiles = [(rgb, "Image"), (heat, f"GradCAM++: {result.class_names[result.cam_class]}"),
             (abcde_overlay(rgb, result.abcde or {}, result.lesion_mask), "ABCD: outline, axes, Feret diameter")]
    for index, (picture, caption) in enumerate(tiles):
        left = GAP + index * (TILE_W + GAP)
        canvas[top:top + TILE_H, left:left + TILE_W] = fit(picture, TILE_W, TILE_H)
        text(canvas, caption, (left, top + TILE_H + 20), 0.5, MUTED)
    top += TILE_H + 30
    _probability_bars(canvas, result, GAP, top + 10, 2 * TILE_W + GAP)
    _facts(canvas, result, GAP + 2 * (TILE_W + GAP), top + 10)
    top += 300
    if result.concepts:
        _concepts(canvas, result.concepts, GAP, top + 10)
        top += concepts_height
    _footer(canvas, result, top + 6)
    return canvas


def _header(canvas, result, top):
    label = result.label
    text(canvas, f"{label}  {CLASS_DESCRIPTIONS.get(label, '')}", (GAP, top + 34), 1.0, INK, 2)
    text(canvas, f"p = {result.probabilities.max():.2f}   image {result.image}", (GAP, top + 56), 0.5, MUTED)
    uncertainty = result.uncertainty
    if uncertainty.flagged:
        message, colour = "REVIEW: refer for a clinician's look", RED
    else:
        message, colour = "no referral by the review rule", GREEN
    width = text_width(message, 0.6, 2) + 24
    cv2.rectangle(canvas, (WIDTH - GAP - width, top + 14), (WIDTH - GAP, top + 48), colour, -1)
    text(canvas, message, (WIDTH - GAP - width + 12, top + 38), 0.6, (255, 255, 255), 2)
    rule = f"review rule: {result.referral['reason']}" if result.referral else ""
    if result.temperature != 1.0:
        rule += f"; probabilities calibrated (temperature {result.temperature:.2f})"
    text(canvas, rule, (GAP, top + 77), 0.45, colour)
    cv2.line(canvas, (GAP, top + 84), (WIDTH - GAP, top + 84), (222, 226, 230), 1)


def _probability_bars(canvas, result, left, top, width):
    text(canvas, "Class probabilities (bar: dropout off; dot and whisker: MC mean +- 1 sd)", (left, top + 8),
         0.5, INK, 1)
    row, label_width = 28, 200
    scale = width - label_width - 60
    mean, spread = result.uncertainty.mean_probabilities, result.uncertainty.spread
    for index, (name, probability) in enumerate(zip(result.class_names, result.probabilities)):
        y = top + 24 + index * row
        colour = BLUE if index == int(np.argmax(result.probabilities)) else (173, 181, 189)
        text(canvas, f"{name:<5} {CLASS_DESCRIPTIONS.get(name, '')[:22]}", (left, y + 15), 0.45, INK)
        x0 = left + label_width
        cv2.rectangle(canvas, (x0, y + 3), (x0 + scale, y + 19), (241, 243, 245), -1)
        cv2.rectangle(canvas, (x0, y + 3), (x0 + int(scale * probability), y + 19), colour, -1)
        centre = x0 + int(scale * mean[index])
        low = x0 + int(scale * max(mean[index] - spread[index], 0))
        high = x0 + int(scale * min(mean[index] + spread[index], 1))
        cv2.line(canvas, (low, y + 11), (high, y + 11), INK, 2, cv2.LINE_AA)
        cv2.circle(canvas, (centre, y + 11), 4, INK, -1, cv2.LINE_AA)
        text(canvas, f"{probability:.2f}", (x0 + scale + 8, y + 16), 0.45, INK)


def _facts(canvas, result, left, top):
    u = result.uncertainty
    lines = [("Uncertainty", None),
             (f"predictive {u.predictive:.3f} = aleatoric {u.aleatoric:.3f} + epistemic {u.epistemic:.3f}", None),
             (f"{u.mc_samples} MC dropout samples, seed {result.extra.get('mc_seed')}", MUTED)]
    abcde = result.abcde
    if abcde and abcde.get("asymmetry"):
        diameter = abcde["diameter"]
        size = (f"{diameter['feret_mm']:.1f} mm" if diameter["feret_mm"] is not None
                else f"{diameter['feret_px']:.0f} px (no calibration)")
        lines += [("ABCD criteria", None),
                  (f"A  asymmetry {abcde['asymmetry']['shape']:.2f} shape, {abcde['asymmetry']['color']:.2f} colour: "
                   f"{abcde['asymmetry']['points']}/2 axes", None),
                  (f"B  compactness {abcde['border']['compactness']:.2f}, "
                   f"cut-off {abcde['border']['cutoff_segments']}/8 sectors", None),
                  (f"C  {abcde['color']['count']} colours: {', '.join(abcde['color']['present']) or '-'}", None),
                  (f"D  max diameter {size}" + ("  (> 6 mm)" if diameter["large"] else ""), None)]
        if result.alignment:
            lines.append((f"attention inside lesion {result.alignment['inside_share']:.0%}, peak "
                          f"{'inside' if result.alignment['pointing_game'] else 'outside'}", MUTED))
        flags = abcde["segmentation"]["flags"]
        if flags:
            lines.append((f"segmentation: {', '.join(flags)}", AMBER))
    elif abcde is not None:
        lines += [("ABCD criteria", None), ("no lesion found in the image", AMBER)]
    y = top + 8
    for value, colour in lines:
        heading = colour is None and value in ("Uncertainty", "ABCD criteria")
        ink = INK if colour is None else colour
        text(canvas, value, (left, y), 0.55 if heading else 0.42, ink, 2 if heading else 1)
        y += 26 if heading else 22


def _concepts(canvas, concepts, left, top):
    parts = [f"{name}: cos {score['cosine']:+.2f}, dd {score['directional_derivative']:+.2f}"
             for name, score in concepts["scores"].items()]
    text(canvas, "Concepts (FastCAV)   " + "   ".join(parts), (left, top + 16), 0.45, INK)


def _footer(canvas, result, top):
    cv2.line(canvas, (GAP, top), (WIDTH - GAP, top), (222, 226, 230), 1)
    text(canvas, DISCLAIMER, (GAP, top + 22), 0.42, MUTED)
    model = result.model
    text(canvas, f"model {model['name']} ({model['sha256'][:12]}) on {model['backend']}; trained on "
                 f"{model['trained_on']}" + ("  - " + DEMO_DISCLAIMER if result.is_demo else ""),
         (GAP, top + 44), 0.42, MUTED)

"""Lesion segmentation. A learned segmenter (`segmenter.py`: the dermoscopy one, trained on HAM10000's expert
masks, then where its outline fails the clinical one, fine-tuned on smartphone photos) decides what is lesion, so
a light-brown periphery, regression or a lesion filling the field is outlined whole; the edge is then cut in
OpenCV at the half-contrast point of the colour, pixel by pixel at full resolution, with hairs, ruler marks,
specular highlights and the dark vignette of a dermatoscope inpainted or masked out.

The colour route (threshold the CIELAB distance from the skin, keep the central component, cut the same edge)
outlines what the learned segmenter finds nothing in: a lesion located in a wide clinical view (`locate.py`)
or pointed at. Whichever outline is kept, its quality check (`quality.py`) decides whether it is measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import cv2
import numpy as np

from runtime.abcde.artifacts import ellipse, field_of_view_mask, remove_artifacts
from runtime.abcde.edge import SKIN_LEVEL_FLOOR, largest_filled, refine_edge, upsample
from runtime.abcde.locate import (
    LOCATE_SIDE,
    background_distance,
    candidates,
    crop_around,
    most_lesion_like,
    nearest,
    point_box,
)
from runtime.abcde.palette import to_lab
from runtime.abcde.quality import NOT_FOUND, Quality, assess, view_edge
from runtime.abcde.robust import median_spread
from runtime.abcde.segmenter import lesion_probability

WORKING_SIDE = 200
MIN_CONTRAST = 10.0
NO_LESION_CONTRAST = 3.0
MIN_AREA_FRACTION = 0.003
SKIN_LEVEL_FACTOR = 5.0
RING_SAMPLES = 1500
ZOOM_BELOW_SHARE = 0.08
LEARNED_LEVEL = 0.5


@dataclass
class Segmentation:
    mask: np.ndarray
    flags: list[str] = field(default_factory=list)
    contrast: float = 0.0
    working_lab: np.ndarray | None = None  # the image at working resolution, in CIELAB
    hairs: np.ndarray | None = None  # long thin artefacts (hairs, ruler lines) at working resolution
    working_mask: np.ndarray | None = None  # the mask at working resolution
    contour: np.ndarray | None = None  # the mask's outer contour (K x 2), when known
    quality: Quality = NOT_FOUND
    located: bool = False  # found by locating it in a wide view (the working copies are then not kept)
    cleaned_lab: np.ndarray | None = None  # working_lab with hairs and highlights inpainted (learned outlines)
    working_rgb: np.ndarray | None = None  # the image at working resolution (learned outlines)
    segmenter: str | None = None  # the learned segmenter that outlined it (runtime.abcde.segmenter.KINDS)

    @property
    def learned(self) -> bool:
        return self.segmenter is not None

    @property
    def area_px(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def found(self) -> bool:
        return "no_lesion" not in self.flags


def segment(image_rgb: np.ndarray, lesion_at: tuple[float, float] | None = None) -> Segmentation:
    """RGB uint8 image of any size -> lesion mask (uint8 0/1, same size), quality flags and, in `quality`,
    whether the outline is good enough to measure. The dermoscopy segmenter outlines the lesion (`segment_learned`);
    when that outline fails its check, the clinical segmenter tries the same view and is kept if it passes;
    otherwise the failed outline is returned (and withheld). Where the dermoscopy segmenter finds no lesion at all,
    or `lesion_at` (x, y in the image's pixels) points at one, the colour route segments it."""
    if lesion_at is not None:
        return segment_located(image_rgb, lesion_at)
    view = WorkingView(image_rgb)
    dermoscopic = segment_learned(view, "dermoscopy")
    if dermoscopic.quality.reliable:
        return dermoscopic
    clinical = segment_learned(view, "clinical")
    if clinical.quality.reliable:
        return clinical
    return dermoscopic if dermoscopic.found else segment_classical(image_rgb)


class WorkingView:
    """An image prepared once for every learned segmenter that outlines it: its working-size copy with hairs,
    ruler marks and highlights inpainted, the dermatoscope's field of view and CIELAB; and, when first asked for,
    the crop around the lesion the colour route locates in it."""

    def __init__(self, image_rgb: np.ndarray):
        self.image_rgb = image_rgb
        self.small = working_image(image_rgb)
        cleaned, holes, self.hairs = remove_artifacts(self.small)
        self.field_of_view = field_of_view_mask(cleaned)
        self.original_lab = to_lab(self.small)
        self.lab = with_pixels_of(self.original_lab, cleaned, holes)

    @cached_property
    def located(self) -> tuple[tuple[int, int, int, int], WorkingView] | None:
        """The crop (x0, y0, x1, y1) around the most lesion-like blob and that crop prepared; None if none."""
        crop = lesion_crop(self.image_rgb, None)
        if crop is None:
            return None
        x0, y0, x1, y1 = crop
        return crop, WorkingView(self.image_rgb[y0:y1, x0:x1])


def segment_learned(view: WorkingView, kind: str) -> Segmentation:
    """The `kind` segmenter outlines the lesion in the whole view, again in a crop around it when it is small;
    when that outline fails its check, its outline of a crop around the lesion the colour route locates is kept
    if it passes."""
    image_rgb = view.image_rgb
    learned = learned_outline(view, kind)
    if learned.found and learned.area_px < ZOOM_BELOW_SHARE * learned.mask.size:
        x, y, w, h = cv2.boundingRect(learned.mask)
        height, width = image_rgb.shape[:2]
        crop = crop_around((x, y, x + w, y + h), 1.0, (width, height))
        x0, y0, x1, y1 = crop
        zoomed = in_crop(image_rgb, crop, learned_outline(WorkingView(image_rgb[y0:y1, x0:x1]), kind))
        learned = zoomed if zoomed.found and overlap(zoomed.mask, learned.mask) >= 0.5 else learned
    if learned.quality.reliable or not learned.found or view.located is None:
        return learned
    crop, located_view = view.located
    located = in_crop(image_rgb, crop, learned_outline(located_view, kind))
    return located if located.found and located.quality.reliable else learned


def segment_classical(image_rgb: np.ndarray) -> Segmentation:
    """Colour thresholds alone: the whole view, else the lesion located in it and segmented in a crop."""
    whole = segment_view(image_rgb, clinical=False)
    if whole.quality.reliable:
        if whole.area_px >= ZOOM_BELOW_SHARE * whole.mask.size:
            return whole
        zoomed = segment_located(image_rgb, None, around=cv2.boundingRect(whole.mask))
        return zoomed if zoomed.quality.reliable and overlap(zoomed.mask, whole.mask) >= 0.5 else whole
    located = segment_located(image_rgb, None)
    return located if located.quality.reliable or located.quality.score > whole.quality.score else whole


def learned_outline(view: WorkingView, kind: str) -> Segmentation:
    """The `kind` segmenter decides what is lesion (probability above LEARNED_LEVEL, the component nearest the
    centre, holes filled); its edge is then cut where the colour crosses half-way between the skin around it and
    the lesion inside, pixel by pixel at full resolution (`edge.py`), as the colour route cuts its own."""
    height, width = view.image_rgb.shape[:2]
    small, field_of_view, lab = view.small, view.field_of_view, view.lab
    scale = small.shape[1] / width
    probability = lesion_probability(small, kind=kind)
    binary = cv2.compare(probability, LEARNED_LEVEL, cv2.CMP_GT) // 255 & field_of_view
    component = central_component(cv2.morphologyEx(binary, cv2.MORPH_OPEN, ellipse(3)))
    if component is None or cv2.countNonZero(component) < MIN_AREA_FRACTION * cv2.countNonZero(field_of_view):
        empty = np.zeros((height, width), np.uint8)
        return Segmentation(empty, ["no_lesion"], 0.0, view.original_lab, view.hairs, quality=NOT_FOUND)
    component = largest_filled(component)
    around = field_of_view & (1 - cv2.dilate(component, ellipse(9)))
    skin = np.flatnonzero(around)[:: max(1, cv2.countNonZero(around) // RING_SAMPLES)]
    if skin.size < 50:
        skin = skin_samples(field_of_view)
    distance = colour_distance_from_skin(lab, field_of_view, skin)
    centre, spread = median_spread(distance.ravel()[skin])
    edge = refine_edge(component, distance, field_of_view, view.hairs,
                       max(SKIN_LEVEL_FLOOR, centre + SKIN_LEVEL_FACTOR * spread))
    small_mask = edge.mask
    mask, contour = (small_mask, None) if scale == 1 else upsample(edge, (width, height))
    quality = assess(view.original_lab, small_mask, field_of_view, probability)
    flags = ["touches_border"] if touches_border(small_mask, field_of_view) else []
    return Segmentation(mask, flags, quality.score, view.original_lab, view.hairs, small_mask, contour, quality,
                        cleaned_lab=lab, working_rgb=small, segmenter=kind)


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of two 0/1 masks."""
    return cv2.countNonZero(first & second) / max(cv2.countNonZero(first | second), 1)


def segment_view(image_rgb: np.ndarray, clinical: bool, hair_width: float | None = None) -> Segmentation:
    """Segment the lesion that fills the middle of the view: the colour distance from the skin in the
    outer ring (`clinical`: from a plane fitted to the skin, for a crop of a photo lit unevenly, and grown
    no further than half the lesion's contrast), Otsu with hysteresis, the central component, its edge cut
    at the half-contrast point. Hairs narrower than `hair_width` pixels are inpainted (default: a 40th of
    the view)."""
    height, width = image_rgb.shape[:2]
    small = working_image(image_rgb)
    scale = small.shape[1] / width
    cleaned, holes, hairs = remove_artifacts(small, None if hair_width is None else round(hair_width * scale))
    field_of_view = np.ones(small.shape[:2], np.uint8) if clinical else field_of_view_mask(cleaned)
    original_lab = to_lab(small)
    skin = skin_samples(field_of_view)
    lab = with_pixels_of(original_lab, cleaned, holes)
    distance = (cv2.GaussianBlur(background_distance(lab, degree=1), (3, 3), 0) if clinical
                else colour_distance_from_skin(lab, field_of_view, skin))
    growable = field_of_view & (1 - hairs) if clinical else field_of_view
    small_mask, contrast, level = threshold_lesion(distance, field_of_view, skin, 0.5 if clinical else 0.0, growable)
    flags = []
    if small_mask is None or contrast < NO_LESION_CONTRAST:
        flags.append("no_lesion")
    elif contrast < MIN_CONTRAST:
        flags.append("low_contrast")
    if "no_lesion" in flags:
        empty = np.zeros((height, width), np.uint8)
        return Segmentation(empty, flags, float(contrast), original_lab, hairs, quality=NOT_FOUND)
    edge = refine_edge(small_mask, distance, field_of_view, hairs, level)
    small_mask = edge.mask
    mask, contour = (small_mask, None) if scale == 1 else upsample(edge, (width, height))
    if touches_border(small_mask, field_of_view):
        flags.append("touches_border")
    quality = assess(original_lab, small_mask, field_of_view)
    return Segmentation(mask, flags, float(contrast), original_lab, hairs, small_mask, contour, quality)


def segment_located(image_rgb: np.ndarray, lesion_at: tuple[float, float] | None,
                    around: tuple[int, int, int, int] | None = None) -> Segmentation:
    """Find the most lesion-like blob near `lesion_at` (default: the centre) in a wide view, or take the
    box `around` (x, y, width, height in the image's pixels), and segment a crop around it by the colour route."""
    height, width = image_rgb.shape[:2]
    if around is not None:
        x, y, w, h = around
        return segment_crop(image_rgb, crop_around((x, y, x + w, y + h), 1.0, (width, height)))
    crop = lesion_crop(image_rgb, lesion_at)
    if crop is None:
        return Segmentation(np.zeros((height, width), np.uint8), ["no_lesion"], quality=NOT_FOUND)
    return segment_crop(image_rgb, crop)


def lesion_crop(image_rgb: np.ndarray, lesion_at: tuple[float, float] | None) -> tuple[int, int, int, int] | None:
    """The crop (x0, y0, x1, y1) around the most lesion-like blob near `lesion_at` (default: the centre) in a wide
    view; around the point itself when one is given and no blob is near it; None when none is found."""
    height, width = image_rgb.shape[:2]
    small = working_image(image_rgb, LOCATE_SIDE)
    scale = width / small.shape[1]
    cleaned, _, hairs = remove_artifacts(small)
    found = candidates(background_distance(to_lab(cleaned)), hairs)
    point = (width / 2, height / 2) if lesion_at is None else lesion_at
    small_point = (point[0] / scale, point[1] / scale)
    target = (most_lesion_like(found, small_point, small.shape[1::-1]) if lesion_at is None
              else nearest(found, small_point, reach=0.05 * np.hypot(*small.shape[:2])))
    if target is None and lesion_at is None:
        return None
    box = target.box if target is not None else point_box(small_point, 0.04 * np.hypot(*small.shape[:2]))
    return crop_around(box, scale, (width, height))


def segment_crop(image_rgb: np.ndarray, crop: tuple[int, int, int, int]) -> Segmentation:
    """Segment the lesion in the middle of `crop` (x0, y0, x1, y1) by the colour route for a crop of a photo."""
    height, width = image_rgb.shape[:2]
    x0, y0, x1, y1 = crop
    inner = segment_view(image_rgb[y0:y1, x0:x1], clinical=True, hair_width=max(height, width) / 40)
    return in_crop(image_rgb, crop, inner)


def in_crop(image_rgb: np.ndarray, crop: tuple[int, int, int, int], inner: Segmentation) -> Segmentation:
    """The segmentation `inner` of the crop (x0, y0, x1, y1), with its mask, flags and contour in the whole image."""
    height, width = image_rgb.shape[:2]
    x0, y0, x1, y1 = crop
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = inner.mask
    flags = [flag for flag in inner.flags if flag != "touches_border"]
    if inner.found and touches_border(mask, np.ones_like(mask)):
        flags.append("touches_border")
    contour = None if inner.contour is None else inner.contour + np.array([x0, y0], np.int32)
    return Segmentation(mask, flags, inner.contrast, None, None, None, contour, inner.quality, located=True,
                        segmenter=inner.segmenter)


def working_image(image_rgb: np.ndarray, side: int = WORKING_SIDE) -> np.ndarray:
    """Downscale by the whole factor that brings the longer side to at most `side` (OpenCV's area
    resampling is several times faster for whole factors)."""
    height, width = image_rgb.shape[:2]
    size = working_size(image_rgb.shape, side)
    if size == (width, height):
        return image_rgb
    return cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)


def working_size(shape: tuple[int, ...], side: int = WORKING_SIDE) -> tuple[int, int]:
    """The (width, height) `working_image` gives an image of `shape`."""
    height, width = shape[:2]
    factor = int(np.ceil(max(height, width) / side))
    if factor <= 1:
        return width, height
    return max(1, round(width / factor)), max(1, round(height / factor))


def with_pixels_of(lab: np.ndarray, image_rgb: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`lab` with the pixels at `where` taken from `image_rgb` (converting only those)."""
    index = np.flatnonzero(where)
    if index.size == 0:
        return lab
    out = lab.copy()
    out.reshape(-1, 3)[index] = to_lab(image_rgb.reshape(-1, 3)[index][None])[0]
    return out


def colour_distance_from_skin(lab: np.ndarray, field_of_view: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """CIELAB distance of every pixel from the skin colour, the median at the `skin` sample pixels."""
    skin_colour = np.median(lab.reshape(-1, 3)[skin], axis=0)
    difference = lab - skin_colour.astype(np.float32)
    distance = cv2.sqrt(cv2.transform(difference * difference, np.ones((1, 3), np.float32)))
    return cv2.GaussianBlur(distance, (3, 3), 0) * field_of_view


def skin_samples(field_of_view: np.ndarray) -> np.ndarray:
    """Flat indices of pixels in the outer ring of the view (about RING_SAMPLES), where the skin is."""
    ring = outer_ring(field_of_view.shape)
    ring = ring[field_of_view.ravel()[ring] > 0]
    if ring.size >= 50:
        return ring
    view = np.flatnonzero(field_of_view)
    return view[:: max(1, view.size // RING_SAMPLES)]


@lru_cache(maxsize=8)
def outer_ring(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    ring = np.flatnonzero(np.hypot((yy - height / 2) / (height / 2), (xx - width / 2) / (width / 2)) > 0.75)
    return ring[:: max(1, ring.size // RING_SAMPLES)]


def threshold_lesion(distance: np.ndarray, field_of_view: np.ndarray, skin: np.ndarray,
                     least_share_of_otsu: float = 0.0,
                     growable: np.ndarray | None = None) -> tuple[np.ndarray | None, float, float]:
    """Lesion = clearly unlike the skin: hysteresis from Otsu's level down to a level set by the skin's own
    spread at the `skin` sample pixels (at least `least_share_of_otsu` of Otsu's), so a lesion of many
    colours is not split at its own colour boundaries. Returns (mask, contrast, threshold in distance
    units)."""
    view_area = cv2.countNonZero(field_of_view)
    if view_area == 0:
        return None, 0.0, 0.0
    highest = cv2.minMaxLoc(distance, field_of_view)[1]
    if highest <= 0:
        return None, 0.0, 0.0
    unit = highest / 255.0
    scaled = cv2.convertScaleAbs(distance, alpha=1 / unit)
    high = otsu_level(cv2.calcHist([scaled], [0], field_of_view, [256], [0, 256]).ravel()) * unit
    skin_distance = distance.ravel()[skin]
    centre, spread = median_spread(skin_distance)
    level = min(high, max(SKIN_LEVEL_FLOOR, centre + SKIN_LEVEL_FACTOR * spread, least_share_of_otsu * high))
    binary = hysteresis(distance, high, level, field_of_view if growable is None else growable)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, ellipse(5))
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, ellipse(7))
    component = central_component(binary)
    if component is None or cv2.countNonZero(component) < MIN_AREA_FRACTION * view_area:
        return None, 0.0, 0.0
    component = largest_filled(component)
    return component, lesion_contrast(distance, component, field_of_view), level


def otsu_level(histogram: np.ndarray) -> float:
    """Otsu's threshold of a 256-bin histogram: the level that maximises the between-class variance."""
    share = histogram / max(histogram.sum(), 1)
    below = np.cumsum(share)
    below_mean = np.cumsum(share * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (below_mean[-1] * below - below_mean) ** 2 / (below * (1 - below))
    return float(np.argmax(np.nan_to_num(between[:-1], nan=-1.0)))


def lesion_contrast(distance: np.ndarray, component: np.ndarray, field_of_view: np.ndarray) -> float:
    """Median colour distance inside the lesion minus outside it (every other row and column)."""
    sampled, lesion, view = distance[::2, ::2], component[::2, ::2] > 0, field_of_view[::2, ::2] > 0
    return float(np.median(sampled[lesion]) - np.median(sampled[view & ~lesion]))


def hysteresis(distance: np.ndarray, high: float, low: float, field_of_view: np.ndarray) -> np.ndarray:
    """Pixels above `low` that are connected to a pixel above `high` (0/1)."""
    candidates = cv2.bitwise_and(cv2.compare(distance, low, cv2.CMP_GT), field_of_view * np.uint8(255)) // 255
    count, labels = cv2.connectedComponents(candidates, connectivity=8)
    seeded = np.bincount(labels[distance > high], minlength=count) > 0
    seeded[0] = False
    return seeded.astype(np.uint8)[labels]


def central_component(binary: np.ndarray) -> np.ndarray | None:
    """The connected component with the largest area weighted by closeness to the image centre."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return None
    height, width = binary.shape
    offsets = np.hypot((centroids[1:, 0] - width / 2) / width, (centroids[1:, 1] - height / 2) / height)
    scores = stats[1:, cv2.CC_STAT_AREA] * np.exp(-12 * offsets**2)
    return (labels == 1 + int(np.argmax(scores))).astype(np.uint8)


def touches_border(mask: np.ndarray, field_of_view: np.ndarray) -> bool:
    return bool((mask.astype(bool) & view_edge(field_of_view)).any())

"""`Predictor`: one bundle, one backend; image -> probabilities, MC uncertainty, GradCAM++, ABCDE."""

from __future__ import annotations

import os
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from runtime.abcde.analyze import DERMOSCOPY, Analysis, analyze_view, bounded_view
from runtime.abcde.api import check_point
from runtime.audit import AuditLog, prediction_entry, sha256_bytes
from runtime.backends import Backend, open_backend
from runtime.contract import (
    CAM_ACTIVATIONS,
    CAM_CLASS,
    CAM_GRADIENTS,
    EMBEDDING,
    IMAGE,
    LOGITS,
    MC_LOGITS,
    MC_MASK,
    check_graph,
)
from runtime.domain import domain_warnings, image_domain
from runtime.errors import MnetError
from runtime.explain.alignment import attention_alignment
from runtime.explain.gradcampp import gradcampp_maps, upsample
from runtime.imageio import MAX_PIXELS, as_rgb_array, decode_image, read_image_file
from runtime.manifest import find_class, sha256_file, sidecar_path
from runtime.options import ImageOptions, check_sampling
from runtime.preprocess import preprocess
from runtime.referral import review
from runtime.report import report_json
from runtime.result import Result
from runtime.signing import TrustedKeys
from runtime.stages import Item, drive
from runtime.uncertainty import draw_mc_mask, mc_uncertainty, softmax

SERVED_LIMIT_FIX = ("Downscale it (a lesion needs a few megapixels at most), or start the server with a higher "
                    "--max-pixels.")


@dataclass
class Prepared:
    """An image decoded and preprocessed, ready for the backend (stage one of `Predictor.predict`), with the view
    its explanations are drawn and measured on (at most MAX_ANALYSIS_SIDE pixels; `factor`: its scale)."""

    name: str
    rgb: np.ndarray
    header: dict
    tensor: np.ndarray
    timings: dict
    view: np.ndarray
    factor: float
    input_warnings: list[dict]
    sha256: str  # of the input as given: a file's or a request's bytes, an array's pixels (`array_digest`)


class Predictor:
    def __init__(self, model_path: str | Path, backend: str | Backend = "ort-cpu", mc_samples: int | None = None,
                 seed: int = 0, threads: int = 0, abcde: bool = True, mm_per_px: float | None = None,
                 lesion_at: tuple[float, float] | None = None,
                 verify: bool = True, max_pixels: int = MAX_PIXELS, audit: AuditLog | str | Path | None = None,
                 trusted_keys: TrustedKeys | str | Path | None = None):
        """`backend`: a name from `runtime.backends.BACKENDS`, or a backend already open on `model_path`.
        `verify=False` runs an ONNX bundle without checking it against its sidecar; the report records it.
        `audit`: a hash-chained log (runtime.audit) that gets one record per prediction (a path opens one).
        `trusted_keys` (default: $MNET_TRUSTED_KEYS): public keys one of which must have signed the bundle and,
        with `abcde`, the ABCD segmenters and rules (runtime.signing); unsigned or wrongly signed ones are refused."""
        self.path = Path(model_path)
        trusted = trusted_keys if isinstance(trusted_keys, TrustedKeys) else TrustedKeys.from_option(trusted_keys)
        if isinstance(backend, Backend):
            check_graph(backend)  # as open_backend checks every backend it opens
            if trusted is not None:  # opened elsewhere (Triton's ONNX model): its sidecar's signature still holds
                backend.signed_by = trusted.check(sidecar_path(model_path), str(model_path))
        self.backend = backend if isinstance(backend, Backend) else open_backend(model_path, backend, threads, verify,
                                                                                 trusted)
        if trusted is not None and abcde:
            from runtime.abcde.segmenter import model_records

            for record in model_records():
                trusted.check(record, f"the ABCD model file {record.name}")
        self.manifest = self.backend.manifest
        self.mc_samples = self.manifest.mc_samples if mc_samples is None else mc_samples
        check_sampling(self.mc_samples, seed)
        defaults = ImageOptions(None, mm_per_px, lesion_at)
        self.seed = seed
        self.referral = self.manifest.referral_rule
        features = self.backend.input(MC_MASK).shape[-1]
        self.mc_mask = draw_mc_mask(self.mc_samples, features, self.manifest.dropout_p, seed)
        self.with_abcde = abcde
        self.mm_per_px = defaults.mm_per_px
        self.lesion_at = defaults.lesion_at
        self.max_pixels = max_pixels
        self.model_info = {"name": self.manifest.architecture, "file": self.path.name,
                           "sha256": self.backend.sha256 or sha256_file(self.path), "backend": self.backend.name,
                           "precision": self.backend.precision,
                           "trained_on": self.manifest.trained_on, "source_sha256": self.manifest.source_sha256,
                           "input_size": self.manifest.preprocessing.image_size,
                           "verified_against_sidecar": verify or isinstance(backend, Backend),
                           "signed_by": self.backend.signed_by,
                           "model_card": self.manifest.model_card}
        # ABCD runs beside the network here; one thread per core, so that callers running `predict` from several
        # threads at once do not queue their ABCD behind one another (threads start only when needed).
        self.beside = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="abcde")
        self.audit = AuditLog(audit) if isinstance(audit, (str, Path)) else audit
        self.stages = PredictorStages(self)
        self.concepts = None
        if self.manifest.concepts:
            from runtime.concepts import ConceptScorer

            self.concepts = ConceptScorer(self.manifest.concepts)

    def class_index(self, name: str) -> int:
        return find_class(name, self.manifest.class_names)

    def predict(self, image: str | Path | np.ndarray, cam_class: str | None = None, name: str | None = None,
                mm_per_px: float | None = None, lesion_at: tuple[float, float] | None = None) -> Result:
        """One explained prediction: `prepare` (decode, preprocess), then the network (`infer`, with `measure`,
        ABCD, on a second thread meanwhile), then `explain` (uncertainty, GradCAM++, the attention alignment,
        concepts): `predict_batch` of one image, its error raised."""
        result = self.predict_batch([image], names=[name], options=[ImageOptions(cam_class, mm_per_px, lesion_at)])[0]
        if isinstance(result, MnetError):
            raise result
        return result

    def prepare(self, image: str | Path | np.ndarray | bytes, name: str | None = None) -> Prepared:
        """Decode (a file, an encoded image's bytes, or an RGB array), preprocess, and check the input's domain."""
        started = time.perf_counter()
        if isinstance(image, (str, Path)):
            name = name or Path(image).name
            data = read_image_file(image)
            rgb, header = decode_image(data, image)
            digest = sha256_bytes(data)  # the bytes just read, not the file read again
        elif isinstance(image, bytes):
            name = name or "<bytes>"
            rgb, header = decode_image(image, name, self.max_pixels, SERVED_LIMIT_FIX)
            digest = sha256_bytes(image)
        else:
            name = name or "<array>"
            rgb, header = as_rgb_array(image, name), {"format": "array", "exif_orientation": 1}
            digest = array_digest(image)
        decoded = time.perf_counter()
        tensor = preprocess(rgb, self.manifest.preprocessing)[None]
        view, factor = bounded_view(rgb)
        # The input-domain check needs only the view: here it runs where decoding does (a worker in a pipelined
        # batch), not after the network.
        warnings = domain_warnings(view)
        return Prepared(name, rgb, header, tensor, {"decode": _ms(started, decoded),
                                                    "preprocess": _ms(decoded, time.perf_counter())}, view, factor,
                        warnings, digest)

    def infer(self, prepared: Prepared, requested: int | None = None) -> dict:
        started = time.perf_counter()
        outputs = self._infer(prepared.tensor, requested)
        prepared.timings["inference"] = _ms(started, time.perf_counter())
        return outputs

    def measure(self, prepared: Prepared, mm_per_px: float | None = None,
                lesion_at: tuple[float, float] | None = None) -> Analysis:
        """ABCD on the prepared image's view (with the predictor's calibration and lesion point unless given), with
        the dermoscopic readings where the input-domain check found the image to be dermoscopy."""
        mark = time.perf_counter()
        calibration = mm_per_px if mm_per_px is not None else self.mm_per_px
        point = lesion_at if lesion_at is not None else self.lesion_at
        if point is not None:
            check_point(point, prepared.rgb, prepared.name)
        found = analyze_view(prepared.view, prepared.factor, calibration, point,
                             image_domain(prepared.input_warnings))
        prepared.timings["abcde"] = _since(mark)
        return found

    def explain(self, prepared: Prepared, outputs: dict, requested: int | None = None,
                mm_per_px: float | None = None, lesion_at: tuple[float, float] | None = None,
                measured: Analysis | None = None) -> Result:
        """Everything after the network: uncertainty, GradCAM++, ABCD (`measured` when `measure` already ran beside
        the network, as `run_network` does; else here), the attention alignment and concepts. `total` is the sum of
        the stage timings, less the time ABCD and the network ran at once (docs/report.md)."""
        timings = prepared.timings
        mark = time.perf_counter()
        temperature = self.manifest.temperature
        probabilities = softmax(outputs[LOGITS][0].astype(np.float64) / temperature)
        uncertainty = mc_uncertainty(outputs[MC_LOGITS][0].astype(np.float64) / temperature)
        referral = review(self.referral, uncertainty, probabilities, self.manifest.class_names,
                          prepared.input_warnings)
        uncertainty = replace(uncertainty, flagged=referral["flagged"])
        timings["uncertainty"] = _since(mark)
        mark = time.perf_counter()
        rgb, view = prepared.rgb, prepared.view
        target = requested if requested is not None else int(np.argmax(probabilities))
        class_maps = self._class_maps(outputs)
        row = target if class_maps.shape[0] > 1 else 0
        heatmap = upsample(class_maps[row], view.shape[1], view.shape[0])
        timings["gradcampp"] = _since(mark)
        analysis, mask, alignment, overlapped = None, None, None, 0.0
        if self.with_abcde:
            found = measured if measured is not None else self.measure(prepared, mm_per_px, lesion_at)
            if measured is not None:
                overlapped = min(timings["abcde"], timings.get("inference", 0.0))
            mark = time.perf_counter()
            mask, analysis = found.mask, found.measurements
            alignment = attention_alignment(heatmap, mask) if mask is not None else None
            timings["abcde"] = round(timings["abcde"] + _since(mark), 3)
        concepts = None
        # Concept vectors are learnt on dermoscopic images: on any other image their scores would be claims too.
        if self.concepts is not None and image_domain(prepared.input_warnings) == DERMOSCOPY:
            concepts = self.concepts.score(outputs[EMBEDDING][0], target, self.manifest.class_names)
        timings["total"] = round(sum(value for stage, value in timings.items() if stage != "total") - overlapped, 3)
        header = prepared.header
        return Result(image=prepared.name, image_size=(rgb.shape[1], rgb.shape[0]), probabilities=probabilities,
                      uncertainty=uncertainty, cam_class=target, heatmap=heatmap, class_maps=class_maps,
                      abcde=analysis, alignment=alignment, lesion_mask=mask, timings_ms=timings,
                      model=self.model_info, class_names=self.manifest.class_names, is_demo=self.manifest.is_demo,
                      concepts=concepts, referral=referral, temperature=temperature,
                      input_info={"format": header["format"], "exif_orientation": header["exif_orientation"],
                                  "sha256": prepared.sha256},
                      view_rgb=view, mc_seed=self.seed, untrained_classes=self.manifest.untrained_classes)

    def _infer(self, tensor: np.ndarray, requested: int | None) -> dict:
        feed = {IMAGE: tensor, MC_MASK: self.mc_mask}
        if self.backend.input(CAM_CLASS) is None:
            return self.backend.infer(feed)
        # An intermediate-layer bundle differentiates one class per pass: the requested one, or the
        # predicted one (known after a first pass; a second pass only when it differs).
        feed[CAM_CLASS] = np.array([requested if requested is not None else 0], np.int64)
        outputs = self.backend.infer(feed)
        predicted = int(np.argmax(outputs[LOGITS][0]))
        if requested is None and predicted != 0:
            feed[CAM_CLASS] = np.array([predicted], np.int64)
            outputs = self.backend.infer(feed)
        return outputs

    @staticmethod
    def _class_maps(outputs: dict) -> np.ndarray:
        return gradcampp_maps(outputs[CAM_ACTIVATIONS][0], outputs[CAM_GRADIENTS][0])

    @property
    def batched(self) -> bool:
        """Whether one backend call can run several images: a dynamic-batch bundle with the last-layer gradient."""
        return self.backend.inputs[0].shape[0] is None and self.backend.input(CAM_CLASS) is None

    def predict_batch(self, images: list, cam_class: str | None = None, names: list[str] | None = None,
                      options: list[ImageOptions] | None = None,
                      pool: Executor | None = None) -> list[Result | MnetError]:
        """The explained prediction of each item (a path, an encoded image's bytes or an RGB array), or the error
        that item raised: one bad image never stops the others. `options` (one per image) override `cam_class` and
        the predictor's mm_per_px and lesion_at. A dynamic-batch bundle runs the images that decoded in one backend
        call (the same MC mask for all, so an image's result does not depend on its batch mates); a fixed-batch
        bundle runs them one at a time. Each image's `inference` timing is its share of the call. ABCD runs while
        the network does; with a `pool`, the images are also decoded, and explained, on its threads at once (the
        results are the same). The stages are driven by `runtime.stages.drive`, as every other caller's are."""
        names = names or [None] * len(images)
        options = options or [ImageOptions(cam_class)] * len(images)
        items = [Item(image, name, asked) for image, name, asked in zip(images, names, options)]
        for item in items:
            if item.options.cam_class:
                found = self._attempt(self.class_index, item.options.cam_class)
                item.result, item.requested = (found, None) if isinstance(found, MnetError) else (None, found)
        together = max(1, len(items)) if self.batched else 1
        finished = [item.result for item in drive(self.stages, items, pool if len(items) > 1 else None,
                                                  ahead=max(1, len(items)), together=together)]
        if self.audit is not None:
            self._log(names, options, finished)
        return finished

    def _log(self, names: list, options: list[ImageOptions], results: list) -> None:
        """One audit record per prediction made: the input's sha256 (never its pixels), the settings, the
        outputs and the sha256 of the report as `report_json` serialises it (what a server sends)."""
        for name, asked, result in zip(names, options, results):
            if isinstance(result, MnetError):
                continue
            self.audit.record(prediction_entry(
                report_json(result.to_dict()), self.manifest, self.audit_options(asked),
                input_sha256=result.input_info["sha256"], input_name=(name or result.image)
                if self.audit.identity.log_names else None))

    def audit_options(self, asked: ImageOptions = ImageOptions()) -> dict:
        """The settings a replay needs beside T and the seed: what the image asked for, over the defaults."""
        lesion_at = asked.lesion_at or self.lesion_at
        return {"class": asked.cam_class, "mm_per_px": asked.mm_per_px or self.mm_per_px,
                "lesion_at": list(lesion_at) if lesion_at else None, "abcde": self.with_abcde}

    @staticmethod
    def _attempt(action, *arguments):
        try:
            return action(*arguments)
        except MnetError as error:
            return error.as_outcome()

    def close(self):
        self.beside.shutdown()
        self.backend.close()


def array_digest(array: np.ndarray) -> str:
    """The sha256 of an array input: its pixels with their shape and type."""
    array = np.ascontiguousarray(array)
    return sha256_bytes(f"{array.shape}{array.dtype}".encode() + array.tobytes())


def _since(start: float) -> float:
    return _ms(start, time.perf_counter())


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)


class PredictorStages:
    """A predictor's three stages over `Item`s (runtime.stages): `prepare` decodes and preprocesses; `run_network`
    runs a group's network (in one backend call where the bundle batches) with ABCD measuring each image beside
    it; `explain` does the rest."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def prepare(self, item: Item) -> Item:
        if item.result is None:
            prepared = self.predictor._attempt(self.predictor.prepare, item.image, item.name)
            item.prepared, item.result = (None, prepared) if isinstance(prepared, MnetError) else (prepared, None)
        return item

    def run_network(self, items: list[Item]) -> None:
        predictor = self.predictor
        ready = [item for item in items if item.result is None]
        measuring = [predictor.beside.submit(predictor._attempt, predictor.measure, item.prepared,
                                             item.options.mm_per_px, item.options.lesion_at)
                     for item in ready] if predictor.with_abcde else []
        try:
            if predictor.batched and len(ready) > 1:
                self._together(ready)
            else:
                for item in ready:
                    outputs = predictor._attempt(predictor.infer, item.prepared, item.requested)
                    item.outputs, item.result = (None, outputs) if isinstance(outputs, MnetError) else (outputs, None)
        finally:
            for item, future in zip(ready, measuring):
                item.measured = future.result()

    def _together(self, items: list[Item]) -> None:
        started = time.perf_counter()
        try:
            outputs = self.predictor.backend.infer({IMAGE: np.concatenate([item.prepared.tensor for item in items]),
                                                    MC_MASK: self.predictor.mc_mask})
        except MnetError as error:
            for item in items:
                item.result = error.as_outcome()
            return
        share = _ms(started, time.perf_counter()) / len(items)
        for row, item in enumerate(items):
            item.prepared.timings["inference"] = share
            # Outputs shared by the batch (the last-layer gradient does not depend on the image) keep their axis 1.
            item.outputs = {name: value[row:row + 1] if len(value) == len(items) else value
                            for name, value in outputs.items()}

    def explain(self, item: Item) -> Item:
        if item.result is None:
            if isinstance(item.measured, MnetError):
                item.result = item.measured
            else:
                asked = item.options
                item.result = self.predictor._attempt(self.predictor.explain, item.prepared, item.outputs,
                                                      item.requested, asked.mm_per_px, asked.lesion_at,
                                                      item.measured)
        item.prepared = item.outputs = item.measured = None
        return item

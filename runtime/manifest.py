"""The manifest: the single source of truth for labels, preprocessing, outputs and thresholds.

It travels inside every artifact: in a checkpoint's safetensors metadata, in an ONNX model's
`metadata_props` and in the JSON sidecar of an engine, always under the key `MANIFEST_KEY`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from runtime.errors import ConfigError, ManifestError
from runtime.referral import DEFAULT_FLAG_THRESHOLD, ReferralRule


def find_class(name: str, class_names: tuple[str, ...], whose: str = "the model's") -> int:
    """The index of a class asked for by name, in any case (`mel` is MEL); the one place a class is looked up."""
    if name in class_names:
        return class_names.index(name)
    folded = [index for index, known in enumerate(class_names) if known.casefold() == name.casefold()]
    if len(folded) != 1:
        raise ConfigError(f"unknown class {name!r}; {whose} classes are {', '.join(class_names)}")
    return folded[0]

SCHEMA_VERSION = 3
LIFTED_FROM_EXTRA = ("concepts", "cam_mode", "split_seed")  # typed fields since schema 3
MANIFEST_KEY = "mnet.manifest"
CLASS_NAMES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
CLASS_DESCRIPTIONS = {
    "MEL": "melanoma",
    "NV": "melanocytic nevus",
    "BCC": "basal cell carcinoma",
    "AK": "actinic keratosis",
    "BKL": "benign keratosis",
    "DF": "dermatofibroma",
    "VASC": "vascular lesion",
    "SCC": "squamous cell carcinoma",
    "UNK": "none of the others",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("area", "bilinear", "bilinear_antialias")
DEFAULT_MC_SAMPLES = 30
GRAPH_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Preprocessing:
    """Resize the whole RGB image to `image_size` squared, scale to [0, 1], normalise per channel."""

    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "area"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ManifestError(f"unknown interpolation {self.interpolation!r}; expected one of {INTERPOLATIONS}")
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size < 32:
            raise ManifestError(f"image_size {self.image_size!r} is not a whole number of at least 32 px")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ManifestError(f"{name} {list(values)!r} is not 3 numbers (R, G, B)")
        if not all(v > 0 for v in self.std):
            raise ManifestError(f"std {list(self.std)!r} must be positive (the input is divided by it)")


@dataclass(frozen=True)
class Manifest:
    architecture: str
    preprocessing: Preprocessing
    class_names: tuple[str, ...] = CLASS_NAMES
    dropout_p: float = 0.3
    target_layer: str = ""
    mc_samples: int = DEFAULT_MC_SAMPLES
    flag_threshold: float = DEFAULT_FLAG_THRESHOLD
    trained_on: str = "unknown"
    outputs: dict = field(default_factory=dict)
    source_sha256: str = ""
    tool_versions: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    temperature: float = 1.0
    referral: dict = field(default_factory=dict)
    model_card: str = ""
    cam_mode: str = "last"
    split_seed: int = 0
    concepts: dict = field(default_factory=dict)
    precision: str = "fp32"  # of the graph's weights and arithmetic: fp32, fp16 or int8 (QDQ)
    quantization: dict = field(default_factory=dict)  # how a reduced-precision bundle was made and its fidelity
    initial_weights: dict = field(default_factory=dict)  # where training started: package/hub, file sha256; {} random
    untrained_classes: tuple[str, ...] = ()  # classes without a training image: never learnt, so never ruled out
    schema: int = SCHEMA_VERSION

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ManifestError(f"temperature {self.temperature!r} must be a positive number")
        names = self.class_names
        if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ManifestError(f"class_names {list(names)!r} must be distinct, non-empty names")
        if not (isinstance(self.dropout_p, (int, float)) and 0 <= self.dropout_p < 1):
            raise ManifestError(f"dropout_p {self.dropout_p!r} must be in [0, 1)")
        if not (isinstance(self.mc_samples, int) and self.mc_samples >= 1):
            raise ManifestError(f"mc_samples {self.mc_samples!r} must be a whole number of at least 1")
        ReferralRule.from_dict(self.referral, self.flag_threshold)
        unknown = sorted(set(self.untrained_classes) - set(names))
        if unknown:
            raise ManifestError(f"untrained_classes {unknown!r} are not among the class names {list(names)!r}")
        if self.precision not in GRAPH_PRECISIONS:
            raise ManifestError(f"precision {self.precision!r} is not one of {', '.join(GRAPH_PRECISIONS)}")

    @property
    def referral_rule(self) -> ReferralRule:
        """The manifest's rule; schema-1 bundles: predictive entropy above `flag_threshold`."""
        return ReferralRule.from_dict(self.referral, self.flag_threshold)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_demo(self) -> bool:
        return self.trained_on == "synthetic"

    def with_updates(self, **changes) -> "Manifest":
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> "Manifest":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ManifestError(f"{source}: the manifest is not valid JSON ({error})") from error
        if not isinstance(raw, dict) or "architecture" not in raw or "preprocessing" not in raw:
            raise ManifestError(f"{source}: the manifest lacks 'architecture' or 'preprocessing'")
        if raw.get("schema", 0) > SCHEMA_VERSION:
            raise ManifestError(
                f"{source}: manifest schema {raw['schema']} is newer than this toolkit reads "
                f"({SCHEMA_VERSION}); upgrade melanomanet-edge"
            )
        extra = raw.get("extra") if isinstance(raw.get("extra"), dict) else {}
        for key in LIFTED_FROM_EXTRA:
            if key not in raw and key in extra:
                raw[key] = extra[key]
                raw["extra"] = {k: v for k, v in raw["extra"].items() if k != key}
        try:
            pre = raw.pop("preprocessing")
            pre = Preprocessing(image_size=pre["image_size"], mean=tuple(pre["mean"]), std=tuple(pre["std"]),
                                interpolation=pre["interpolation"])
            known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
            known["class_names"] = tuple(known.get("class_names", CLASS_NAMES))
            known["untrained_classes"] = tuple(known.get("untrained_classes", untrained_classes(extra.get("data"))))
            return cls(preprocessing=pre, **known)
        except ManifestError as error:
            raise ManifestError(f"{source}: malformed manifest: {error}; re-export the model with mnet-export") \
                from None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ManifestError(f"{source}: malformed manifest ({type(error).__name__}: {error}); re-export the "
                                "model with mnet-export") from None


def untrained_classes(data_record: dict | None) -> tuple[str, ...]:
    """The classes a training data record (`extra.data`) gave no training image, in the model's order: those of
    its split's training part when recorded, else those absent from the data."""
    if not isinstance(data_record, dict):
        return ()
    trained = data_record.get("split", {}).get("parts", {}).get("train", {}).get("per_class")
    if isinstance(trained, dict):
        return tuple(name for name in data_record.get("class_names", CLASS_NAMES) if not trained.get(name))
    return tuple(data_record.get("absent_classes", ()))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(artifact: str | Path, manifest: Manifest, **facts) -> Path:
    """Write `<artifact>.json`: the manifest, the artifact's sha256 and any build facts."""
    path = sidecar_path(artifact)
    payload = {"artifact": Path(artifact).name, "sha256": sha256_file(artifact), **facts,
               MANIFEST_KEY: json.loads(manifest.to_json())}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True))
    temporary.replace(path)
    return path


def read_sidecar(artifact: str | Path, data: bytes | None = None) -> tuple[Manifest, dict]:
    """Read and hash-check the sidecar of an artifact (`data`: its bytes, when already read); return its
    manifest and build facts."""
    path = sidecar_path(artifact)
    if not path.exists():
        raise ManifestError(f"{artifact}: no sidecar {path.name} beside it; rebuild the artifact with mnet-export")
    facts = json.loads(path.read_text())
    actual = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(artifact)
    if facts.get("sha256") != actual:
        raise ManifestError(
            f"{artifact}: its sha256 {actual} does not match the sidecar's {facts.get('sha256')}: the file changed "
            "after export (damaged or tampered with); export it again with mnet-export"
        )
    manifest = Manifest.from_json(json.dumps(facts.pop(MANIFEST_KEY)), source=str(path))
    return manifest, facts

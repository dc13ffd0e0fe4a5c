"""Writing a bundle, the one way every stage that makes an ONNX graph writes it: the manifest into the model's
metadata, the file replaced atomically, then its sidecar (sha256 and manifest)."""

from __future__ import annotations

from pathlib import Path

from runtime.manifest import MANIFEST_KEY, Manifest, write_sidecar


def save_bundle(onnx_model, manifest: Manifest, out: Path) -> Path:
    import onnx

    kept = [prop for prop in onnx_model.metadata_props if prop.key != MANIFEST_KEY]
    del onnx_model.metadata_props[:]
    onnx_model.metadata_props.extend(kept)
    onnx_model.metadata_props.add(key=MANIFEST_KEY, value=manifest.to_json())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    onnx.save_model(onnx_model, str(temporary), save_as_external_data=False)
    temporary.replace(out)
    write_sidecar(out, manifest)
    return out

import numpy as np
import pytest
from PIL import Image

from runtime.manifest import Preprocessing
from runtime.preprocess import preprocess, resize_antialiased


@pytest.mark.parametrize("size", [(600, 450, 384, 384), (600, 450, 224, 224), (100, 80, 224, 224),
                                  (601, 449, 383, 227), (97, 131, 384, 384), (4000, 3000, 384, 384)])
def test_antialiased_resize_is_bit_exact_with_pillow(size):
    """Downscaling, upscaling and odd sizes: exactly Pillow's BILINEAR (torchvision's Resize on PIL images)."""
    width, height, out_width, out_height = size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ours = resize_antialiased(image, out_width, out_height)
    pillow = np.asarray(Image.fromarray(image).resize((out_width, out_height), Image.BILINEAR))
    assert ours.shape == (out_height, out_width, 3) and np.array_equal(ours, pillow)


def test_preprocess_normalises_like_torchvision():
    spec = Preprocessing(image_size=64, interpolation="area")
    image = np.full((64, 64, 3), 255, np.uint8)
    out = preprocess(image, spec)
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    expected = (1.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=1e-6)

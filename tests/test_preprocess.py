import numpy as np
import pytest
from PIL import Image

from runtime.manifest import Preprocessing
from runtime.preprocess import preprocess, resize_antialiased


@pytest.mark.parametrize("size", [(600, 450, 384), (600, 450, 224), (100, 80, 224)])
def test_antialiased_resize_matches_pillow(size):
    width, height, side = size
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 60, (height, width, 3)), 0, 255).astype(np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image[::4, ::4], 4, 0), 4, 1)[:height, :width])
    ours = resize_antialiased(image, side, side).astype(int)
    pillow = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR)).astype(int)
    assert np.abs(ours - pillow).max() <= 1
    assert np.mean(ours != pillow) < 0.03


def test_preprocess_normalises_like_torchvision():
    spec = Preprocessing(image_size=64, interpolation="area")
    image = np.full((64, 64, 3), 255, np.uint8)
    out = preprocess(image, spec)
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    expected = (1.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=1e-6)

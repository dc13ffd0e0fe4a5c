"""runtime.png against two independent decoders (Pillow, OpenCV): every pixel back."""

import io

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import runtime.png as png
from runtime.errors import ImageError


def decoded(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    pillow = np.asarray(Image.open(io.BytesIO(data)))
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return pillow, (opencv if opencv.ndim == 2 else cv2.cvtColor(opencv, cv2.COLOR_BGR2RGB))


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.one_of(st.tuples(st.integers(1, 40), st.integers(1, 40)),
                                  st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3)))))
def test_small_images_come_back_exactly(image):
    for back in decoded(png.encode_png(image)):
        assert np.array_equal(back, image)


def test_a_panel_sized_image_comes_back_exactly():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (1017, 1384, 3), dtype=np.uint8)
    image[100:400] = 7  # runs that compress, next to noise that does not
    image[500:700, 200:900] = np.linspace(0, 255, 700, dtype=np.uint8)[:, None]
    for back in decoded(png.encode_png(image)):
        assert np.array_equal(back, image)


def test_wrong_images_are_refused():
    with pytest.raises(ImageError, match="uint8 H x W or H x W x 3"):
        png.encode_png(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ImageError, match="float32"):
        png.encode_png(np.zeros((4, 4), np.float32))

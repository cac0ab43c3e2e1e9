"""Tests of tf_gtsrb.data.images: decoding any image to RGB uint8, cropping and resizing."""

import io

import numpy as np
import pytest
from PIL import Image

from tf_gtsrb import errors
from tf_gtsrb.data import images


def encode(array_or_image, fmt, **kwargs):
  image = (array_or_image if isinstance(array_or_image, Image.Image)
           else Image.fromarray(array_or_image))
  buffer = io.BytesIO()
  image.save(buffer, fmt, **kwargs)
  return buffer.getvalue()


def random_rgb(height, width, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def check_rgb(array, height, width):
  assert isinstance(array, np.ndarray)
  assert array.dtype == np.uint8
  assert array.shape == (height, width, 3)


@pytest.mark.parametrize("fmt", ["PPM", "PNG", "BMP"])
def test_lossless_rgb_round_trip(fmt):
  pixels = random_rgb(37, 40)
  decoded = images.decode_image(encode(pixels, fmt), f"x.{fmt.lower()}")
  check_rgb(decoded, 37, 40)
  np.testing.assert_array_equal(decoded, pixels)


def test_jpeg_rgb():
  pixels = np.zeros((31, 29, 3), np.uint8)
  pixels[..., 0] = 200
  pixels[..., 2] = 50
  decoded = images.decode_image(encode(pixels, "JPEG", quality=95), "x.jpg")
  check_rgb(decoded, 31, 29)
  assert np.abs(decoded.astype(int) - pixels).max() <= 4


def test_rgba_is_composited_on_black():
  pixels = np.zeros((4, 5, 4), np.uint8)
  pixels[..., :3] = (200, 100, 50)
  pixels[0, :, 3] = 255  # Opaque first row, transparent rest.
  decoded = images.decode_image(encode(pixels, "PNG"), "rgba.png")
  check_rgb(decoded, 4, 5)
  np.testing.assert_array_equal(decoded[0], np.tile([200, 100, 50], (5, 1)))
  assert not decoded[1:].any()


def test_greyscale_and_grey_alpha():
  grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
  decoded = images.decode_image(encode(grey, "PNG"), "l.png")
  check_rgb(decoded, 3, 4)
  np.testing.assert_array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))
  decoded_pgm = images.decode_image(encode(grey, "PPM"), "l.pgm")
  np.testing.assert_array_equal(decoded_pgm, decoded)
  grey_alpha = Image.fromarray(np.stack([grey, np.full_like(grey, 255)], axis=2), "LA")
  np.testing.assert_array_equal(images.decode_image(encode(grey_alpha, "PNG"), "la.png"), decoded)


def test_palette_image_is_expanded():
  palette_image = Image.new("P", (6, 2))
  palette_image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
  palette_image.putdata([1, 2, 0, 1, 2, 0] * 2)
  decoded = images.decode_image(encode(palette_image, "PNG"), "p.png")
  check_rgb(decoded, 2, 6)
  np.testing.assert_array_equal(decoded[0, :3], [[255, 0, 0], [0, 255, 0], [0, 0, 0]])


def test_sixteen_bit_greyscale_keeps_brightness():
  values = np.array([[0, 257, 32896, 65535], [1000, 1000, 1000, 1000]], np.uint16)
  data = encode(Image.fromarray(values), "PNG")
  assert Image.open(io.BytesIO(data)).mode.startswith("I")
  decoded = images.decode_image(data, "g16.png")
  check_rgb(decoded, 2, 4)
  np.testing.assert_array_equal(decoded[0, :, 0], [0, 1, 128, 255])
  np.testing.assert_array_equal(decoded[1, :, 0], [4, 4, 4, 4])  # A dark image stays dark.
  np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])


def test_sixteen_bit_ppm():
  data = b"P6\n2 1\n65535\n" + np.array([65535, 0, 0, 0, 32896, 65535], ">u2").tobytes()
  decoded = images.decode_image(data, "x16.ppm")
  check_rgb(decoded, 1, 2)
  np.testing.assert_array_equal(decoded, [[[255, 0, 0], [0, 128, 255]]])


@pytest.mark.parametrize("data", [
    b"",
    b"not an image at all",
    b"P6\n40 37\n255\n" + b"\x00" * 100,  # Truncated pixel data.
    b"P6\n40 37\n",  # Header only.
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 30,
], ids=["empty", "text", "truncated_ppm", "ppm_header_only", "png_signature_only"])
def test_bad_bytes_raise_data_error_naming_the_source(data):
  with pytest.raises(errors.DataError, match=r"^archive.zip:Images/00001/00000_00001.ppm: "):
    images.decode_image(data, "archive.zip:Images/00001/00000_00001.ppm")


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_truncated_png_and_jpeg(cut):
  pixels = random_rgb(40, 40)
  for fmt in ("PNG", "JPEG"):
    data = encode(pixels, fmt)
    with pytest.raises(errors.DataError, match="x.img"):
      images.decode_image(data[:int(len(data) * cut)], "x.img")


def test_corrupt_png_chunk():
  data = bytearray(encode(random_rgb(20, 20), "PNG"))
  data[40:60] = b"\xff" * 20  # Inside the compressed image data.
  with pytest.raises(errors.DataError, match="c.png"):
    images.decode_image(bytes(data), "c.png")


def test_huge_declared_size_is_refused_before_decoding():
  data = b"P6\n20000 20000\n255\n" + b"\x00" * 10
  with pytest.raises(errors.DataError, match="big.ppm"):
    images.decode_image(data, "big.ppm")


def test_crop_and_resize_uses_the_inclusive_roi():
  image = np.zeros((37, 40, 3), np.uint8)
  image[6:32, 5:35] = (255, 0, 0)  # ROI (5, 6, 34, 31) inclusive.
  cropped = images.crop_and_resize(image, 30, roi=(5, 6, 34, 31))
  check_rgb(cropped, 30, 30)
  assert (cropped == (255, 0, 0)).all()
  exact = images.crop_and_resize(image, 26, roi=(5, 6, 34, 31))
  assert exact.shape == (26, 26, 3)


def test_crop_keeps_the_size_when_it_already_fits():
  image = random_rgb(26, 30)
  np.testing.assert_array_equal(images.crop_and_resize(image, 26, roi=(2, 0, 27, 25)),
                                image[:, 2:28])


@pytest.mark.parametrize("height, width", [(15, 15), (180, 250), (250, 180), (31, 29), (1, 1)])
@pytest.mark.parametrize("size", [32, 48])
def test_any_input_size_resizes_to_the_target(height, width, size):
  image = random_rgb(height, width)
  resized = images.crop_and_resize(image, size)
  check_rgb(resized, size, size)
  assert resized.flags["C_CONTIGUOUS"]


def test_resize_is_bilinear_not_nearest():
  image = np.zeros((2, 2, 3), np.uint8)
  image[:, 1] = 255
  resized = images.crop_and_resize(image, 8)
  assert 0 < resized[0, 3, 0] < 255 or 0 < resized[0, 4, 0] < 255


def test_same_size_is_returned_unchanged():
  image = random_rgb(32, 32)
  np.testing.assert_array_equal(images.crop_and_resize(image, 32), image)

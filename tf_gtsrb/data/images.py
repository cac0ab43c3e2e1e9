"""Image decoding and resizing: any PPM/PNG/JPEG (RGB, RGBA, greyscale, palette) -> RGB uint8."""

import io
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from tf_gtsrb import errors

MAX_PIXELS = 4096 * 4096


def decode_image(data, source, exif_transpose=False):
  """Decodes image bytes to an RGB uint8 array of shape (H, W, 3).

  RGBA is composited on black, palette and greyscale images are expanded;
  `exif_transpose` turns a photo upright as its EXIF orientation says.
  Corrupt, truncated or empty data raises DataError naming `source`.
  """
  if not data:
    raise errors.DataError(f"{source}: empty image file")
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height > MAX_PIXELS:
          raise errors.DataError(
              f"{source}: image of {image.width}x{image.height} pixels is too large")
        image.load()
        if exif_transpose:
          image = ImageOps.exif_transpose(image)
        return to_rgb_array(image)
  except errors.DataError:
    raise
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
          Image.DecompressionBombError, EOFError) as e:
    if isinstance(e, Image.UnidentifiedImageError):  # Its text names a BytesIO, not the file.
      raise errors.DataError(f"{source}: not an image (unknown or unsupported format)") from e
    raise errors.DataError(f"{source}: cannot decode image: {e}") from e


def to_rgb_array(image):
  """A PIL image of any mode as an RGB uint8 array (H, W, 3), converted as `decode_image` does."""
  return np.asarray(_to_rgb(image), dtype=np.uint8)


def _to_rgb(image):
  if image.mode == "RGB":
    return image
  if image.mode == "P":
    image = image.convert("RGBA")
  if image.mode in ("RGBA", "LA"):
    background = Image.new("RGB", image.size, (0, 0, 0))
    background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
    return background
  if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit range -> 8 bits, same brightness.
    array = np.asarray(image, dtype=np.float64)
    image = Image.fromarray(np.clip(np.round(array / 257.0), 0, 255).astype(np.uint8))
  return image.convert("RGB")


def crop_and_resize(image, size, roi=None):
  """Optionally crops `roi` = (x1, y1, x2, y2) (inclusive) and resizes bilinearly to size x size."""
  if roi is not None:
    x1, y1, x2, y2 = roi
    image = image[y1:y2 + 1, x1:x2 + 1]
  if image.shape[0] == size and image.shape[1] == size:
    return np.ascontiguousarray(image)
  resized = Image.fromarray(image).resize((size, size), Image.BILINEAR)
  return np.asarray(resized, dtype=np.uint8)

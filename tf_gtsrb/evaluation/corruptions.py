"""Road-camera corruptions of uint8 RGB images, seeded and deterministic.

Thirteen kinds at five severities each, in the manner of CIFAR-10-C and
ImageNet-C (Hendrycks & Dietterich 2019): sensor noise, blur, bad exposure,
weather, compression, occlusion and small geometric changes. Severity 5 was
calibrated by eye on a contact sheet (docs/corruptions.png) so that a person
still recognises the sign; docs/robustness.md lists every parameter.

Corruptions apply to an image at its stored size, before any resize to the
model's input. Pixel-sized parameters (blur radii, streak lengths, shifts) are
given for a 32-pixel image and scale with min(height, width) / 32; JPEG's 8x8
blocks and per-pixel noise are properties of the sensor and codec and do not.

  from tf_gtsrb.evaluation import corruptions
  hazy = corruptions.corrupt(image, "fog", severity=3, index=7)

The random draws of one image depend only on (seed, kind, severity, index), so
an image corrupts the same way in any batch, order or subset. Only numpy,
Pillow and scipy are used (no TensorFlow).
"""

import io
import zlib

import numpy as np
from PIL import Image
from PIL import ImageDraw
from scipy import ndimage

from tf_gtsrb import errors

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 32  # Pixel-sized parameters below are for an image this size.

# Parameters per kind, one entry per severity 1..5 (docs/robustness.md explains each).
PARAMETERS = {
    # Standard deviation of additive Gaussian noise, in units of the full pixel range.
    "gaussian_noise": {"sigma": (0.03, 0.05, 0.07, 0.10, 0.13)},
    # Photons per pixel at full brightness; pixel = Poisson(x * photons) / photons.
    "shot_noise": {"photons": (160, 90, 55, 35, 24)},
    # Radius of the lens's disk kernel, in pixels of a 32-pixel image.
    "defocus_blur": {"radius": (0.6, 0.75, 0.9, 1.1, 1.3)},
    # Length of the straight motion path (random direction), pixels of a 32-pixel image.
    "motion_blur": {"length": (1.5, 2.0, 2.75, 3.5, 4.0)},
    # Brightness gain (applied in linear light), then Gaussian read noise (pixel range).
    "low_light": {"gain": (0.5, 0.35, 0.25, 0.18, 0.12),
                  "read_noise": (0.01, 0.015, 0.02, 0.025, 0.03)},
    # Exposure gain in linear light; values above white clip.
    "overexposure": {"gain": (1.6, 2.2, 3.0, 4.0, 5.5)},
    # Mean transmission t of the haze (x * t + airlight * (1 - t)); it varies smoothly
    # over the image by +-30% of (1 - t).
    "fog": {"transmission": (0.75, 0.6, 0.45, 0.35, 0.25)},
    # Streaks per 32x32 area, streak length (pixels of a 32-pixel image), streak opacity,
    # and a darkening of the overcast scene (fraction kept).
    "rain": {"streaks": (8, 14, 20, 27, 35), "length": (4.0, 5.0, 6.0, 7.0, 8.0),
             "opacity": (0.45, 0.5, 0.55, 0.6, 0.65), "brightness": (0.95, 0.9, 0.85, 0.8, 0.75)},
    # JPEG quality (Pillow, 4:2:0 chroma subsampling).
    "jpeg": {"quality": (60, 45, 35, 25, 18)},
    # Share of the image area covered by 1-3 opaque stickers of random colour.
    "occlusion": {"area": (0.05, 0.10, 0.15, 0.20, 0.25)},
    # Rotation angle in degrees, random direction.
    "rotation": {"degrees": (5.0, 10.0, 15.0, 20.0, 25.0)},
    # Largest random displacement of each corner, as a share of the image size.
    "perspective": {"corner_shift": (0.04, 0.07, 0.10, 0.13, 0.16)},
    # Relative change of scale, zooming in or out at random (1 +- amount).
    "scale": {"amount": (0.08, 0.15, 0.22, 0.30, 0.38)},
}
KINDS = tuple(PARAMETERS)

DESCRIPTIONS = {
    "gaussian_noise": "sensor read noise at high gain",
    "shot_noise": "photon (Poisson) noise of a small sensor",
    "defocus_blur": "out-of-focus lens",
    "motion_blur": "camera or vehicle motion during the exposure",
    "low_light": "dusk or night: dark image with sensor noise",
    "overexposure": "sun or headlights: bright image with clipped highlights",
    "fog": "haze and fog: contrast lost to scattered airlight",
    "rain": "rain streaks over an overcast scene",
    "jpeg": "heavy JPEG compression of the camera stream",
    "occlusion": "stickers, dirt or leaves covering part of the sign",
    "rotation": "sign or camera tilted",
    "perspective": "sign seen at an angle",
    "scale": "sign nearer or farther than the detector's crop assumed",
}


def check_kind(kind):
  """ConfigError unless `kind` is a known corruption."""
  if kind not in PARAMETERS:
    raise errors.ConfigError(f"unknown corruption {kind!r}; choose from {', '.join(KINDS)}")


def check_severity(severity):
  """ConfigError unless `severity` is an integer in 1..5."""
  if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) \
      or severity not in SEVERITIES:
    raise errors.ConfigError(
        f"corruption severity must be an integer in {SEVERITIES[0]}..{SEVERITIES[-1]}, "
        f"got {severity!r}")


def parse_kinds(text):
  """'all' (or empty) -> every kind; 'fog,jpeg' -> ('fog', 'jpeg'). Unknown: ConfigError."""
  names = [n.strip() for n in (text or "").split(",") if n.strip()]
  if not names or names == ["all"]:
    return KINDS
  for name in names:
    check_kind(name)
  return tuple(dict.fromkeys(names))


def parse_severities(text):
  """'1,3,5' or '1-5' (or empty: all) -> sorted severities; out of range: ConfigError."""
  text = (text or "").strip()
  if not text:
    return SEVERITIES
  values = set()
  for part in text.split(","):
    part = part.strip()
    try:
      if "-" in part:
        low, high = (int(v) for v in part.split("-", 1))
        values.update(range(low, high + 1))
      else:
        values.add(int(part))
    except ValueError as e:
      raise errors.ConfigError(f"corruption severities: {part!r} is not a number or a "
                               "range like 1-5") from e
  for value in values:
    if value not in SEVERITIES:
      raise errors.ConfigError(f"corruption severity {value} is out of range "
                               f"{SEVERITIES[0]}..{SEVERITIES[-1]}")
  return tuple(sorted(values))


def parameters(kind, severity):
  """{parameter name: value} of `kind` at `severity`."""
  check_kind(kind)
  check_severity(severity)
  return {name: values[severity - 1] for name, values in PARAMETERS[kind].items()}


def image_rng(kind, severity, index, seed=0):
  """The random generator of image `index` under (`kind`, `severity`, `seed`)."""
  return np.random.default_rng([int(seed), zlib.crc32(kind.encode()), int(severity), int(index)])


def corrupt(image, kind, severity, index=0, seed=0):
  """Returns uint8 `image` [H, W, 3] corrupted by `kind` at `severity` (1..5).

  `index` (the image's position in its split) and `seed` pick the random draws.
  The result has the input's shape and dtype.
  """
  check_kind(kind)
  check_severity(severity)
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:
    raise errors.ConfigError(
        f"corrupt: expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
  x = image.astype(np.float64) / 255.0
  out = _FUNCTIONS[kind](x, image_rng(kind, severity, index, seed),
                         **parameters(kind, severity))
  return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def corrupt_batch(images, kind, severity, indices=None, seed=0):
  """Corrupts uint8 images [N, H, W, 3]; image i is seeded by `indices[i]` (default i)."""
  images = np.asarray(images)
  if images.ndim != 4:
    raise errors.ConfigError(f"corrupt_batch: expected [N, H, W, 3] images, got {images.shape}")
  indices = range(len(images)) if indices is None else indices
  if len(indices) != len(images):
    raise errors.ConfigError(f"corrupt_batch: {len(indices)} indices for {len(images)} images")
  out = np.empty_like(images)
  for i, (image, index) in enumerate(zip(images, indices)):
    out[i] = corrupt(image, kind, severity, index=index, seed=seed)
  return out


# The corruptions. Each takes float pixels x in [0, 1] [H, W, 3], a generator and the
# severity's parameters; returns floats (clipped and rounded by `corrupt`).


def _scale(x):
  return min(x.shape[:2]) / REFERENCE_SIZE


def _to_linear(x):
  return np.power(x, 2.2)


def _from_linear(x):
  return np.power(np.clip(x, 0.0, 1.0), 1 / 2.2)


def _gaussian_noise(x, rng, sigma):
  return x + rng.normal(0.0, sigma, x.shape)


def _shot_noise(x, rng, photons):
  return rng.poisson(x * photons) / photons


def _convolve(x, kernel):
  kernel = kernel / kernel.sum()
  return np.stack([ndimage.convolve(x[..., c], kernel, mode="nearest") for c in range(3)], -1)


def _defocus_blur(x, rng, radius):
  del rng  # Deterministic.
  radius *= _scale(x)
  # A disk, anti-aliased by 8x supersampling of each kernel cell.
  half = int(np.ceil(radius))
  fine = (np.arange(-half * 8, half * 8 + 8) + 0.5) / 8 - 0.5
  yy, xx = np.meshgrid(fine, fine, indexing="ij")
  disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
  kernel = disk.reshape(2 * half + 1, 8, 2 * half + 1, 8).mean(axis=(1, 3))
  return _convolve(x, kernel)


def _motion_blur(x, rng, length):
  length *= _scale(x)
  angle = rng.uniform(0.0, np.pi)
  half = int(np.ceil(length / 2)) + 1
  kernel = np.zeros((2 * half + 1, 2 * half + 1))
  for t in np.linspace(-length / 2, length / 2, 64):  # Splat points of the path bilinearly.
    px, py = half + t * np.cos(angle), half + t * np.sin(angle)
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    fx, fy = px - x0, py - y0
    kernel[y0, x0] += (1 - fx) * (1 - fy)
    kernel[y0, x0 + 1] += fx * (1 - fy)
    kernel[y0 + 1, x0] += (1 - fx) * fy
    kernel[y0 + 1, x0 + 1] += fx * fy
  return _convolve(x, kernel)


def _low_light(x, rng, gain, read_noise):
  dark = _from_linear(_to_linear(x) * gain)
  return dark + rng.normal(0.0, read_noise, x.shape)


def _overexposure(x, rng, gain):
  del rng  # Deterministic.
  return _from_linear(_to_linear(x) * gain)


def _smooth_field(shape, rng, cells=3):
  """A smooth random field in [-1, 1] over `shape` (bicubic from a cells x cells grid)."""
  grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
  field = np.asarray(Image.fromarray(grid, mode="F").resize((shape[1], shape[0]), Image.BICUBIC))
  return np.clip(field, -1.0, 1.0)[..., None]


def _fog(x, rng, transmission):
  airlight = rng.uniform(0.75, 0.9)
  t = transmission + 0.3 * (1.0 - transmission) * _smooth_field(x.shape, rng)
  return x * t + airlight * (1.0 - t)


def _rain(x, rng, streaks, length, opacity, brightness):
  height, width = x.shape[:2]
  scale = _scale(x)
  count = int(round(streaks * height * width / REFERENCE_SIZE**2))
  factor = 4  # Streaks are drawn 4x larger, then downsampled: thin, anti-aliased lines.
  layer = Image.new("L", (width * factor, height * factor), 0)
  draw = ImageDraw.Draw(layer)
  slant = rng.uniform(-0.3, 0.3)  # One wind direction for the whole image.
  for _ in range(count):
    x0, y0 = rng.uniform(0, width) * factor, rng.uniform(-length * scale, height) * factor
    size = length * scale * rng.uniform(0.6, 1.0) * factor
    draw.line([(x0, y0), (x0 + slant * size, y0 + size)], fill=255,
              width=max(1, int(round(0.5 * scale * factor))))
  alpha = np.asarray(layer.resize((width, height), Image.BOX), np.float64)[..., None] / 255.0
  alpha *= opacity
  return (x * brightness) * (1 - alpha) + 0.85 * alpha


def _jpeg(x, rng, quality):
  del rng  # Deterministic.
  buffer = io.BytesIO()
  Image.fromarray(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)).save(
      buffer, format="JPEG", quality=int(quality))
  return np.asarray(Image.open(buffer).convert("RGB"), np.float64) / 255.0


def _occlusion(x, rng, area):
  height, width = x.shape[:2]
  out = x.copy()
  count = int(rng.integers(1, 4))
  shares = rng.dirichlet(np.ones(count)) * area
  for share in shares:
    aspect = rng.uniform(0.5, 2.0)
    h = max(1, int(round(np.sqrt(share * height * width / aspect))))
    w = max(1, int(round(share * height * width / h)))
    h, w = min(h, height), min(w, width)
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    out[top:top + h, left:left + w] = rng.uniform(0.0, 1.0, 3)
  return out


def _warp(x, matrix):
  """Resamples x at the homography `matrix` (output pixel -> input pixel, (col, row, 1))."""
  height, width = x.shape[:2]
  rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
  points = matrix @ np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
  src_cols, src_rows = points[0] / points[2], points[1] / points[2]
  return np.stack([ndimage.map_coordinates(x[..., c], [src_rows, src_cols], order=1,
                                           mode="nearest").reshape(height, width)
                   for c in range(3)], -1)


def _about_centre(x, matrix):
  """`matrix` (in coordinates centred on the image) conjugated to pixel coordinates."""
  cy, cx = (x.shape[0] - 1) / 2, (x.shape[1] - 1) / 2
  shift = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], np.float64)
  unshift = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
  return shift @ matrix @ unshift


def _rotation(x, rng, degrees):
  angle = np.deg2rad(degrees) * rng.choice([-1.0, 1.0])
  c, s = np.cos(angle), np.sin(angle)
  return _warp(x, _about_centre(x, np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])))


def _perspective(x, rng, corner_shift):
  height, width = x.shape[:2]
  corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                     np.float64)
  moved = corners + rng.uniform(-1.0, 1.0, (4, 2)) * corner_shift * np.array([width, height])
  return _warp(x, _homography(corners, moved))


def _homography(dst, src):
  """The 3x3 matrix mapping the 4 points `dst` to `src` (direct linear transform)."""
  rows = []
  for (u, v), (p, q) in zip(dst, src):
    rows.append([u, v, 1, 0, 0, 0, -p * u, -p * v, -p])
    rows.append([0, 0, 0, u, v, 1, -q * u, -q * v, -q])
  _, _, vt = np.linalg.svd(np.asarray(rows))
  return vt[-1].reshape(3, 3) / vt[-1, -1]


def _scale_change(x, rng, amount):
  zoom = 1.0 + amount * rng.choice([-1.0, 1.0])
  return _warp(x, _about_centre(x, np.diag([1 / zoom, 1 / zoom, 1.0])))


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "low_light": _low_light,
    "overexposure": _overexposure,
    "fog": _fog,
    "rain": _rain,
    "jpeg": _jpeg,
    "occlusion": _occlusion,
    "rotation": _rotation,
    "perspective": _perspective,
    "scale": _scale_change,
}

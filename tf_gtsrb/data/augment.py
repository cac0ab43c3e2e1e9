"""Online augmentation inside the tf.data graph, on batches of float images in [0, 1].

Per image: a small rotation, shift and zoom (one projective transform), colour
jitter (brightness, contrast, saturation, hue), a gamma change (under- and
over-exposure, backlit signs) and, sometimes, a shadow over part of the image
(darker beyond a random straight edge) and a 3x3 Gaussian blur; optionally, random
erasing (a square filled with the image's mean colour), stickers (one to three
opaque patches of random colour), sensor noise (Gaussian, per pixel and channel,
of a random strength) and JPEG compression (a random quality). Randomness is
stateless and derived from (seed, batch index), so a resumed run sees exactly
the augmentations an uninterrupted run would have.
"""

import math

import tensorflow as tf

MAX_ROTATION_DEGREES = 10.0
MAX_SHIFT = 0.1
ZOOM_RANGE = (0.9, 1.1)
BRIGHTNESS = 0.3
CONTRAST = (0.6, 1.4)
SATURATION = (0.6, 1.4)
HUE = 0.03
GAMMA_RANGE = (0.7, 1.5)
SHADOW_PROBABILITY = 0.3
SHADOW_DARKNESS = (0.3, 0.8)  # Brightness left in the shadow.
SHADOW_EDGE_PIXELS = 1.0  # Width of the soft shadow edge.
BLUR_PROBABILITY = 0.1
ERASE_SIDE = (0.25, 0.5)  # Side of an erased square, as a share of the image width.
NOISE_SIGMA = (0.02, 0.12)  # Standard deviation of the sensor noise, in [0, 1] pixel units.
# Stickers as timm's RandomErasing(mode="rand", max_count=3): 1-3 patches sharing a random
# STICKER_AREA of the image, each of a random aspect ratio and one random colour.
MAX_STICKERS = 3
STICKER_AREA = (0.02, 1 / 3)
STICKER_ASPECT = (0.3, 1 / 0.3)
JPEG_QUALITY = (20, 90)  # Range of the JPEG quality (TensorFlow's encoder, 4:2:0 chroma).


def augment_batch(images, seed, erase_probability=0.0, noise_probability=0.0,
                  sticker_probability=0.0, jpeg_probability=0.0):
  """Augments a (B, H, W, 3) float32 batch; `seed` is a shape-[2] int tensor.

  `erase_probability`: share of images that get a random erasing (Zhong et al.
  2017) after the other changes; `sticker_probability`: share that then get
  stickers; `noise_probability`: share that then get sensor noise;
  `jpeg_probability`: share that are then JPEG-compressed. 0 leaves the
  augmentation exactly as without them.
  """
  return augment_views(images, seed, erase_probability, noise_probability,
                       sticker_probability, jpeg_probability)[0]


def augment_views(images, seed, erase_probability=0.0, noise_probability=0.0,
                  sticker_probability=0.0, jpeg_probability=0.0):
  """(`augment_batch`'s batch, the same batch before its erasing, stickers, noise and
  JPEG)."""
  seed = tf.cast(seed, tf.int64)
  seeds = tf.random.experimental.stateless_split(seed, num=12)
  images = _geometric(images, seeds[0])
  images = _colour(images, seeds[1:5])
  images = _gamma(images, seeds[7])
  images = _maybe_shadow(images, seeds[8:12])
  images = _maybe_blur(images, seeds[5:7])
  clean = tf.clip_by_value(images, 0.0, 1.0)
  if erase_probability > 0:
    erase_seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 1), num=4)
    images = _maybe_erase(images, erase_seeds, erase_probability)
  if sticker_probability > 0:
    sticker_seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 3), num=2 + 5 * MAX_STICKERS)
    images = _maybe_stickers(images, sticker_seeds, sticker_probability)
  if noise_probability > 0:
    noise_seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 2), num=3)
    images = _maybe_noise(images, noise_seeds, noise_probability)
  if jpeg_probability > 0:
    jpeg_seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 4), num=2)
    images = _maybe_jpeg(tf.clip_by_value(images, 0.0, 1.0), jpeg_seeds, jpeg_probability)
  return tf.clip_by_value(images, 0.0, 1.0), clean


def _uniform(seed, batch, low, high):
  return tf.random.stateless_uniform([batch], seed=seed, minval=low, maxval=high)


def _geometric(images, seed):
  batch = tf.shape(images)[0]
  height = tf.cast(tf.shape(images)[1], tf.float32)
  width = tf.cast(tf.shape(images)[2], tf.float32)
  s = tf.random.experimental.stateless_split(seed, num=4)
  angle = _uniform(s[0], batch, -1.0, 1.0) * MAX_ROTATION_DEGREES * math.pi / 180
  scale = 1.0 / _uniform(s[1], batch, *ZOOM_RANGE)
  dx = _uniform(s[2], batch, -MAX_SHIFT, MAX_SHIFT) * width
  dy = _uniform(s[3], batch, -MAX_SHIFT, MAX_SHIFT) * height
  cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
  cx, cy = (width - 1) / 2, (height - 1) / 2
  # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate and
  # zoom about the centre, then shift.
  a2 = cx - cos * cx + sin * cy + dx
  b2 = cy - sin * cx - cos * cy + dy
  zeros = tf.zeros_like(cos)
  transforms = tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
      fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")


def _colour(images, seeds):
  batch = tf.shape(images)[0]
  per_image = lambda v: tf.reshape(v, [-1, 1, 1, 1])
  images = images + per_image(_uniform(seeds[0], batch, -BRIGHTNESS, BRIGHTNESS))
  mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
  images = (images - mean) * per_image(_uniform(seeds[1], batch, *CONTRAST)) + mean
  grey = tf.reduce_mean(images, axis=3, keepdims=True)
  images = grey + (images - grey) * per_image(_uniform(seeds[2], batch, *SATURATION))
  hsv = tf.image.rgb_to_hsv(tf.clip_by_value(images, 0.0, 1.0))
  hue = tf.math.floormod(hsv[..., :1] + per_image(_uniform(seeds[3], batch, -HUE, HUE)), 1.0)
  return tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=3))


def _gamma(images, seed):
  gamma = _uniform(seed, tf.shape(images)[0], *GAMMA_RANGE)
  return tf.pow(tf.clip_by_value(images, 0.0, 1.0), tf.reshape(gamma, [-1, 1, 1, 1]))


def _maybe_shadow(images, seeds):
  """Darkens, with SHADOW_PROBABILITY, the part of each image beyond a random line."""
  batch = tf.shape(images)[0]
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  angle = _uniform(seeds[0], batch, 0.0, 2 * math.pi)
  # Signed distance of the line from the centre, in pixels (up to a third of the width).
  offset = _uniform(seeds[1], batch, -1.0, 1.0) * tf.cast(width, tf.float32) / 3
  ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32) - tf.cast(height - 1, tf.float32) / 2,
                       tf.range(width, dtype=tf.float32) - tf.cast(width - 1, tf.float32) / 2,
                       indexing="ij")
  per_image = lambda v: tf.reshape(v, [-1, 1, 1])
  distance = xs * per_image(tf.cos(angle)) + ys * per_image(tf.sin(angle)) - per_image(offset)
  in_shadow = tf.sigmoid(distance / SHADOW_EDGE_PIXELS)  # (B, H, W), 1 = fully shaded.
  darkness = _uniform(seeds[2], batch, *SHADOW_DARKNESS)
  use = tf.cast(_uniform(seeds[3], batch, 0.0, 1.0) < SHADOW_PROBABILITY, images.dtype)
  factor = 1 - per_image(use * (1 - darkness)) * in_shadow
  return images * factor[..., None]


def _maybe_blur(images, seeds):
  batch = tf.shape(images)[0]
  kernel_1d = tf.constant([0.25, 0.5, 0.25])
  kernel = tf.tensordot(kernel_1d, kernel_1d, axes=0)[:, :, None, None]
  kernel = tf.tile(kernel, [1, 1, 3, 1])
  blurred = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "SAME")
  use = tf.cast(_uniform(seeds[0], batch, 0.0, 1.0) < BLUR_PROBABILITY, images.dtype)
  use = tf.reshape(use, [-1, 1, 1, 1])
  return use * blurred + (1 - use) * images


def _maybe_noise(images, seeds, probability):
  """Adds, with `probability`, Gaussian noise of a random NOISE_SIGMA strength to each
  image, independently per pixel and channel."""
  batch = tf.shape(images)[0]
  per_image = lambda v: tf.reshape(v, [-1, 1, 1, 1])
  sigma = _uniform(seeds[0], batch, *NOISE_SIGMA)
  use = tf.cast(_uniform(seeds[1], batch, 0.0, 1.0) < probability, tf.float32)
  noise = tf.random.stateless_normal(tf.shape(images), seed=seeds[2])
  return images + noise * per_image(sigma * use)


def _maybe_jpeg(images, seeds, probability):
  """JPEG-compresses, with `probability`, each image at a random JPEG_QUALITY (encoding
  only the images chosen)."""
  batch = tf.shape(images)[0]
  quality = tf.cast(tf.round(_uniform(seeds[0], batch, *JPEG_QUALITY)), tf.int32)
  chosen = tf.where(_uniform(seeds[1], batch, 0.0, 1.0) < probability)
  picked = tf.gather_nd(images, chosen)
  compressed = tf.map_fn(lambda pair: tf.image.adjust_jpeg_quality(pair[0], pair[1]),
                         (picked, tf.gather_nd(quality, chosen)),
                         fn_output_signature=images.dtype)
  return tf.tensor_scatter_nd_update(images, chosen, tf.reshape(compressed, tf.shape(picked)))


def _maybe_erase(images, seeds, probability):
  """Fills, with `probability`, a random square of each image (ERASE_SIDE of its
  width, possibly cut off by the border) with the image's mean colour."""
  batch = tf.shape(images)[0]
  height = tf.cast(tf.shape(images)[1], tf.float32)
  width = tf.cast(tf.shape(images)[2], tf.float32)
  half_side = _uniform(seeds[0], batch, *ERASE_SIDE) * width / 2
  centre_x = _uniform(seeds[1], batch, 0.0, width)
  centre_y = _uniform(seeds[2], batch, 0.0, height)
  ys, xs = tf.meshgrid(tf.range(height) + 0.5, tf.range(width) + 0.5, indexing="ij")
  per_image = lambda v: tf.reshape(v, [-1, 1, 1])
  inside = ((tf.abs(xs - per_image(centre_x)) < per_image(half_side)) &
            (tf.abs(ys - per_image(centre_y)) < per_image(half_side)))
  use = per_image(_uniform(seeds[3], batch, 0.0, 1.0) < probability)
  mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
  return tf.where((inside & use)[..., None], mean, images)


def _maybe_stickers(images, seeds, probability):
  """Covers, with `probability`, each image with 1 to MAX_STICKERS opaque patches of
  random colour that together take a random STICKER_AREA share of it."""
  batch = tf.shape(images)[0]
  height = tf.cast(tf.shape(images)[1], tf.float32)
  width = tf.cast(tf.shape(images)[2], tf.float32)
  use = _uniform(seeds[0], batch, 0.0, 1.0) < probability
  count = tf.floor(_uniform(seeds[1], batch, 1.0, MAX_STICKERS + 1.0))
  ys, xs = tf.meshgrid(tf.range(height) + 0.5, tf.range(width) + 0.5, indexing="ij")
  per_image = lambda v: tf.reshape(v, [-1, 1, 1])
  log_aspect = (math.log(STICKER_ASPECT[0]), math.log(STICKER_ASPECT[1]))
  for i in range(MAX_STICKERS):
    s = seeds[2 + 5 * i:7 + 5 * i]
    area = _uniform(s[0], batch, *STICKER_AREA) * height * width / count
    aspect = tf.exp(_uniform(s[1], batch, *log_aspect))
    h = tf.minimum(tf.sqrt(area * aspect), height)
    w = tf.minimum(tf.sqrt(area / aspect), width)
    top = _uniform(s[2], batch, 0.0, 1.0) * (height - h)
    left = _uniform(s[3], batch, 0.0, 1.0) * (width - w)
    inside = ((xs >= per_image(left)) & (xs < per_image(left + w)) &
              (ys >= per_image(top)) & (ys < per_image(top + h)))
    inside &= per_image(use & (i < count))
    colour = tf.random.stateless_uniform([batch, 1, 1, 3], seed=s[4])
    images = tf.where(inside[..., None], colour, images)
  return images

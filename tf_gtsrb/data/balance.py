"""Offline class balancing, as the published project did it.

Every class with fewer than `target` training images is grown to `target` with
augmented copies of its own images: colour jitter (brightness, contrast,
saturation, hue), an affine shift and Gaussian blur. Seeded and reproducible.
Classes already at or above `target` are kept as they are.
"""

import collections

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def plan_balancing(labels, target, seed=0):
  """Returns a list of (source_index, variant_seed) for the copies to generate."""
  if target <= 0:
    return []
  rng = np.random.default_rng(seed)
  by_class = collections.defaultdict(list)
  for i, label in enumerate(labels):
    by_class[int(label)].append(i)
  plan = []
  for class_id in sorted(by_class):
    members = by_class[class_id]
    missing = target - len(members)
    if missing > 0:
      sources = rng.choice(members, size=missing, replace=True)
      plan.extend((int(s), int(rng.integers(2**31))) for s in sources)
  return plan


def augment_image(image, seed):
  """Returns a colour-jittered, shifted and (sometimes) blurred copy of an RGB uint8 image."""
  rng = np.random.default_rng(seed)
  pil = Image.fromarray(image)
  pil = ImageEnhance.Brightness(pil).enhance(rng.uniform(0.7, 1.3))
  pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.7, 1.3))
  pil = ImageEnhance.Color(pil).enhance(rng.uniform(0.7, 1.3))
  pil = _shift_hue(pil, rng.uniform(-0.05, 0.05))
  max_shift = 0.1 * pil.width
  dx, dy = rng.uniform(-max_shift, max_shift, size=2)
  pil = pil.transform(pil.size, Image.AFFINE, (1, 0, dx, 0, 1, dy), resample=Image.BILINEAR)
  if rng.random() < 0.5:
    pil = pil.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 1.0)))
  return np.asarray(pil, dtype=np.uint8)


def _shift_hue(pil, delta):
  hsv = np.asarray(pil.convert("HSV"), dtype=np.int16)
  hsv[..., 0] = (hsv[..., 0] + int(round(delta * 255))) % 256
  return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def class_count_table(before, after, class_names):
  """Markdown table of per-class image counts before and after balancing."""
  lines = ["| Class | Name | Before | After |", "|---:|---|---:|---:|"]
  for class_id, name in enumerate(class_names):
    lines.append(f"| {class_id} | {name} | {before.get(class_id, 0)} | {after.get(class_id, 0)} |")
  lines.append(f"| | **Total** | {sum(before.values())} | {sum(after.values())} |")
  return "\n".join(lines)

"""The small real GTSRB sample bundled with the package, and how it is cut from the archives.

`SAMPLE_DIR` holds the three official archives, cut down to a few tracks per
class (train) and a few images per class (test), in the official layout, so the
main job and the tests run offline on a fresh machine.
"""

import collections
import io
import os
import zipfile

from tf_gtsrb import io_utils
from tf_gtsrb.data import sources

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample")
_CSV_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"


def make_sample(archive_dir, output_dir, tracks_per_class=3, frames_per_track=5,
                test_per_class=10):
  """Writes cut-down copies of the three official archives to `output_dir`; returns counts."""
  train = sources.official_records(archive_dir, "train")
  by_class = collections.defaultdict(lambda: collections.defaultdict(list))
  for record in train:
    row = record.annotation
    by_class[row.class_id][row.track_id].append(record)
  picked_train = []
  for class_id in sorted(by_class):
    tracks = by_class[class_id]
    for track in sorted(tracks)[:tracks_per_class]:
      frames = sorted(tracks[track], key=lambda r: r.annotation.filename)
      step = max(1, len(frames) // frames_per_track)
      picked_train.extend(frames[::step][:frames_per_track])
  test = sources.official_records(archive_dir, "test")
  seen = collections.Counter()
  picked_test = []
  for record in test:
    if seen[record.annotation.class_id] < test_per_class:
      seen[record.annotation.class_id] += 1
      picked_test.append(record)

  members = {}
  for class_id in sorted(by_class):
    folder = f"GTSRB/Final_Training/Images/{class_id:05d}"
    rows = [r for r in picked_train if r.annotation.class_id == class_id]
    members[f"{folder}/GT-{class_id:05d}.csv"] = _csv(r.annotation for r in rows)
    for r in rows:
      members[f"{folder}/{r.annotation.filename}"] = r.load()
  _write_zip(os.path.join(output_dir, sources.TRAIN_ARCHIVE), members)
  test_members = {f"GTSRB/Final_Test/Images/{r.annotation.filename}": r.load()
                  for r in picked_test}
  _write_zip(os.path.join(output_dir, sources.TEST_ARCHIVE), test_members)
  _write_zip(os.path.join(output_dir, sources.TEST_GT_ARCHIVE),
             {"GT-final_test.csv": _csv(r.annotation for r in picked_test)})
  return {"train": len(picked_train), "test": len(picked_test)}


def _csv(rows):
  lines = [_CSV_HEADER] + [
      f"{r.filename};{r.width};{r.height};{';'.join(map(str, r.roi))};{r.class_id}"
      for r in rows]
  return ("\r\n".join(lines) + "\r\n").encode()


def _write_zip(path, members):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
    for name in sorted(members):
      info = zipfile.ZipInfo(name, date_time=(2020, 5, 10, 12, 0, 0))
      info.compress_type = zipfile.ZIP_DEFLATED
      zf.writestr(info, members[name])
  with io_utils.atomic_write(path, "wb") as f:
    f.write(buffer.getvalue())



"""Tests of tf_gtsrb.models.ensemble: averaged teachers and their file checks."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tests import synthetic
from tf_gtsrb import errors
from tf_gtsrb.models import ensemble
from tf_gtsrb.models import io as model_io


def test_average_predicts_the_mean_of_its_members():
  members = [synthetic.tiny_cnn(seed=s) for s in (0, 1, 2)]
  images, _ = synthetic.random_float_data(synthetic.TINY_SIZE, n=8)
  expected = np.mean([m.predict(images, verbose=0) for m in members], axis=0)
  mean = ensemble.average(members)
  np.testing.assert_allclose(mean.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
  assert mean.count_params() == sum(m.count_params() for m in members)


def test_average_of_one_model_is_that_model():
  model = synthetic.tiny_cnn()
  assert ensemble.average([model]) is model


def test_average_refuses_members_with_other_inputs_or_classes():
  with pytest.raises(errors.ConfigError, match="member 1"):
    ensemble.average([synthetic.tiny_cnn(), synthetic.tiny_cnn(num_classes=10)])
  with pytest.raises(errors.ConfigError, match="member 1"):
    ensemble.average([synthetic.tiny_cnn(), synthetic.tiny_cnn(input_size=32)])


def test_load_teacher_averages_comma_separated_files(tmp_path):
  paths = []
  for seed in (0, 1):
    paths.append(str(tmp_path / f"m{seed}.keras"))
    model_io.save_model(synthetic.tiny_cnn(seed=seed), paths[-1])
  images, _ = synthetic.random_float_data(synthetic.TINY_SIZE, n=4)
  expected = np.mean([model_io.load_model(p).predict(images, verbose=0) for p in paths], axis=0)
  teacher = ensemble.load_teacher(f"{paths[0]}, {paths[1]}")
  np.testing.assert_allclose(teacher.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
  assert ensemble.teacher_paths(paths[0]) == [paths[0]]


def test_absolute_teacher_paths_resolves_each_file(tmp_path, monkeypatch):
  for name in ("a.keras", "b.keras"):
    (tmp_path / name).write_bytes(b"")
  monkeypatch.chdir(tmp_path)
  assert ensemble.absolute_teacher_paths("a.keras,b.keras") == [
      str(tmp_path / "a.keras"), str(tmp_path / "b.keras")]


@pytest.mark.parametrize("spec", ["", " , "])
def test_teacher_paths_refuses_an_empty_list(spec):
  with pytest.raises(errors.ConfigError, match="no teacher model"):
    ensemble.teacher_paths(spec)


def test_teacher_paths_names_the_missing_file(tmp_path):
  present = tmp_path / "a.keras"
  present.write_bytes(b"")
  with pytest.raises(errors.ConfigError, match="missing.keras: teacher model file not found"):
    ensemble.teacher_paths(f"{present},{tmp_path / 'missing.keras'}")

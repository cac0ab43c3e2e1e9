"""PipelineConfig's field metadata: every field has a step, fingerprints and flags follow it.

Cheap: no step runs; `Pipeline._inputs` is called directly.
"""

import dataclasses
import glob
import hashlib
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from absl import flags

from tf_gtsrb import errors
from tf_gtsrb import pipeline
from tf_gtsrb_tools import pipeline as pipeline_tool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = dataclasses.fields(pipeline.PipelineConfig)
IDENTITY_FIELDS = [f for f in FIELDS if f.metadata.get("step") is not None]


def _changed_value(field):
  """A valid value of `field` other than its default."""
  if "choices" in field.metadata:
    return next(c for c in field.metadata["choices"] if c != field.default)
  if field.metadata.get("paths"):
    return __file__  # An existing file.
  default = field.default
  if isinstance(default, bool):
    return not default
  if isinstance(default, int):
    return default + 1
  if isinstance(default, float):
    return default / 2 if default else 0.25
  if default is None:  # An optional number (the only optional strings are paths).
    return 0.25
  return default + "x"


def _all_inputs(config):
  return {step: pipeline.Pipeline(config)._inputs(step) for step in pipeline.STEPS}  # pylint: disable=protected-access


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_every_field_names_its_step_and_help(field):
  assert "step" in field.metadata, f"{field.name}: no 'step' in its metadata"
  assert field.metadata["step"] is None or field.metadata["step"] in pipeline.STEPS
  assert field.metadata.get("help", "").strip(), f"{field.name}: no help text"


def test_only_where_outputs_go_is_outside_a_runs_identity():
  assert [f.name for f in FIELDS if f.metadata.get("step") is None] == ["work_dir"]


@pytest.mark.parametrize("field", IDENTITY_FIELDS, ids=lambda f: f.name)
def test_changing_a_field_changes_its_steps_settings_and_no_others(field, tmp_path):
  before = _all_inputs(pipeline.PipelineConfig(work_dir=str(tmp_path)))
  changed = pipeline.PipelineConfig(work_dir=str(tmp_path),
                                    **{field.name: _changed_value(field)})
  after = _all_inputs(changed)
  differing = [step for step in pipeline.STEPS if before[step] != after[step]]
  assert differing == [field.metadata["step"]]


def test_work_dir_is_in_no_fingerprint(tmp_path):
  assert (_all_inputs(pipeline.PipelineConfig(work_dir=str(tmp_path / "a")))
          == _all_inputs(pipeline.PipelineConfig(work_dir=str(tmp_path / "b"))))


def test_given_baseline_drops_only_the_baseline_training_settings(tmp_path):
  config = pipeline.PipelineConfig(work_dir=str(tmp_path), baseline_model=__file__)
  settings, _ = pipeline.Pipeline(config)._inputs("train")  # pylint: disable=protected-access
  expected = {f.name for f in FIELDS
              if f.metadata.get("step") == "train" and not f.metadata.get("trains_baseline")}
  assert set(settings) == expected
  # The robust augmentation also changes the fine-tunes of a given baseline.
  assert {"baseline_model", "label_smoothing", "batch_size", "noise_probability",
          "erase_probability", "sticker_probability"} <= set(settings)
  assert "epochs" not in settings
  with open(__file__, "rb") as f:
    assert settings["baseline_model"]["sha256"] == hashlib.sha256(f.read()).hexdigest()


def test_the_fine_tunes_get_the_robust_augmentation(tiny_data_dir, tmp_path):
  results = {"prepare": types.SimpleNamespace(dataset_dir=tiny_data_dir)}

  def first_batch(distil=False, **settings):
    config = pipeline.PipelineConfig(work_dir=str(tmp_path), batch_size=16, **settings)
    pipe = pipeline.Pipeline(config)
    images = next(iter(pipe._datasets(results, distil)[0]))[0]  # pylint: disable=protected-access
    return tuple(i.numpy() for i in images) if isinstance(images, tuple) else images.numpy()

  plain = first_batch()
  assert np.abs(first_batch(noise_probability=1.0) - plain).mean() > 0.01
  assert not np.array_equal(first_batch(erase_probability=1.0), plain)
  assert not np.array_equal(first_batch(sticker_probability=1.0), plain)
  assert np.abs(first_batch(fine_tune_jpeg_probability=1.0) - plain).mean() > 0.005
  # The fine-tunes' own shares replace the baseline's, and only for the fine-tunes.
  np.testing.assert_array_equal(
      first_batch(noise_probability=1.0, sticker_probability=1.0,
                  fine_tune_noise_probability=0.0, fine_tune_sticker_probability=0.0), plain)
  assert np.abs(first_batch(fine_tune_noise_probability=1.0) - plain).mean() > 0.01
  # With the teachers' view a distilled fine-tune gets (noisy images, the same before noise).
  noisy, clean = first_batch(distil=True, distill_pruning=True, distill_teacher_view=True,
                             noise_probability=1.0)
  np.testing.assert_array_equal(clean, plain)
  np.testing.assert_array_equal(noisy, first_batch(noise_probability=1.0))


def test_fine_tune_shares_default_to_the_baselines():
  config = pipeline.PipelineConfig(noise_probability=0.5, sticker_probability=0.5,
                                   fine_tune_sticker_probability=0.2)
  assert config.fine_tune_augmentation() == {
      "erase_probability": 0.0, "noise_probability": 0.5, "sticker_probability": 0.2,
      "jpeg_probability": 0.0}


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_fine_tune_share_out_of_range_is_a_config_error(value):
  with pytest.raises(errors.ConfigError, match="fine_tune_noise_probability"):
    pipeline.PipelineConfig(fine_tune_noise_probability=value).validate()


def test_field_without_step_metadata_counts_for_the_first_step(tmp_path):
  extra = dataclasses.make_dataclass(
      "ExtendedConfig", [("new_setting", int, dataclasses.field(default=1))],
      bases=(pipeline.PipelineConfig,))
  before = _all_inputs(extra(work_dir=str(tmp_path)))
  after = _all_inputs(extra(work_dir=str(tmp_path), new_setting=2))
  assert [step for step in pipeline.STEPS if before[step] != after[step]] == ["prepare"]


def _fresh_flags():
  flag_values = flags.FlagValues()
  pipeline_tool.define_flags(flag_values)
  return flag_values


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_every_field_is_a_flag_with_its_default(field):
  flag = _fresh_flags()[field.name]
  assert flag.default == field.default
  assert flag.help.endswith(field.metadata["help"])


def test_flags_parse_into_the_config():
  flag_values = _fresh_flags()
  flag_values(["gtsrb-pipeline", "--prune_dropout=0.2", "--teacher=a.keras",
               "--prune_criterion=bn_gamma", "--nodistill_qat", "--epochs=7"])
  config = pipeline.PipelineConfig(**{f.name: flag_values[f.name].value for f in FIELDS})
  assert (config.prune_dropout, config.teacher, config.prune_criterion, config.epochs) == (
      0.2, "a.keras", "bn_gamma", 7)
  with pytest.raises(flags.IllegalFlagValueError):
    _fresh_flags()(["gtsrb-pipeline", "--prune_criterion=random"])


CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.flags")))


def test_there_are_recipe_files():
  assert CONFIG_FILES, "no configs/*.flags recipe files"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_recipe_file_parses_with_the_pipelines_flags(path):
  flag_values = _fresh_flags()
  flag_values(["gtsrb-pipeline", f"--flagfile={path}"])
  config = pipeline.PipelineConfig(**{f.name: flag_values[f.name].value for f in FIELDS})
  assert config.work_dir


def test_a_failed_agreement_check_is_reported_and_a_passed_one_is_not():
  from tf_gtsrb_tools import pipeline as pipeline_tool  # pylint: disable=g-import-not-at-top
  agreement = {"agreement": 0.9814, "min_agreement": 0.99, "passed": False}
  failed = {"benchmark": pipeline.BenchmarkRecord("benchmark.json", agreement)}
  assert "98.14%" in pipeline_tool.failed_check(failed)
  agreement["passed"] = True
  assert pipeline_tool.failed_check(failed) is None
  assert pipeline_tool.failed_check({}) is None  # Stopped before the benchmark.


def test_a_failed_check_exits_4_unless_accepted(monkeypatch, tmp_path, capsys):
  agreement = {"agreement": 0.9767, "min_agreement": 0.99, "passed": False}
  failed = {"benchmark": pipeline.BenchmarkRecord("benchmark.json", agreement)}
  monkeypatch.setattr(pipeline.Pipeline, "run", lambda self, only=None, force=(): failed)
  flags.FLAGS(["gtsrb-pipeline", f"--work_dir={tmp_path}"])
  try:
    assert pipeline_tool.main() == 4
    assert "error: failed check: INT8 and QAT predictions agree on 97.67%" in capsys.readouterr().err
    flags.FLAGS.allow_failed_checks = True
    assert pipeline_tool.main() == 0
    err = capsys.readouterr().err
    assert "warning: failed check accepted" in err and "error" not in err
  finally:
    flags.FLAGS.unparse_flags()


TRAIN_CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "train", "*.flags")))


@pytest.mark.parametrize("path", TRAIN_CONFIG_FILES, ids=os.path.basename)
def test_training_recipe_parses_with_the_trainers_flags(path):
  script = ("import sys; from absl import flags; import tf_gtsrb_tools.train; "
            "flags.FLAGS(['gtsrb-train', '--flagfile=' + sys.argv[1]]); "
            "print(flags.FLAGS.model, flags.FLAGS.epochs)")
  done = subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True,
                        timeout=120, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split()[-2:] != ["traffic_sign_cnn", "30"]  # The file's, not the defaults.


def test_trainers_robust_shares_reach_its_training_config():
  script = ("from absl import flags; import tf_gtsrb_tools.train as train; "
            "flags.FLAGS(['gtsrb-train', '--data_dir=d', '--model_dir=m', "
            "'--noise_probability=0.25', '--jpeg_probability=0.5']); "
            "c = train._config(); print(c.noise_probability, c.jpeg_probability, "
            "c.sticker_probability)")
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=120, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split()[-3:] == ["0.25", "0.5", "0.0"]

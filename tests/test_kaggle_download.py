"""Tests of tf_gtsrb.data.kaggle_download with a fake `kaggle` module."""

import json
import os
import sys
import types
import zipfile

import pytest

from tf_gtsrb import errors
from tf_gtsrb.data import kaggle_download

ENV_VARS = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN",
            "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME")


@pytest.fixture
def home(tmp_path, monkeypatch):
  """An empty home directory and no Kaggle settings in the environment."""
  home_dir = tmp_path / "home"
  home_dir.mkdir()
  monkeypatch.setenv("HOME", str(home_dir))
  for var in ENV_VARS:
    monkeypatch.delenv(var, raising=False)
  return home_dir


class FakeApi:
  """Records calls; writes `zip_entries` as the dataset zip."""

  def __init__(self, zip_entries=(), fail=None, auth_error=None):
    self.zip_entries = zip_entries
    self.fail = fail
    self.auth_error = auth_error
    self.calls = []

  def authenticate(self):
    self.calls.append(("authenticate",))
    if self.auth_error:
      raise self.auth_error

  def dataset_download_files(self, dataset, path=None, force=False, quiet=True,
                             unzip=False):
    self.calls.append(("dataset_download_files", dataset, path, unzip, quiet))
    if self.fail:
      raise self.fail
    with zipfile.ZipFile(os.path.join(path, dataset.split("/")[1] + ".zip"), "w") as zf:
      for name, data in self.zip_entries:
        zf.writestr(name, data)


@pytest.fixture
def fake_kaggle(monkeypatch):
  """Installs a fake `kaggle` module; returns a function setting its api."""
  module = types.ModuleType("kaggle")
  module.api = FakeApi()
  monkeypatch.setitem(sys.modules, "kaggle", module)

  def install(api):
    module.api = api
    return api

  return install


def _write_config(directory, config):
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, "kaggle.json")
  with open(path, "w") as f:
    json.dump(config, f)
  os.chmod(path, 0o600)
  return path


def test_no_credentials(home, tmp_path, fake_kaggle):
  api = fake_kaggle(FakeApi())
  assert not kaggle_download.have_kaggle_credentials()
  with pytest.raises(errors.DownloadError) as e:
    kaggle_download.download_kaggle(tmp_path / "dl")
  message = str(e.value)
  for hint in ("kaggle.json", "~/.kaggle", "chmod 600", "KAGGLE_USERNAME",
               "KAGGLE_KEY", "Settings", "API"):
    assert hint in message
  assert api.calls == []  # The client was not used.
  assert not (tmp_path / "dl").exists()


def test_credentials_sources(home, tmp_path, monkeypatch):
  monkeypatch.setenv("KAGGLE_USERNAME", "user")
  assert not kaggle_download.have_kaggle_credentials()  # Key missing.
  monkeypatch.setenv("KAGGLE_KEY", "secret")
  assert kaggle_download.have_kaggle_credentials()
  monkeypatch.delenv("KAGGLE_USERNAME")
  monkeypatch.delenv("KAGGLE_KEY")

  _write_config(home / ".kaggle", {"username": "user"})  # No key: not usable.
  assert not kaggle_download.have_kaggle_credentials()
  (home / ".kaggle" / "kaggle.json").write_text("{not json")
  assert not kaggle_download.have_kaggle_credentials()
  _write_config(home / ".kaggle", {"username": "user", "key": "secret"})
  assert kaggle_download.have_kaggle_credentials()

  config_dir = tmp_path / "config"
  monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
  assert not kaggle_download.have_kaggle_credentials()  # Only that dir counts.
  _write_config(config_dir, {"username": "user", "key": "secret"})
  assert kaggle_download.have_kaggle_credentials()


def test_api_token_env(home, monkeypatch):
  monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
  assert kaggle_download.have_kaggle_credentials()


def test_download_and_extract(home, tmp_path, monkeypatch, fake_kaggle):
  monkeypatch.setenv("KAGGLE_USERNAME", "user")
  monkeypatch.setenv("KAGGLE_KEY", "secret")
  api = fake_kaggle(FakeApi(zip_entries=[
      ("Train/0/00000_00000_00000.png", b"png"),
      ("Test.csv", b"Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n"),
  ]))
  download_dir = tmp_path / "dl"
  path = kaggle_download.download_kaggle(download_dir)
  assert path == os.path.join(download_dir, "kaggle")
  assert (download_dir / "kaggle" / "Train" / "0" / "00000_00000_00000.png").read_bytes() == b"png"
  assert (download_dir / "kaggle" / "Test.csv").exists()
  assert os.listdir(download_dir) == ["kaggle"]  # The zip and temp dir are gone.
  (call,) = [c for c in api.calls if c[0] == "dataset_download_files"]
  _, dataset, tmp, unzip, _ = call
  assert dataset == kaggle_download.KAGGLE_DATASET
  assert unzip is False
  assert os.path.dirname(tmp) == str(download_dir)


def test_hostile_kaggle_zip_rejected(home, tmp_path, monkeypatch, fake_kaggle):
  monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
  fake_kaggle(FakeApi(zip_entries=[("ok.txt", b"x"), ("../evil.txt", b"pwned")]))
  download_dir = tmp_path / "dl"
  with pytest.raises(errors.ArchiveError, match="evil.txt"):
    kaggle_download.download_kaggle(download_dir)
  assert os.listdir(download_dir) == []
  assert sorted(os.listdir(tmp_path)) == ["dl", "home"]


def test_client_failures_become_download_errors(home, tmp_path, monkeypatch, fake_kaggle):
  monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
  fake_kaggle(FakeApi(fail=RuntimeError("403 Forbidden")))
  with pytest.raises(errors.DownloadError, match="403 Forbidden"):
    kaggle_download.download_kaggle(tmp_path / "dl")
  assert os.listdir(tmp_path / "dl") == []

  fake_kaggle(FakeApi(auth_error=SystemExit(1)))
  with pytest.raises(errors.DownloadError, match="kaggle.json"):
    kaggle_download.download_kaggle(tmp_path / "dl")

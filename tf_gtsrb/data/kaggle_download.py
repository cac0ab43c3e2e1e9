"""Download of the GTSRB copy published on Kaggle (needs Kaggle API credentials)."""

import json
import os
import tempfile

from tf_gtsrb import errors
from tf_gtsrb.data import archives

KAGGLE_DATASET = "meowmeowmeowmeowmeow/gtsrb-german-traffic-sign"

SETUP_HELP = (
    "Kaggle API credentials are missing. Create an API token at "
    "https://www.kaggle.com -> Settings -> API -> 'Create New Token', then "
    "either save the downloaded kaggle.json as ~/.kaggle/kaggle.json and run "
    "`chmod 600 ~/.kaggle/kaggle.json` (or put it in $KAGGLE_CONFIG_DIR), or "
    "set the environment variables KAGGLE_USERNAME and KAGGLE_KEY "
    "(or KAGGLE_API_TOKEN).")


def _config_files():
  """kaggle.json locations the Kaggle client reads, most specific first."""
  home = os.path.expanduser("~")
  config_dir = os.environ.get("KAGGLE_CONFIG_DIR")
  if config_dir:
    return [os.path.join(config_dir, "kaggle.json")]
  xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
  return [os.path.join(home, ".kaggle", "kaggle.json"),
          os.path.join(xdg, "kaggle", "kaggle.json")]


def _valid_config(path):
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, ValueError):
    return False
  return isinstance(config, dict) and bool(config.get("username")) and bool(
      config.get("key"))


def have_kaggle_credentials():
  """True when the Kaggle client will find credentials.

  Looks at KAGGLE_USERNAME + KAGGLE_KEY, KAGGLE_API_TOKEN, a kaggle.json with
  username and key in $KAGGLE_CONFIG_DIR (when set) or ~/.kaggle (or
  $XDG_CONFIG_HOME/kaggle), and ~/.kaggle/access_token.
  """
  if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
    return True
  if os.environ.get("KAGGLE_API_TOKEN"):
    return True
  if any(_valid_config(p) for p in _config_files()):
    return True
  token = os.path.join(os.path.expanduser("~"), ".kaggle", "access_token")
  return os.path.isfile(token) and os.path.getsize(token) > 0


def download_kaggle(download_dir, dataset=KAGGLE_DATASET, quiet=False):
  """Downloads the Kaggle GTSRB dataset and extracts it to download_dir/kaggle.

  The zip is downloaded to a temporary directory inside `download_dir`, checked
  and extracted with `archives.safe_extract`, then deleted. An existing
  download_dir/kaggle is replaced only after the new extraction is complete.

  Returns:
    The extracted directory, download_dir/kaggle.

  Raises:
    DownloadError: no credentials (the message says how to set them up), or
      the Kaggle client failed.
    ArchiveError: the downloaded zip is corrupt or hostile.
  """
  if not download_dir:
    raise errors.ConfigError("download_kaggle: download_dir is empty")
  if not have_kaggle_credentials():
    raise errors.DownloadError(f"{dataset}: {SETUP_HELP}")
  download_dir = os.fspath(download_dir)
  target = os.path.join(download_dir, "kaggle")
  try:
    os.makedirs(download_dir, exist_ok=True)
  except OSError as e:
    raise errors.GtsrbError(
        f"{download_dir}: cannot write output: {e.strerror or e}") from e

  try:
    import kaggle  # pylint: disable=g-import-not-at-top  # Authenticates on import.
    api = kaggle.api
    if not getattr(api, "_authenticated", False):  # Import swallows failures.
      api.authenticate()
  except (Exception, SystemExit) as e:  # pylint: disable=broad-except
    raise errors.DownloadError(
        f"{dataset}: Kaggle authentication failed ({e}). {SETUP_HELP}") from e

  with tempfile.TemporaryDirectory(prefix=".kaggle-download-",
                                   dir=download_dir) as tmp:
    try:
      api.dataset_download_files(dataset, path=tmp, unzip=False, quiet=quiet)
    except (Exception, SystemExit) as e:  # pylint: disable=broad-except
      raise errors.DownloadError(f"{dataset}: Kaggle download failed: {e}") from e
    zips = sorted(f for f in os.listdir(tmp) if f.lower().endswith(".zip"))
    if len(zips) != 1:
      raise errors.DownloadError(
          f"{dataset}: expected one zip from Kaggle in {tmp}, found {zips}")
    archives.safe_extract(os.path.join(tmp, zips[0]), target)
  return target

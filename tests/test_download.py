"""Tests of archives.download against a local HTTP server (no internet)."""

import hashlib
import http.server
import os
import re
import socket
import threading

import pytest

from tf_gtsrb import errors
from tf_gtsrb.data import archives

PAYLOAD = os.urandom(300_000)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves server.files; behaviour switches live on the server object."""

  protocol_version = "HTTP/1.1"

  def log_message(self, *args):  # Keep test output quiet.
    pass

  def do_GET(self):  # pylint: disable=invalid-name
    server = self.server
    server.requests.append((self.path, self.headers.get("Range")))
    data = server.files.get(self.path)
    if data is None:
      self.send_error(404, "Not Found")
      return
    start = 0
    match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
    if match and server.support_range:
      start = int(match.group(1))
      if start >= len(data):
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{len(data)}")
        self.send_header("Content-Length", "0")
        self.end_headers()
        return
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
      self.send_response(200)
    body = data[start:]
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if server.drop_after is not None:
      # Send part of the body, then cut the connection.
      self.wfile.write(body[:server.drop_after])
      self.wfile.flush()
      server.drop_after = None
      self.close_connection = True
      return
    if server.stall_after is not None:
      self.wfile.write(body[:server.stall_after])
      self.wfile.flush()
      server.release.wait(10)
      self.close_connection = True
      return
    # Counted before writing: the client may finish reading before this thread runs again.
    server.bytes_sent += len(body)
    self.wfile.write(body)


@pytest.fixture
def server():
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  httpd.daemon_threads = True
  httpd.files = {"/data.bin": PAYLOAD}
  httpd.requests = []
  httpd.support_range = True
  httpd.drop_after = None
  httpd.stall_after = None
  httpd.release = threading.Event()
  httpd.bytes_sent = 0
  httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
  thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
  thread.start()
  yield httpd
  httpd.release.set()
  httpd.shutdown()
  httpd.server_close()
  thread.join(5)


def _download(server, dest, **kwargs):
  kwargs.setdefault("progress", False)
  kwargs.setdefault("timeout", 10)
  return archives.download(server.url + "/data.bin", str(dest), **kwargs)


def test_download_verifies_and_renames(tmp_path, server):
  dest = tmp_path / "sub" / "data.bin"
  assert _download(server, dest, md5=PAYLOAD_MD5, size=len(PAYLOAD)) == str(dest)
  assert dest.read_bytes() == PAYLOAD
  assert os.listdir(dest.parent) == ["data.bin"]
  assert server.requests == [("/data.bin", None)]


def test_download_with_progress_bar(tmp_path, server, capsys):
  dest = tmp_path / "data.bin"
  _download(server, dest, md5=PAYLOAD_MD5, progress=True)
  assert dest.read_bytes() == PAYLOAD
  assert "data.bin" in capsys.readouterr().err


def test_present_file_with_right_checksum_is_not_downloaded(tmp_path, server):
  dest = tmp_path / "data.bin"
  dest.write_bytes(PAYLOAD)
  _download(server, dest, md5=PAYLOAD_MD5, size=len(PAYLOAD))
  assert server.requests == []


def test_present_file_with_wrong_checksum_is_downloaded_again(tmp_path, server):
  dest = tmp_path / "data.bin"
  dest.write_bytes(b"stale")
  _download(server, dest, md5=PAYLOAD_MD5)
  assert dest.read_bytes() == PAYLOAD
  assert len(server.requests) == 1


def test_resume_from_partial_file(tmp_path, server):
  dest = tmp_path / "data.bin"
  (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:100_000])
  _download(server, dest, md5=PAYLOAD_MD5, size=len(PAYLOAD))
  assert dest.read_bytes() == PAYLOAD
  assert server.requests == [("/data.bin", "bytes=100000-")]
  assert server.bytes_sent == len(PAYLOAD) - 100_000
  assert not (tmp_path / "data.bin.part").exists()


def test_server_ignoring_range_restarts_from_scratch(tmp_path, server):
  server.support_range = False
  dest = tmp_path / "data.bin"
  (tmp_path / "data.bin.part").write_bytes(b"garbage that is not the start")
  _download(server, dest, md5=PAYLOAD_MD5)
  assert dest.read_bytes() == PAYLOAD
  assert server.requests == [("/data.bin", "bytes=29-")]
  assert server.bytes_sent == len(PAYLOAD)


def test_complete_part_file_answered_416(tmp_path, server):
  dest = tmp_path / "data.bin"
  (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
  _download(server, dest, md5=PAYLOAD_MD5)  # Size unknown: asks the server.
  assert dest.read_bytes() == PAYLOAD
  assert server.bytes_sent == 0


def test_dropped_connection_keeps_part_then_resumes(tmp_path, server):
  server.drop_after = 120_000
  dest = tmp_path / "data.bin"
  part = tmp_path / "data.bin.part"
  with pytest.raises(errors.DownloadError) as e:
    _download(server, dest, md5=PAYLOAD_MD5, size=len(PAYLOAD))
  assert server.url + "/data.bin" in str(e.value)
  assert "resume" in str(e.value)
  assert not dest.exists()
  assert part.read_bytes() == PAYLOAD[:120_000]

  _download(server, dest, md5=PAYLOAD_MD5, size=len(PAYLOAD))
  assert dest.read_bytes() == PAYLOAD
  assert not part.exists()
  assert server.requests[-1] == ("/data.bin", "bytes=120000-")


def test_dropped_connection_without_known_size(tmp_path, server):
  server.drop_after = 1000
  dest = tmp_path / "data.bin"
  with pytest.raises(errors.DownloadError, match="connection closed after 1000 bytes"):
    _download(server, dest)
  assert (tmp_path / "data.bin.part").stat().st_size == 1000
  _download(server, dest)
  assert dest.read_bytes() == PAYLOAD


def test_stalled_transfer_times_out(tmp_path, server):
  server.stall_after = 5000
  dest = tmp_path / "data.bin"
  with pytest.raises(errors.DownloadError, match="data.bin"):
    _download(server, dest, timeout=0.5)
  server.release.set()
  assert not dest.exists()
  assert (tmp_path / "data.bin.part").stat().st_size == 5000


def test_checksum_mismatch_leaves_no_file(tmp_path, server):
  dest = tmp_path / "data.bin"
  with pytest.raises(errors.ChecksumError) as e:
    _download(server, dest, md5="0" * 32)
  assert "0" * 32 in str(e.value) and PAYLOAD_MD5 in str(e.value)
  assert os.listdir(tmp_path) == []


def test_size_mismatch_leaves_no_file(tmp_path, server):
  dest = tmp_path / "data.bin"
  with pytest.raises(errors.ChecksumError, match="expected 1000"):
    _download(server, dest, size=1000)
  assert os.listdir(tmp_path) == []


def test_http_error_names_url(tmp_path, server):
  with pytest.raises(errors.DownloadError, match=r"/missing.bin: HTTP 404"):
    archives.download(server.url + "/missing.bin", str(tmp_path / "m"), progress=False)
  assert os.listdir(tmp_path) == []


def test_connection_refused_names_url(tmp_path):
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  port = sock.getsockname()[1]
  sock.close()  # Nothing listens on this port now.
  url = f"http://127.0.0.1:{port}/x.bin"
  with pytest.raises(errors.DownloadError, match=re.escape(url)):
    archives.download(url, str(tmp_path / "x.bin"), progress=False, timeout=5)


@pytest.mark.parametrize("kwargs", [
    dict(url="ftp://example.com/x"),
    dict(url="/local/file"),
    dict(url="http://[bad"),
    dict(md5="not-an-md5"),
    dict(size=-1),
    dict(timeout=0),
])
def test_bad_arguments(tmp_path, kwargs):
  args = dict(url="http://127.0.0.1:9/x", dest_path=str(tmp_path / "x"))
  args.update(kwargs)
  with pytest.raises(errors.ConfigError):
    archives.download(**args)
  assert os.listdir(tmp_path) == []


def test_fetch_official_archives_downloads_missing(tmp_path, server, monkeypatch):
  files = {name: name.encode() * 1000 for name in archives.OFFICIAL_ARCHIVES}
  for name, data in files.items():
    server.files["/" + name] = data
    monkeypatch.setitem(
        archives.OFFICIAL_ARCHIVES, name,
        archives.ArchiveInfo(f"{server.url}/{name}", len(data),
                             hashlib.md5(data).hexdigest()))
  present = "GTSRB_Final_Test_GT.zip"
  (tmp_path / present).write_bytes(files[present])
  paths = archives.fetch_official_archives(tmp_path, progress=False)
  for name, data in files.items():
    assert open(paths[name], "rb").read() == data
  assert sorted(p for p, _ in server.requests) == sorted(
      "/" + n for n in files if n != present)
  assert sorted(os.listdir(tmp_path)) == sorted(files)

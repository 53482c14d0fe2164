"""Corpus downloads: HTTP Range resume, size and MD5 checks, atomic rename, extraction with merging, offline errors.

A local ``http.server`` (with Range support written here) or a ``file://`` URL serves fake
archives; nothing touches the network.
"""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audiossl.cli.main import main
from audiossl.data.corpora import download
from audiossl.errors import UserError


def tar_gz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Server:
    """Serves ``files`` (name -> bytes) with Range support; ``truncate_next`` cuts the next body short."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.truncate_next = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                payload = body[start:]
                if server.truncate_next:
                    server.truncate_next = False
                    payload = payload[: len(payload) // 2]
                    self.close_connection = True
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    body = bytes(range(256)) * 4000  # ~1 MB, about one download chunk
    served = Server({"blob.bin": body})
    yield served, body
    served.close()


def test_fetch_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    served, body = server
    target = tmp_path / "blob.bin"
    target.with_name("blob.bin.part").write_bytes(body[:1000])
    path = download.fetch(f"{served.url}/blob.bin", target, md5=hashlib.md5(body).hexdigest(), echo=lambda _: None)
    assert path.read_bytes() == body
    assert served.requests == [("blob.bin", "bytes=1000-")]
    assert not target.with_name("blob.bin.part").exists()


def test_interrupted_download_says_so_and_the_next_run_resumes(server, tmp_path):
    served, body = server
    served.truncate_next = True
    target = tmp_path / "blob.bin"
    with pytest.raises(UserError, match="interrupted at .* run again to resume"):
        download.fetch(f"{served.url}/blob.bin", target, echo=lambda _: None)
    assert not target.exists()  # only the .part, never a half file under the final name
    have = target.with_name("blob.bin.part").stat().st_size
    assert 0 < have < len(body)
    download.fetch(f"{served.url}/blob.bin", target, md5=hashlib.md5(body).hexdigest(), echo=lambda _: None)
    assert target.read_bytes() == body
    assert served.requests[-1] == ("blob.bin", f"bytes={have}-")


def test_complete_part_file_is_finished_without_refetching(server, tmp_path):
    served, body = server
    target = tmp_path / "blob.bin"
    target.with_name("blob.bin.part").write_bytes(body)
    download.fetch(f"{served.url}/blob.bin", target, echo=lambda _: None)  # server answers 416 with the size
    assert target.read_bytes() == body


def test_wrong_md5_removes_the_download(server, tmp_path):
    served, _ = server
    target = tmp_path / "blob.bin"
    with pytest.raises(UserError, match="MD5 .* is not the published 0+"):
        download.fetch(f"{served.url}/blob.bin", target, md5="0" * 32, echo=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_offline_server_are_clear_errors(server, tmp_path):
    served, _ = server
    with pytest.raises(UserError, match="HTTP 404"):
        download.fetch(f"{served.url}/nothing.tar.gz", tmp_path / "nothing.tar.gz", echo=lambda _: None)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match="are you offline\\? Download it by hand to"):
        download.fetch(f"http://127.0.0.1:{port}/x.tar.gz", tmp_path / "x.tar.gz", echo=lambda _: None)


def test_librispeech_parts_are_checked_extracted_into_one_tree_and_skipped_after(tmp_path, monkeypatch):
    archives = {
        part: tar_gz({f"LibriSpeech/{part}/19/198/19-198.trans.txt": part, "LibriSpeech/README.TXT": part})
        for part in ("dev-clean", "test-clean")
    }
    served = Server({f"{part}.tar.gz": body for part, body in archives.items()})
    try:
        for part, body in archives.items():  # the published MD5s are of the real archives
            monkeypatch.setitem(
                download.CORPORA["librispeech"],
                part,
                download.Archive(f"{part}.tar.gz", "unused", hashlib.md5(body).hexdigest()),
            )
        dest = tmp_path / "corpus"
        download.download_corpus(
            "librispeech", dest, ["dev-clean", "test-clean"], mirror=served.url, echo=lambda _: None
        )
        for part in archives:
            assert (dest / "LibriSpeech" / part / "19" / "198" / "19-198.trans.txt").read_text() == part
            assert (dest / f".done-{part}.tar.gz").is_file()
        assert (dest / "LibriSpeech" / "README.TXT").read_text() == "test-clean"  # shared files: the last part's
        assert list((dest / "downloads").iterdir()) == []  # archives deleted once extracted
        assert not [p for p in dest.iterdir() if p.name.startswith(".extract-")]
        count = len(served.requests)
        messages = []
        download.download_corpus("librispeech", dest, ["dev-clean"], mirror=served.url, echo=messages.append)
        assert len(served.requests) == count and "already extracted" in messages[0]
    finally:
        served.close()


def test_cli_downloads_fsdd_from_a_file_url(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "master.zip", "w") as archive:
        archive.writestr("free-spoken-digit-dataset-master/recordings/0_jackson_0.wav", b"RIFF")
    assert main(["data", "download", "fsdd", str(tmp_path / "fsdd"), "--mirror", mirror.as_uri()]) == 0
    recording = tmp_path / "fsdd" / "free-spoken-digit-dataset-master" / "recordings" / "0_jackson_0.wav"
    assert recording.read_bytes() == b"RIFF"
    assert main(["data", "download", "librispeech", str(tmp_path / "x"), "--parts", "train-clean-99"]) == 2
    assert "unknown librispeech part(s) train-clean-99" in capsys.readouterr().err


def test_archive_members_outside_the_destination_are_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../escaped.txt", "x")
    with pytest.raises(UserError, match="outside"):
        download.extract(bad, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(b"not an archive")
    with pytest.raises(UserError, match="cannot extract"):
        download.extract(corrupt, tmp_path / "dest")


def _tar_with(tmp_path, name: str, kind: bytes = tarfile.REGTYPE, linkname: str = ""):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        data = b"" if kind != tarfile.REGTYPE else b"x"
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "name, kind, linkname, reason",
    [
        ("../escaped.txt", tarfile.REGTYPE, "", "would be written outside the destination"),
        ("sub/../../escaped.txt", tarfile.REGTYPE, "", "would be written outside the destination"),
        ("link", tarfile.SYMTYPE, "../../outside", "link pointing outside the destination"),
    ],
)
def test_tar_traversal_is_reported_as_refused_not_corrupt(tmp_path, name, kind, linkname, reason):
    archive = _tar_with(tmp_path, name, kind, linkname)
    dest = tmp_path / "dest"
    with pytest.raises(UserError) as caught:
        download.extract(archive, dest)
    message = str(caught.value)
    assert message.startswith(f"{archive}: refused archive member {name!r}: it ")
    assert reason in message and str(dest) in message
    assert "corrupt" not in message and ".extract-" not in message  # no staging path, no wrong diagnosis
    assert not (tmp_path / "escaped.txt").exists() and not list(dest.iterdir())


def test_zip_traversal_names_member_and_archive(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../escaped.txt", "x")
    with pytest.raises(UserError) as caught:
        download.extract(bad, tmp_path / "dest")
    assert str(caught.value).startswith(f"{bad}: refused archive member '../escaped.txt': it would be written outside")

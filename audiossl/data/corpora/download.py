"""Resumable downloads of the public corpora (LibriSpeech, VCTK, FSDD), then extraction.

Each archive is fetched to ``DEST/downloads/<name>.part``, continued with an HTTP Range request
when a previous attempt was cut off, checked (size against the server's length, and the
published MD5 where there is one), renamed to ``<name>`` only when whole, and extracted only
then: into a temporary folder inside ``DEST``, whose contents are moved into place (folders
merged, so LibriSpeech parts share one ``LibriSpeech/``). A ``.done-<name>`` marker makes a
rerun skip the archive; the archive itself is deleted after extraction.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiossl.errors import UserError

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One downloadable file of a corpus."""

    name: str
    """File name, also the last part of the URL."""
    base_url: str
    """Folder URL the file is in (replaced by ``mirror``)."""
    md5: str | None = None
    """Published MD5 of the file, when the distributor publishes one."""

    def url(self, mirror: str | None = None) -> str:
        return f"{(mirror or self.base_url).rstrip('/')}/{self.name}"


_OPENSLR = "https://www.openslr.org/resources/12"
#: MD5s from https://www.openslr.org/resources/12/md5sum.txt.
_LIBRISPEECH_MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}

#: corpus -> part -> archive. Parts name what ``--parts`` selects.
CORPORA: dict[str, dict[str, Archive]] = {
    "librispeech": {part: Archive(f"{part}.tar.gz", _OPENSLR, md5) for part, md5 in _LIBRISPEECH_MD5.items()},
    "vctk": {
        "all": Archive(
            "VCTK-Corpus-0.92.zip",
            "https://datashare.ed.ac.uk/bitstream/handle/10283/3443",
            "8a6ba2946b36fcbef0212cad601f4bfa",  # as published with the DataShare item (also torchaudio's)
        )
    },
    # A branch archive: its bytes change with the repository, so there is no fixed checksum.
    "fsdd": {
        "all": Archive("master.zip", "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads")
    },
}

#: Parts fetched when ``parts`` is not given.
DEFAULT_PARTS = {
    "librispeech": ("dev-clean", "test-clean", "train-clean-100"),
    "vctk": ("all",),
    "fsdd": ("all",),
}


def download_corpus(
    corpus: str,
    dest: str | Path,
    parts: Sequence[str] | None = None,
    mirror: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Download and extract ``parts`` of ``corpus`` into ``dest``; return the markers of the extracted archives.

    ``mirror`` replaces the distributor's folder URL (an OpenSLR mirror, a local copy,
    ``file:///...``). Archives already extracted (marker present) are skipped.
    """
    if corpus not in CORPORA:
        raise UserError(f"no download for corpus {corpus!r}; downloadable: {', '.join(CORPORA)}")
    chosen = list(parts or DEFAULT_PARTS[corpus])
    unknown = [p for p in chosen if p not in CORPORA[corpus]]
    if unknown:
        raise UserError(f"unknown {corpus} part(s) {', '.join(unknown)}; parts: {', '.join(CORPORA[corpus])}")
    dest = Path(dest)
    markers = []
    for part in chosen:
        archive = CORPORA[corpus][part]
        marker = dest / f".done-{archive.name}"
        if marker.exists():
            echo(f"{archive.name}: already extracted in {dest} (remove {marker} to fetch it again)")
        else:
            path = fetch(archive.url(mirror), dest / "downloads" / archive.name, md5=archive.md5, echo=echo)
            echo(f"extracting {path.name} into {dest}")
            extract(path, dest)
            marker.write_text(f"{archive.url(mirror)}\n", encoding="utf-8")
            path.unlink()
        markers.append(marker)
    return markers


def fetch(url: str, path: str | Path, md5: str | None = None, echo: Callable[[str], None] = print) -> Path:
    """Download ``url`` to ``path``, resuming ``path.part`` if present; the file appears only when complete.

    A wrong size or MD5 deletes the partial file and raises :class:`UserError`; an unreachable
    server raises one saying how to put the file there by hand.
    """
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "audiossl"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the .part may already be whole
            total = _total_from_content_range(error.headers.get("Content-Range"))
            if total == have:
                return _finish(part, path, md5, url)
            part.unlink()
            raise UserError(
                f"server refused to resume {url} (HTTP 416); the partial file was removed, run again"
            ) from None
        raise UserError(f"cannot download {url}: HTTP {error.code} {error.reason}", path) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(
            f"cannot download {url} ({reason}): are you offline? Download it by hand to {path} "
            "(or extract the corpus yourself and pass its folder)"
        ) from None
    with response:
        status = getattr(response, "status", None) or 200
        resumed = status == 206
        if resumed:
            total = _total_from_content_range(response.headers.get("Content-Range"))
        else:
            have = 0  # the server sent the whole file
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        echo(f"downloading {url}" + (f" (resuming at {have} bytes)" if resumed else ""))
        written = have
        try:
            with part.open("ab" if resumed else "wb") as handle:
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    written += len(chunk)
        except (OSError, urllib.error.URLError) as error:
            raise UserError(
                f"download of {url} interrupted at {written} bytes ({error}); run again to resume"
            ) from None
    if total is not None and written < total:
        raise UserError(f"download of {url} interrupted at {written} of {total} bytes; run again to resume")
    if total is not None and written > total:
        part.unlink()
        raise UserError(f"{url}: got {written} bytes, the server announced {total}; the partial file was removed")
    return _finish(part, path, md5, url)


def _finish(part: Path, path: Path, md5: str | None, url: str) -> Path:
    if md5 is not None:
        digest = hashlib.md5()
        with part.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
        if digest.hexdigest() != md5:
            part.unlink()
            raise UserError(f"{url}: MD5 {digest.hexdigest()} is not the published {md5}; the download was removed")
    os.replace(part, path)
    return path


def _total_from_content_range(header: str | None) -> int | None:
    """``bytes 100-199/200`` or ``bytes */200`` -> 200."""
    if not header or "/" not in header:
        return None
    total = header.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def extract(archive: str | Path, dest: str | Path) -> None:
    """Unpack a .tar.gz/.tgz/.tar/.zip into ``dest``, merging folders that already exist there.

    Members that would land outside ``dest`` (absolute paths, ``..``, links out) are refused.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=dest) as tmp:
        staging = Path(tmp)
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as handle:
                    for member in handle.namelist():
                        target = (staging / member).resolve()
                        if not target.is_relative_to(staging.resolve()):
                            raise UserError(
                                f"refused archive member {member!r}: it would be written outside the destination "
                                f"{dest}; nothing was extracted",
                                archive,
                            )
                    handle.extractall(staging)
            else:
                with tarfile.open(archive) as handle:
                    handle.extractall(staging, filter="data")
        except tarfile.FilterError as error:  # the "data" filter refused a member: not a corrupt archive
            member = getattr(getattr(error, "tarinfo", None), "name", "?")
            raise UserError(
                f"refused archive member {member!r}: {_refusal(error, dest)}; nothing was extracted", archive
            ) from None
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
            raise UserError(f"cannot extract: {error} (corrupt or not an archive?)", archive) from None
        _merge(staging, dest)


def _refusal(error: tarfile.FilterError, dest: Path) -> str:
    """Why tarfile's ``data`` filter refused a member, in words that do not name the staging folder."""
    if isinstance(error, (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError)):
        return f"it is a link pointing outside the destination {dest}"
    if isinstance(error, (tarfile.OutsideDestinationError, tarfile.AbsolutePathError)):
        return f"it would be written outside the destination {dest} (an absolute path or '..')"
    if isinstance(error, tarfile.SpecialFileError):
        return "it is a device or other special file"
    return f"unsafe member ({type(error).__name__})"


def _merge(source: Path, target: Path) -> None:
    for item in source.iterdir():
        destination = target / item.name
        if item.is_dir() and destination.is_dir():
            _merge(item, destination)
        else:
            if destination.is_dir() and not item.is_dir():
                shutil.rmtree(destination)
            with contextlib.suppress(FileNotFoundError):
                if destination.is_file() or destination.is_symlink():
                    destination.unlink()
            os.replace(item, destination)

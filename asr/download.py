"""Download LibriSpeech from OpenSLR: resumable, MD5-verified downloads and a tar extraction that refuses
anything outside its target.

The audio subsets are OpenSLR resource 12, the language-model files (n-gram LMs, vocabulary, lexicon,
LM training text) resource 11. ``fetch_librispeech(root, names)`` leaves each subset in
``root/LibriSpeech/<subset>/`` (the official layout, which `asr.corpora.scan_librispeech` reads) and each
LM file as ``root/<file>``, unextracted.

Every step can be interrupted and run again:

- ``download`` writes into ``<dest>.part`` and resumes it with an HTTP Range request; only a verified file
  is renamed to ``dest``, and its MD5 is cached in ``<dest>.md5`` so that it is not hashed again.
- ``safe_extract`` unpacks into a temporary folder inside the target, moves the result into place, and
  then writes a marker file; a subset whose marker exists is not fetched again.

Standard library only (plus tqdm for the progress bars, shown on a terminal only).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import ssl
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from asr.atomic import atomic_write_text
from asr.errors import InputError

log = logging.getLogger(__name__)

# The folder holding OpenSLR's numbered resources; a mirror replaces it (e.g. https://openslr.elda.org/resources).
DEFAULT_MIRROR = "https://www.openslr.org/resources"
MIRROR_ENV = "ASR_LIBRISPEECH_MIRROR"

TIMEOUT = 60.0  # seconds without a byte before a connection counts as lost
RETRIES = 3  # further attempts (each resuming where the last stopped) after a lost connection
BACKOFF = 2.0  # seconds before the first retry; doubled each time
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """One file published on OpenSLR."""

    filename: str
    number: int  # the OpenSLR resource: 12 (LibriSpeech audio), 31 (mini LibriSpeech audio) or 11 (language model)
    md5: str | None  # the published MD5; None: checked against the server's length only

    @property
    def is_archive(self) -> bool:
        return self.number in (12, 31)

    def url(self, base: str) -> str:
        return f"{base}/{self.number}/{self.filename}"


# MD5 sums as published in OpenSLR's md5sum.txt for resources 12, 31 and 11.
SUBSETS: dict[str, Resource] = {
    name: Resource(f"{name}.tar.gz", number, md5) for name, number, md5 in [
        ("train-clean-100", 12, "2a93770f6d5c6c964bc36631d331a522"),
        ("train-clean-360", 12, "c0e676e450a7ff2f54aeade5171606fa"),
        ("train-other-500", 12, "d1a0fd59409feb2c614ce4d30c387708"),
        ("dev-clean", 12, "42e2234ba48799c1f50f24a7926300a1"),
        ("dev-other", 12, "c8d0bcc9cca99d4f8b62fcc847357931"),
        ("test-clean", 12, "32fa31d27d2e1cad72775fee3f4849a9"),
        ("test-other", 12, "fb5a50374b501bb3bac4815ee91d3135"),
        # Mini LibriSpeech (OpenSLR 31): 5 h of train-clean-100's speakers and 2 h of dev-clean's.
        ("train-clean-5", 31, "5df7d4e78065366204ca6845bb08f490"),
        ("dev-clean-2", 31, "6d7ab67ac6a1d2c993d050e16d61080d"),
    ]
}
LM_FILES: dict[str, Resource] = {
    name: Resource(name, 11, md5) for name, md5 in [
        ("3-gram.arpa.gz", "74cbb837e582378c26c602e1c8cbcb9c"),
        ("3-gram.pruned.1e-7.arpa.gz", "9a0f1325bcaf3a0f7b7be4be10823c2a"),
        ("3-gram.pruned.3e-7.arpa.gz", "8f67ec741827742eee05799ab7605b50"),
        ("4-gram.arpa.gz", "6abdcd5b055bd482e4f9defe91d40408"),
        ("librispeech-vocab.txt", "bf3cc7a50112831ed8b0afa40cae96a5"),
        ("librispeech-lexicon.txt", "28f72663f6bfed7cd346283c064c315b"),
        ("librispeech-lm-norm.txt.gz", "c83c64c726a1aedfe65f80aa311de402"),
    ]
}


def resource(name: str) -> Resource:
    """The resource called `name` (a subset, optionally with .tar.gz, or an LM file name)."""
    name = name.removesuffix(".tar.gz") if name.removesuffix(".tar.gz") in SUBSETS else name
    if name in SUBSETS:
        return SUBSETS[name]
    if name in LM_FILES:
        return LM_FILES[name]
    raise InputError(f"unknown LibriSpeech resource {name!r}; choose from {', '.join([*SUBSETS, *LM_FILES])}")


def resolve_mirror(mirror: str | None = None) -> str:
    """The resources base URL: `mirror`, else $ASR_LIBRISPEECH_MIRROR, else OpenSLR itself.

    A URL naming resource 12, 31 or 11 itself (``.../resources/12``) is taken as its parent, so a link copied
    from the OpenSLR page works too.
    """
    base = (mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR).strip().rstrip("/")
    base = re.sub(r"/(?:11|12|31)$", "", base)
    if not re.match(r"^https?://[^/]+", base):
        raise InputError(f"mirror {base!r}: not an http:// or https:// URL")
    return base


# --- downloading ------------------------------------------------------------------------------------


class _Retry(Exception):
    """A transfer that failed in a way worth another attempt (the .part file is kept)."""


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _reason(e: BaseException) -> str:
    """A short, one-line description of a network or file error."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return _reason(e.reason) if isinstance(e.reason, BaseException) else str(e.reason)
    if isinstance(e, TimeoutError):  # socket.timeout too
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _file_md5(path: Path, desc: str | None = None) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=desc or f"checking {path.name}", disable=None, leave=False) as bar:
        while block := f.read(_CHUNK):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def _sidecar_matches(dest: Path, md5: str) -> bool:
    """Whether `dest.md5` records `md5` for the file as it is now (same size and modification time)."""
    try:
        digest, size, mtime_ns = _sibling(dest, ".md5").read_text(encoding="utf-8").split()
        st = dest.stat()
        return digest == md5 and int(size) == st.st_size and int(mtime_ns) == st.st_mtime_ns
    except (OSError, ValueError):
        return False


def _write_sidecar(dest: Path, md5: str) -> None:
    st = dest.stat()
    atomic_write_text(_sibling(dest, ".md5"), f"{md5} {st.st_size} {st.st_mtime_ns}\n")


def _is_verified(dest: Path, md5: str | None) -> bool:
    if not dest.is_file():
        return False
    if md5 is None or _sidecar_matches(dest, md5):
        return True
    actual = _file_md5(dest)
    if actual == md5:
        _write_sidecar(dest, md5)
        return True
    log.warning("%s: MD5 %s is not the published %s; downloading it again", dest, actual, md5)
    return False


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000)."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not m:
        return None, None
    return (int(m[1]) if m[1] else None), (int(m[2]) if m[2] != "*" else None)


def _transfer(url: str, part: Path, label: str, timeout: float) -> tuple[str, int]:
    """One HTTP request that fills `part` (appending when the server honours Range) -> (md5 of part, its size)."""
    from asr import __version__

    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"asr/{__version__} (python urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:  # nothing after `offset`: the .part is whole, or longer than the file
            _, total = _content_range(e.headers.get("Content-Range"))
            if total == offset:
                return _file_md5(part), offset
            part.unlink()
            raise _Retry("the partial download does not fit the file on the server; starting again") from e
        if e.code >= 500 or e.code in (408, 429):
            raise _Retry(_reason(e)) from e
        raise InputError(f"{url}: {_reason(e)}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        cause = e.reason if isinstance(e, urllib.error.URLError) else e
        if isinstance(cause, (socket.gaierror, ssl.SSLCertVerificationError)):  # retrying will not help
            raise InputError(f"{url}: {_reason(e)}") from e
        raise _Retry(_reason(e)) from e

    with resp:
        if resp.status == 206 and offset:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Retry(f"the server resumed at byte {start} instead of {offset}; starting again")
            mode = "ab"
        elif resp.status in (200, 206):  # 200: no Range asked, or the server ignored it: start from zero
            if offset:
                log.info("%s: the server does not resume downloads; starting from the beginning", url)
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise InputError(f"{url}: unexpected HTTP {resp.status} {resp.reason}")
        if offset:
            log.info("%s: resuming at byte %d", url, offset)
        received = offset
        try:
            h = hashlib.md5()
            if mode == "ab":
                with open(part, "rb") as f:
                    while block := f.read(_CHUNK):
                        h.update(block)
            with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                             unit_divisor=1024, desc=label, disable=None) as bar:
                while True:
                    try:
                        block = resp.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Retry(f"connection lost after {received} bytes ({_reason(e)})") from e
                    if not block:
                        break
                    f.write(block)
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise InputError(f"{part}: cannot write the download: {_reason(e)}") from e
    if total is not None and received < total:
        raise _Retry(f"connection closed after {received} of {total} bytes")
    if total is not None and received > total:
        part.unlink()
        raise _Retry(f"received {received} bytes where the server announced {total}; starting again")
    return h.hexdigest(), received


def download(url: str, dest: str | Path, md5: str | None = None, *, timeout: float | None = None,
             retries: int | None = None, backoff: float | None = None) -> Path:
    """Download `url` to `dest` unless `dest` is already there and verified -> dest.

    The bytes go to ``dest.part``; a lost connection is resumed from where it stopped (HTTP Range), up to
    `retries` times, and a later call resumes a .part left by an earlier one. A server that ignores Range
    gets the file from the start. With `md5`, a mismatch deletes the .part and raises InputError naming
    both sums; without, the length the server announced is checked (and a `dest` already there is taken
    as complete). Only then is the file renamed to `dest`. Network failures raise InputError naming the
    URL and the reason.
    """
    timeout = TIMEOUT if timeout is None else timeout
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF if backoff is None else backoff
    dest, md5 = Path(dest), md5.lower() if md5 else None
    if _is_verified(dest, md5):
        log.info("%s: already downloaded%s", dest, " and verified" if md5 else "")
        return dest
    part = _sibling(dest, ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{dest.parent}: cannot create folder: {_reason(e)}") from e
    log.info("downloading %s -> %s", url, dest)
    attempt = 0
    while True:
        try:
            digest, size = _transfer(url, part, dest.name, timeout)
            break
        except _Retry as e:
            if attempt >= retries:
                kept = f"; {part} is kept, run again to resume" if part.is_file() and part.stat().st_size else ""
                raise InputError(f"{url}: {e}{kept}") from None
            delay = backoff * 2 ** attempt
            attempt += 1
            log.warning("%s: %s; retrying in %.0f s (%d of %d)", url, e, delay, attempt, retries)
            time.sleep(delay)
    if md5 is not None and digest != md5:
        part.unlink(missing_ok=True)
        raise InputError(f"{dest.name}: MD5 mismatch after downloading {url}: expected {md5}, got {digest} "
                         f"({size} bytes); the download was deleted, run again to fetch it afresh")
    os.replace(part, dest)
    _write_sidecar(dest, digest)
    return dest


# --- extracting -------------------------------------------------------------------------------------


class _ProgressReader:
    """A read-only file wrapper that advances a progress bar by the (compressed) bytes read."""

    def __init__(self, f, bar):
        self.f, self.bar = f, bar

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.bar.update(len(data))
        return data


def _member_path(archive: Path, member: tarfile.TarInfo) -> PurePosixPath:
    """The member's path relative to the extraction folder; InputError for anything unsafe."""
    name = member.name

    def refuse(why: str) -> InputError:
        return InputError(f"{archive}: refusing to extract member {name!r}: {why}")

    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise refuse("absolute path")
    if ".." in path.parts or ".." in name.split("\\"):
        raise refuse("'..' in its path")
    if member.issym():
        raise refuse(f"symbolic link (to {member.linkname!r})")
    if member.islnk():
        raise refuse(f"hard link (to {member.linkname!r})")
    if member.ischr() or member.isblk():
        raise refuse("device file")
    if member.isfifo():
        raise refuse("FIFO")
    if not (member.isreg() or member.isdir()):
        raise refuse(f"unsupported member type {member.type!r}")
    return path


def _unpack(archive: Path, into: Path) -> None:
    """Stream every member of `archive` into the empty folder `into`, checking each before writing it."""
    try:
        raw = open(archive, "rb")
    except OSError as e:
        raise InputError(f"{archive}: cannot read: {_reason(e)}") from e
    try:
        with raw, tqdm(total=archive.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=f"extracting {archive.name}", disable=None) as bar:
            with tarfile.open(fileobj=_ProgressReader(raw, bar), mode="r|*") as tar:
                for member in tar:
                    rel = _member_path(archive, member)
                    if not rel.parts:  # "." itself
                        continue
                    out = into.joinpath(*rel.parts)
                    if member.isdir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(out, "wb") as f:
                        shutil.copyfileobj(src, f, _CHUNK)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(f"{archive}: not a readable tar archive ({e})") from e
    except OSError as e:
        raise InputError(f"{archive}: extraction failed: {e.filename or into}: {_reason(e)}") from e


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.move(str(src), str(dst))  # dst is on another file system (e.g. a symlinked folder)


def _merge(src: Path, dst: Path, archive: Path) -> None:
    """Move the tree `src` into `dst`: whole folders where `dst` lacks them, files over files."""
    for entry in sorted(src.iterdir()):
        out = dst / entry.name
        if entry.is_dir():
            if out.is_dir():
                _merge(entry, out, archive)
            elif out.exists() or out.is_symlink():
                raise InputError(f"{out}: exists and is not a folder, but {archive.name} holds a folder there")
            else:
                _move(entry, out)
        elif out.is_dir():
            raise InputError(f"{out}: is a folder, but {archive.name} holds a file there")
        else:
            _move(entry, out)


def safe_extract(archive: str | Path, target: str | Path, *, marker: str | None = None,
                 expect: str | None = None) -> Path:
    """Extract the tar archive `archive` (any compression tarfile reads) into `target` -> target.

    Refuses (InputError naming the archive and the member) absolute paths, '..' components, symbolic
    and hard links, devices and FIFOs. Members go to a temporary folder inside `target` first, so a
    refused member or a corrupt archive leaves `target` as it was; the result is then moved into place,
    merging with folders already there. With `expect` (a relative folder path) the archive must contain
    it. With `marker` (a file name), ``target/marker`` is written once all is in place, and an
    extraction whose marker exists is skipped.
    """
    archive, target = Path(archive), Path(target)
    marker_path = target / marker if marker else None
    if marker_path is not None and marker_path.is_file():
        log.info("%s: already extracted into %s", archive.name, target)
        return target
    prefix = f".extract-{archive.name}."
    try:
        target.mkdir(parents=True, exist_ok=True)
        for stale in target.glob(prefix + "*"):  # left by an extraction that was killed
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=target, prefix=prefix))
    except OSError as e:
        raise InputError(f"{target}: cannot extract into it: {_reason(e)}") from e
    try:
        log.info("extracting %s into %s", archive, target)
        _unpack(archive, tmp)
        if expect is not None and not (tmp / expect).is_dir():
            raise InputError(f"{archive}: does not contain {expect}/")
        try:
            _merge(tmp, target, archive)
            if marker_path is not None:
                atomic_write_text(marker_path, f"{archive.name} extracted completely\n")
        except OSError as e:
            raise InputError(f"{archive}: cannot move the extracted files into {target}: {_reason(e)}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- LibriSpeech --------------------------------------------------------------------------------------


def fetch_librispeech(root: str | Path, names: Iterable[str], mirror: str | None = None, *,
                      keep_archives: bool = False, timeout: float | None = None,
                      retries: int | None = None) -> list[Path]:
    """Download (and for subsets extract) the named LibriSpeech resources into `root` -> their paths.

    `names`: subsets (dev-clean, train-clean-100, ...) and LM files (3-gram.pruned.1e-7.arpa.gz, ...);
    every name is checked before anything is downloaded. A subset ends up in ``root/LibriSpeech/<name>/``
    (marked complete by ``root/.LibriSpeech-<name>.complete``; a complete subset makes no request at all),
    an LM file as ``root/<name>`` as published (.gz files stay compressed). Archives are deleted once
    extracted unless `keep_archives`. `mirror`: see `resolve_mirror`.
    """
    wanted = list(dict.fromkeys(resource(name) for name in names))
    base = resolve_mirror(mirror)
    root = Path(root)
    paths = []
    for res in wanted:
        if not res.is_archive:
            paths.append(download(res.url(base), root / res.filename, res.md5, timeout=timeout, retries=retries))
            continue
        subset = res.filename.removesuffix(".tar.gz")
        subset_dir = root / "LibriSpeech" / subset
        marker = root / f".LibriSpeech-{subset}.complete"
        if marker.is_file():
            if subset_dir.is_dir():
                log.info("%s: already downloaded and extracted", subset_dir)
                paths.append(subset_dir)
                continue
            marker.unlink()  # the subset was deleted since: fetch it again
        archive = download(res.url(base), root / res.filename, res.md5, timeout=timeout, retries=retries)
        safe_extract(archive, root, marker=marker.name, expect=f"LibriSpeech/{subset}")
        if not keep_archives:
            archive.unlink(missing_ok=True)
            _sibling(archive, ".md5").unlink(missing_ok=True)
        paths.append(subset_dir)
    return paths

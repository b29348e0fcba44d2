"""LibriSpeech download: resumable, verified downloads and safe extraction, served from 127.0.0.1 only."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from asr import download as dl
from asr.cli import main
from asr.errors import InputError

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "librispeech-sample"
SAMPLE_SUBSET = SAMPLE / "LibriSpeech" / "test-clean"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Server:
    """A threaded HTTP server on 127.0.0.1 serving `files` (URL path -> bytes), with Range support.

    `requests` records (path, Range header) per request; `cut[path] = n` makes the next response for
    `path` announce its full length but close the connection after n bytes; `ranges = False` makes the
    server ignore Range headers (answer 200 with the whole file).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut: dict[str, int] = {}
        self.ranges = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and server.ranges:
                    start = int(m[1])
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
                n = server.cut.pop(self.path, None)
                self.wfile.write(body if n is None else body[:n])
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(dl, "BACKOFF", 0.0)
    monkeypatch.setattr(dl, "TIMEOUT", 10.0)
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)


@pytest.fixture(scope="module")
def dev_clean_tgz() -> bytes:
    """The shared test-clean sample repackaged as dev-clean.tar.gz in the official layout."""
    if not SAMPLE_SUBSET.is_dir():
        pytest.skip(f"LibriSpeech sample not found at {SAMPLE_SUBSET}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        readme = b"LibriSpeech sample, repackaged for tests\n"
        info = tarfile.TarInfo("LibriSpeech/README.TXT")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
        tar.add(SAMPLE_SUBSET, arcname="LibriSpeech/dev-clean")
    return buf.getvalue()


@pytest.fixture
def served(server, dev_clean_tgz, monkeypatch):
    """The server with dev-clean.tar.gz and librispeech-vocab.txt, whose table MD5s are made to match."""
    vocab = b"A\nABOUT\nHE\n"
    server.files["/12/dev-clean.tar.gz"] = dev_clean_tgz
    server.files["/11/librispeech-vocab.txt"] = vocab
    monkeypatch.setitem(dl.SUBSETS, "dev-clean", dataclasses.replace(dl.SUBSETS["dev-clean"], md5=md5(dev_clean_tgz)))
    monkeypatch.setitem(dl.LM_FILES, "librispeech-vocab.txt",
                        dataclasses.replace(dl.LM_FILES["librispeech-vocab.txt"], md5=md5(vocab)))
    return server


def test_resource_table_is_complete():
    assert list(dl.SUBSETS) == ["train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                                "test-clean", "test-other", "train-clean-5", "dev-clean-2"]
    assert dl.SUBSETS["train-clean-5"].url(dl.resolve_mirror()) == \
        "https://www.openslr.org/resources/31/train-clean-5.tar.gz"
    assert dl.resolve_mirror("https://openslr.elda.org/resources/31") == "https://openslr.elda.org/resources"
    assert set(dl.LM_FILES) == {"3-gram.arpa.gz", "3-gram.pruned.1e-7.arpa.gz", "3-gram.pruned.3e-7.arpa.gz",
                                "4-gram.arpa.gz", "librispeech-vocab.txt", "librispeech-lexicon.txt",
                                "librispeech-lm-norm.txt.gz"}
    for res in [*dl.SUBSETS.values(), *dl.LM_FILES.values()]:
        assert re.fullmatch(r"[0-9a-f]{32}", res.md5), res
    assert dl.SUBSETS["dev-clean"].url(dl.resolve_mirror()) == "https://www.openslr.org/resources/12/dev-clean.tar.gz"
    assert dl.LM_FILES["4-gram.arpa.gz"].url(dl.resolve_mirror()) == "https://www.openslr.org/resources/11/4-gram.arpa.gz"
    assert dl.resource("dev-clean.tar.gz") is dl.SUBSETS["dev-clean"]


def test_mirror_from_argument_or_environment(monkeypatch):
    assert dl.resolve_mirror("https://openslr.elda.org/resources/12/") == "https://openslr.elda.org/resources"
    monkeypatch.setenv(dl.MIRROR_ENV, "http://127.0.0.1:9/resources")
    assert dl.resolve_mirror() == "http://127.0.0.1:9/resources"
    assert dl.resolve_mirror("http://other/x") == "http://other/x"
    with pytest.raises(InputError, match="not an http"):
        dl.resolve_mirror("ftp://example.org")


def test_prepare_mini_librispeech_download(server, dev_clean_tgz, monkeypatch, tmp_path, capsys):
    """dev-clean-2 comes from OpenSLR 31, and unpacks and scans like the full corpus's subsets."""
    archive = dev_clean_tgz.replace(b"", b"")  # same bytes; the folder inside is renamed below
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as src, tarfile.open(fileobj=buf, mode="w:gz") as dst:
        for member in src.getmembers():
            member.name = member.name.replace("LibriSpeech/dev-clean", "LibriSpeech/dev-clean-2")
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    server.files["/31/dev-clean-2.tar.gz"] = buf.getvalue()
    monkeypatch.setitem(dl.SUBSETS, "dev-clean-2", dataclasses.replace(dl.SUBSETS["dev-clean-2"],
                                                                       md5=md5(buf.getvalue())))
    rc = main(["prepare", "librispeech", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"),
               "--download", "dev-clean-2", "--mirror", server.base])
    assert rc == 0, capsys.readouterr().err
    assert len((tmp_path / "out" / "dev-clean-2.jsonl").read_text().splitlines()) == 4
    assert [path for path, _ in server.requests] == ["/31/dev-clean-2.tar.gz"]


def test_prepare_librispeech_download_end_to_end(served, tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "out"
    rc = main(["prepare", "librispeech", "--root", str(root), "--out", str(out),
               "--download", "dev-clean", "librispeech-vocab.txt", "--mirror", served.base])
    assert rc == 0, capsys.readouterr().err
    lines = (out / "dev-clean.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert {json.loads(line)["id"] for line in lines} == {"1089-134686-0000", "1089-134686-0001",
                                                          "1089-134691-0000", "1089-134691-0001"}
    assert (root / "LibriSpeech" / "dev-clean" / "1089" / "134686" / "1089-134686.trans.txt").is_file()
    assert (root / "LibriSpeech" / "README.TXT").is_file()
    assert (root / ".LibriSpeech-dev-clean.complete").is_file()
    assert (root / "librispeech-vocab.txt").read_bytes() == served.files["/11/librispeech-vocab.txt"]
    assert not (root / "dev-clean.tar.gz").exists()  # deleted once extracted (no --keep-archives)
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".extract")) == []
    assert [path for path, _ in served.requests] == ["/12/dev-clean.tar.gz", "/11/librispeech-vocab.txt"]

    # Run again: everything is complete, so no request is made, and the manifest is the same.
    served.requests.clear()
    rc = main(["prepare", "librispeech", "--root", str(root), "--out", str(out),
               "--download", "dev-clean", "librispeech-vocab.txt", "--mirror", served.base])
    assert rc == 0
    assert served.requests == []
    assert len((out / "dev-clean.jsonl").read_text().splitlines()) == 4


def test_mirror_from_environment_and_kept_archive(served, tmp_path, monkeypatch):
    monkeypatch.setenv(dl.MIRROR_ENV, served.base + "/12")
    root = tmp_path / "root"
    paths = dl.fetch_librispeech(root, ["dev-clean"], keep_archives=True)
    assert paths == [root / "LibriSpeech" / "dev-clean"]
    archive = root / "dev-clean.tar.gz"
    assert archive.read_bytes() == served.files["/12/dev-clean.tar.gz"]
    assert (root / "dev-clean.tar.gz.md5").read_text().split()[0] == md5(archive.read_bytes())

    # A deleted subset is extracted again from the kept, already verified archive, without a request.
    served.requests.clear()
    import shutil

    shutil.rmtree(root / "LibriSpeech" / "dev-clean")
    dl.fetch_librispeech(root, ["dev-clean"], keep_archives=True)
    assert served.requests == []
    assert len(list((root / "LibriSpeech" / "dev-clean").rglob("*.flac"))) == 4


def test_interrupted_download_resumes_with_range(served, tmp_path):
    url, data = served.base + "/12/dev-clean.tar.gz", served.files["/12/dev-clean.tar.gz"]
    dest = tmp_path / "dev-clean.tar.gz"
    served.cut["/12/dev-clean.tar.gz"] = 1000
    with pytest.raises(InputError) as e:
        dl.download(url, dest, md5(data), retries=0)
    assert url in str(e.value) and "1000 of" in str(e.value) and "run again to resume" in str(e.value)
    part = tmp_path / "dev-clean.tar.gz.part"
    assert part.stat().st_size == 1000 and not dest.exists()

    assert dl.download(url, dest, md5(data)) == dest
    assert served.requests[-1] == ("/12/dev-clean.tar.gz", "bytes=1000-")
    assert dest.read_bytes() == data and not part.exists()


def test_lost_connection_is_resumed_within_one_call(served, tmp_path):
    url, data = served.base + "/12/dev-clean.tar.gz", served.files["/12/dev-clean.tar.gz"]
    served.cut["/12/dev-clean.tar.gz"] = 4096
    dest = dl.download(url, tmp_path / "a.tar.gz", md5(data), retries=1)
    assert served.requests == [("/12/dev-clean.tar.gz", None), ("/12/dev-clean.tar.gz", "bytes=4096-")]
    assert dest.read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(served, tmp_path):
    url, data = served.base + "/12/dev-clean.tar.gz", served.files["/12/dev-clean.tar.gz"]
    (tmp_path / "a.tar.gz.part").write_bytes(b"x" * 500)  # not even the right bytes
    served.ranges = False
    dest = dl.download(url, tmp_path / "a.tar.gz", md5(data))
    assert served.requests == [("/12/dev-clean.tar.gz", "bytes=500-")]
    assert dest.read_bytes() == data


def test_whole_part_file_is_verified_after_416(served, tmp_path):
    url, data = served.base + "/12/dev-clean.tar.gz", served.files["/12/dev-clean.tar.gz"]
    (tmp_path / "a.tar.gz.part").write_bytes(data)
    dest = dl.download(url, tmp_path / "a.tar.gz", md5(data))
    assert served.requests == [("/12/dev-clean.tar.gz", f"bytes={len(data)}-")]
    assert dest.read_bytes() == data


def test_corrupted_download_is_deleted_and_nothing_extracted(served, tmp_path):
    good = served.files["/12/dev-clean.tar.gz"]
    served.files["/12/dev-clean.tar.gz"] = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:]
    root = tmp_path / "root"
    with pytest.raises(InputError) as e:
        dl.fetch_librispeech(root, ["dev-clean"], served.base)
    message = str(e.value)
    assert "dev-clean.tar.gz" in message and "MD5 mismatch" in message
    assert md5(good) in message and md5(served.files["/12/dev-clean.tar.gz"]) in message
    assert sorted(p.name for p in root.iterdir()) == []  # no archive, no .part, no LibriSpeech/, no marker


def test_verified_file_is_not_hashed_again_unless_it_changed(served, tmp_path, monkeypatch):
    url, data = served.base + "/12/dev-clean.tar.gz", served.files["/12/dev-clean.tar.gz"]
    dest = dl.download(url, tmp_path / "a.tar.gz", md5(data))
    served.requests.clear()

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed again")

    with monkeypatch.context() as m:
        m.setattr(dl, "_file_md5", no_hashing)
        assert dl.download(url, dest, md5(data)) == dest
    assert served.requests == []

    dest.write_bytes(b"changed")  # the sidecar no longer matches: hashed, found wrong, downloaded again
    assert dl.download(url, dest, md5(data)).read_bytes() == data
    assert len(served.requests) == 1


def test_network_errors_are_one_line_input_errors(served, tmp_path, capsys):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/12/dev-clean.tar.gz"
    with pytest.raises(InputError, match=re.escape(url) + ".*refused"):
        dl.download(url, tmp_path / "a.tar.gz", retries=0)

    rc = main(["prepare", "librispeech", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"),
               "--download", "dev-other", "--mirror", served.base])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: {served.base}/12/dev-other.tar.gz: HTTP 404" in err and "Traceback" not in err
    assert not (tmp_path / "root" / "dev-other.tar.gz.part").exists()


def test_unknown_name_lists_valid_names_before_any_request(served, tmp_path, capsys):
    rc = main(["prepare", "librispeech", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"),
               "--download", "dev-clean", "dev-cleen", "--mirror", served.base])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1
    assert "'dev-cleen'" in errors[0] and "train-other-500" in errors[0] and "librispeech-lexicon.txt" in errors[0]
    assert served.requests == []


def test_lm_only_download_does_not_need_a_corpus(served, tmp_path, capsys):
    root = tmp_path / "root"
    rc = main(["prepare", "librispeech", "--root", str(root), "--out", str(tmp_path / "out"),
               "--download", "librispeech-vocab.txt", "--mirror", served.base])
    assert rc == 0, capsys.readouterr().err
    assert (root / "librispeech-vocab.txt").is_file()


# --- safe_extract ------------------------------------------------------------------------------------


def _tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("bad, why", [
    ((_info("../evil"), b"x"), "'..'"),
    ((_info("LibriSpeech/dev-clean/../../../evil"), b"x"), "'..'"),
    ((_info("/tmp/evil-absolute"), b"x"), "absolute"),
    ((_info("LibriSpeech/link", tarfile.SYMTYPE, "/etc/passwd"), None), "symbolic link"),
    ((_info("LibriSpeech/hard", tarfile.LNKTYPE, "LibriSpeech/good.txt"), None), "hard link"),
    ((_info("LibriSpeech/dev", tarfile.CHRTYPE), None), "device"),
    ((_info("LibriSpeech/fifo", tarfile.FIFOTYPE), None), "FIFO"),
])
def test_unsafe_members_are_refused_and_nothing_is_extracted(tmp_path, bad, why):
    archive = _tar(tmp_path / "bad.tar.gz", (_info("LibriSpeech/good.txt"), b"fine"), bad)
    target = tmp_path / "target"
    with pytest.raises(InputError) as e:
        dl.safe_extract(archive, target, marker=".bad.complete")
    assert str(archive) in str(e.value) and repr(bad[0].name) in str(e.value) and why in str(e.value)
    assert list(target.iterdir()) == []  # not even the good member before it, nor the temporary folder
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-absolute").exists()


def test_corrupt_archive_leaves_nothing(tmp_path, dev_clean_tgz):
    archive = tmp_path / "dev-clean.tar.gz"
    archive.write_bytes(dev_clean_tgz[: len(dev_clean_tgz) // 2])
    target = tmp_path / "target"
    with pytest.raises(InputError, match="not a readable tar archive"):
        dl.safe_extract(archive, target, marker=".x.complete")
    assert list(target.iterdir()) == []


def test_extraction_merges_skips_when_marked_and_checks_expected_folder(tmp_path):
    a = _tar(tmp_path / "a.tar.gz", (_info("LibriSpeech/README.TXT"), b"r"), (_info("LibriSpeech/a/1.txt"), b"1"))
    b = _tar(tmp_path / "b.tar.gz", (_info("LibriSpeech/README.TXT"), b"r"), (_info("LibriSpeech/b/2.txt"), b"2"))
    target = tmp_path / "t"
    dl.safe_extract(a, target, marker=".a.complete", expect="LibriSpeech/a")
    dl.safe_extract(b, target, marker=".b.complete", expect="LibriSpeech/b")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        ".a.complete", ".b.complete", "LibriSpeech", "LibriSpeech/README.TXT", "LibriSpeech/a", "LibriSpeech/a/1.txt",
        "LibriSpeech/b", "LibriSpeech/b/2.txt"]
    (target / "LibriSpeech" / "a" / "1.txt").write_text("edited")
    dl.safe_extract(a, target, marker=".a.complete")  # marked complete: not extracted again
    assert (target / "LibriSpeech" / "a" / "1.txt").read_text() == "edited"
    with pytest.raises(InputError, match="does not contain LibriSpeech/c/"):
        dl.safe_extract(a, tmp_path / "u", marker=".c.complete", expect="LibriSpeech/c")
    assert list((tmp_path / "u").iterdir()) == []

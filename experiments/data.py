"""Download the study's datasets into a data folder, verified and unpacked atomically.

    python experiments/data.py fgvc --dest data/          # FGVC-Aircraft 2013b (2.75 GB) -> data/fgvc-aircraft-2013b/
    python experiments/data.py sat --dest data/           # array/SAT parquet (train, val, test) -> data/SAT/
    python experiments/data.py fgvc --dest data/ --url file:///path/to/fgvc-aircraft-2013b.tar.gz
    python experiments/data.py sat --dest data/ --source /path/with/SAT_parquet_files

FGVC: the official archive is streamed with urllib, its size is checked against Content-Length and its MD5
against the one the VGG page publishes (--md5 for another archive, --no-md5 to skip; --sha256 adds a check), then
it is extracted (with tarfile's "data" filter; on Python < 3.11.4, plain files and folders only) into a temporary
folder beside the destination; the extracted tree must hold the expected official paths (class lists, the 12
annotation files, images/) before it is renamed into place. An existing, complete destination is left alone
unless --force.

SAT: each SAT_<split>.parquet comes from the Hugging Face dataset `array/SAT` (huggingface_hub, which needs
HF_HUB_OFFLINE=0) or is copied from --source; its columns are checked before it is renamed into place.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rft.data.fgvc import FGVC_CLASS_FILES, FGVC_DIR, FGVC_SPLITS  # noqa: E402
from rft.data.sat import SAT_COLUMNS, SAT_FILES  # noqa: E402

FGVC_URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"
# Published beside the archive (archives/fgvc-aircraft-2013b.html on the VGG page).
FGVC_MD5 = "d4acdd33327262359767eeaa97a4f732"
# The layout the loaders read (rft.data.fgvc, rft.data.sat) is the layout this tool must produce.
FGVC_EXPECTED = [
    "data/images",
    *(f"data/{name}" for name in FGVC_CLASS_FILES.values()),
    *(f"data/images_{level}_{split}.txt" for level in FGVC_CLASS_FILES for split in FGVC_SPLITS),
]
SAT_REPO = "array/SAT"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or verification failed; nothing was moved into the destination."""


def download(url: str, out: Path) -> int:
    """Stream `url` to `out`; returns the byte count. Checks it against Content-Length when the server sends one."""
    with urllib.request.urlopen(url) as resp, open(out, "wb") as f:  # noqa: S310 (http(s) or file:// by design)
        total = int(resp.headers.get("Content-Length") or 0)
        n, next_report = 0, 0.1
        while chunk := resp.read(CHUNK):
            f.write(chunk)
            n += len(chunk)
            if total and n / total >= next_report:
                print(f"  {n / 1e6:,.0f} / {total / 1e6:,.0f} MB", file=sys.stderr)
                next_report += 0.1
    if total and n != total:
        raise DownloadError(
            f"{url}: got {n} bytes, expected {total} (Content-Length); the download was cut short"
        )
    return n


def file_hash(path: Path, algorithm: str) -> str:
    """The hex digest of a file (`algorithm`: md5, sha256, ...), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def extract_tar(archive: Path, dest: Path) -> None:
    """Extract `archive` into `dest` with tarfile's "data" filter.

    The filter exists from Python 3.11.4 (Debian 12's python3 is 3.11.2). Without it, every member must be a plain
    file or folder with a relative path that stays inside `dest`, or nothing is extracted (tarfile.TarError).
    """
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return
        for member in tar.getmembers():
            path = Path(member.name)
            if not (member.isfile() or member.isdir()) or path.is_absolute() or ".." in path.parts:
                raise tarfile.TarError(
                    f"refusing member {member.name!r} (only plain files and folders inside)"
                )
        tar.extractall(dest)


def fetch_fgvc(
    dest: Path,
    url: str = FGVC_URL,
    expected_sha256: str | None = None,
    force: bool = False,
    expected_md5: str | None = FGVC_MD5,
) -> Path:
    """Download, verify and unpack FGVC-Aircraft 2013b to `dest/fgvc-aircraft-2013b`; returns that folder.

    `expected_md5` (the published one by default) and `expected_sha256` are checked when set; None skips them.
    """
    target = dest / FGVC_DIR
    if not force and all((target / p).exists() for p in FGVC_EXPECTED):
        print(f"{target} is already complete; pass --force to download again")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FGVC_DIR}-", dir=dest))
    try:
        archive = tmp / "archive.tar.gz"
        print(f"downloading {url}", file=sys.stderr)
        size = download(url, archive)
        for algorithm, expected in (("md5", expected_md5), ("sha256", expected_sha256)):
            if expected and (got := file_hash(archive, algorithm)) != expected.lower():
                raise DownloadError(
                    f"{url}: {algorithm} {got} does not match the expected {expected}; the download is corrupt or "
                    f"not the official archive: retry (or pass --no-md5 for an archive you repacked)"
                )
        print(f"extracting {size / 1e6:,.0f} MB", file=sys.stderr)
        try:
            extract_tar(archive, tmp / "x")
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DownloadError(f"{url}: not a readable .tar.gz ({err}); delete and retry") from None
        archive.unlink()
        missing = [p for p in FGVC_EXPECTED if not (tmp / "x" / FGVC_DIR / p).exists()]
        if missing:
            raise DownloadError(
                f"{url}: the archive lacks {FGVC_DIR}/{missing[0]} (and {len(missing) - 1} more)"
            )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "x" / FGVC_DIR, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"FGVC-Aircraft ready at {target}")
    return target


def check_sat_file(path: Path) -> None:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    missing = [c for c in SAT_COLUMNS if c not in names]
    if missing:
        raise DownloadError(f"{path.name} lacks column(s) {missing}; it is not an array/SAT parquet file")


def fetch_sat(dest: Path, splits: list[str], source: Path | None = None, force: bool = False) -> Path:
    """Fetch SAT_<split>.parquet for each split into `dest/SAT`, from `source` or the HF hub; returns that folder."""
    target = dest / "SAT"
    target.mkdir(parents=True, exist_ok=True)
    for split in splits:
        name = SAT_FILES[split]
        if (target / name).is_file() and not force:
            print(f"{target / name} exists; pass --force to fetch it again")
            continue
        tmp = Path(tempfile.mkdtemp(prefix=".sat-", dir=target))
        try:
            if source is not None:
                if not (source / name).is_file():
                    raise DownloadError(f"--source {source} has no {name}")
                got = Path(shutil.copy2(source / name, tmp / name))
            else:
                from huggingface_hub import hf_hub_download

                print(f"downloading {SAT_REPO}/{name}", file=sys.stderr)
                got = Path(hf_hub_download(SAT_REPO, name, repo_type="dataset", local_dir=tmp))
            check_sat_file(got)
            os.replace(got, target / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"SAT {split} ready at {target / name}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)
    fg = sub.add_parser("fgvc", help="FGVC-Aircraft 2013b, official archive")
    fg.add_argument("--dest", type=Path, default=Path("data"), help="data folder (default: data/)")
    fg.add_argument("--url", default=FGVC_URL, help="archive URL (file:// for a local copy)")
    fg.add_argument(
        "--md5", default=FGVC_MD5, help="expected MD5 of the archive (default: the published one)"
    )
    fg.add_argument("--no-md5", action="store_true", help="skip the MD5 check (an archive you repacked)")
    fg.add_argument("--sha256", default=None, help="expected sha256 of the archive, if you have one")
    fg.add_argument("--force", action="store_true", help="download again even if the folder is complete")
    sat = sub.add_parser("sat", help="SAT parquet files from array/SAT")
    sat.add_argument("--dest", type=Path, default=Path("data"), help="data folder (default: data/)")
    sat.add_argument("--source", type=Path, default=None, help="copy from this folder instead of the hub")
    sat.add_argument("--splits", nargs="+", default=["train", "val", "test"], choices=sorted(SAT_FILES))
    sat.add_argument("--force", action="store_true", help="fetch files that already exist again")
    args = parser.parse_args(argv)
    try:
        if args.dataset == "fgvc":
            fetch_fgvc(args.dest, args.url, args.sha256, args.force, None if args.no_md5 else args.md5)
        else:
            fetch_sat(args.dest, args.splits, args.source, args.force)
    except (DownloadError, OSError) as err:
        hint = ""
        if args.dataset == "sat" and args.source is None and os.environ.get("HF_HUB_OFFLINE") == "1":
            hint = " (HF_HUB_OFFLINE=1 is set: run with HF_HUB_OFFLINE=0 to reach the hub)"
        print(f"error: {err}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

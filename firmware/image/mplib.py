"""The pinned micropython-lib packages (``micropython-lib.toml``): fetched, checked, unpacked.

micropython-lib's PyPI releases are source archives without ``setup.py`` (made for MicroPython's
``upip``, which reads PyPI's JSON API and downloads the archive itself), so ``pip download`` cannot
take them. This module does what ``upip`` did, in one place: it asks PyPI's JSON API for the pinned
file's address, downloads it once into a cache folder, and refuses it unless its SHA-256 is the
pinned one. A build with a filled cache needs no network.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError

MANIFEST = Path(__file__).resolve().with_name("micropython-lib.toml")
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = ROOT / "build" / "micropython-lib"
PYPI_JSON = "https://pypi.org/pypi/{name}/json"
FETCH_S = 60  # one small archive; generous for a slow link


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    file: str
    sha256: str
    modules: tuple[str, ...]  # paths inside the archive, e.g. logging/__init__.py

    def module_names(self) -> set[str]:
        """The importable names the package gives (``logging/__init__.py`` -> ``logging``)."""
        return {m.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for m in self.modules}


@dataclass(frozen=True)
class Resolved:
    package: Package
    sources: dict[str, bytes]  # module path (as in Package.modules) -> its source


def packages(manifest: Path = MANIFEST) -> list[Package]:
    try:
        doc = tomllib.loads(manifest.read_text(encoding="utf-8"))
        return [Package(p["name"], p["version"], p["file"], p["sha256"].lower(), tuple(p["modules"]))
                for p in doc.get("package", [])]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise ImageError(f"{manifest}: cannot read the micropython-lib pins ({type(exc).__name__}: {exc}): "
                         "each [[package]] needs name, version, file, sha256 and modules") from None


def cache_dir() -> Path:
    return Path(os.environ.get("BRANCHNODE_MPLIB_CACHE", DEFAULT_CACHE))


def resolve(cache: Path | None = None, manifest: Path = MANIFEST) -> list[Resolved]:
    """Every pinned package with the sources of its listed modules."""
    return [Resolved(p, _unpack(p, _archive(p, cache or cache_dir()))) for p in packages(manifest)]


def _archive(p: Package, cache: Path) -> bytes:
    path = cache / p.file
    if path.exists():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == p.sha256:
            return data
        path.unlink()  # a damaged or foreign file: fetch the pinned one again
    data = _download(p)
    if hashlib.sha256(data).hexdigest() != p.sha256:
        raise ImageError(f"{p.name} {p.version}: the downloaded {p.file} has SHA-256 "
                         f"{hashlib.sha256(data).hexdigest()}, the pin says {p.sha256}: the published file "
                         "changed or the download was tampered with; nothing was built")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.part")  # builds in parallel write their own
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def _download(p: Package) -> bytes:
    try:
        with urllib.request.urlopen(PYPI_JSON.format(name=p.name), timeout=FETCH_S) as r:
            release = json.load(r)["releases"].get(p.version, [])
        url = next((f["url"] for f in release if f["filename"] == p.file), None)
        if url is None:
            raise ImageError(f"{p.name} {p.version}: PyPI has no file {p.file}: check the pin in {MANIFEST.name}")
        with urllib.request.urlopen(url, timeout=FETCH_S) as r:
            return r.read()
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise ImageError(f"{p.name} {p.version}: cannot download {p.file} from PyPI ({exc}): connect to the network "
                         f"once, or put the file in {cache_dir()}") from None


def _unpack(p: Package, data: bytes) -> dict[str, bytes]:
    top = p.file.removesuffix(".tar.gz")
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for mod in p.modules:
            try:
                member = tar.extractfile(f"{top}/{mod}")
            except KeyError:
                member = None
            if member is None:
                raise ImageError(f"{p.name} {p.version}: {p.file} has no {mod}: check the modules pinned in "
                                 f"{MANIFEST.name}")
            out[mod] = member.read()
    return out

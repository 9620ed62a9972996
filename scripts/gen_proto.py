"""Regenerate the Python code for proto/ into the `gatekeeper` package, or check it for drift.

python scripts/gen_proto.py          # rewrite gatekeeper/v1/*
python scripts/gen_proto.py --check  # exit 1 when the committed code differs from proto/
"""

from __future__ import annotations

import argparse
import filecmp
import os
import pathlib
import shutil
import sys
import tempfile

import google.type.date_pb2
import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE = "gatekeeper"
GOOGLE_PROTOS = pathlib.Path(google.type.date_pb2.__file__).parent.parent.parent
WELL_KNOWN = pathlib.Path(grpc_tools.__file__).parent / "_proto"


def generate(out: pathlib.Path) -> None:
    # protoc finds the mypy plugins on PATH; they live beside this interpreter.
    os.environ["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{GOOGLE_PROTOS}",
        f"-I{WELL_KNOWN}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    for folder in [out / PACKAGE, *(p for p in (out / PACKAGE).rglob("*") if p.is_dir())]:
        (folder / "__init__.py").write_text('"""Generated from proto/ by scripts/gen_proto.py. Do not edit."""\n')


def differences(a: pathlib.Path, b: pathlib.Path) -> list[str]:
    names = {p.relative_to(a) for p in a.rglob("*.py*")} | {p.relative_to(b) for p in b.rglob("*.py*")}
    return sorted(
        str(n)
        for n in names
        if not ((a / n).exists() and (b / n).exists() and filecmp.cmp(a / n, b / n, shallow=False))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when the committed code is out of date")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        generate(out)
        if check:
            drift = differences(out / PACKAGE, ROOT / PACKAGE)
            if drift:
                sys.exit(f"generated code drifted from proto/: {drift}; run `make proto`")
            print("generated code matches proto/")
            return
        shutil.rmtree(ROOT / PACKAGE, ignore_errors=True)
        shutil.copytree(out / PACKAGE, ROOT / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
        print(f"regenerated {PACKAGE}/ from proto/")


if __name__ == "__main__":
    main()

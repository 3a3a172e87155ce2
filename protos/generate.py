"""Regenerate the Python gRPC code from the .proto files.

Run from anywhere: ``python -m protos.generate``. The output is committed; ``tests/test_protos.py``
regenerates into a temporary folder and fails on any difference, so the committed code always
matches the .proto files and the pinned generator.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

# Generated code stamps the generator's version and refuses older runtimes: pin it so every
# machine produces byte-identical output (pyproject's dev extra pins the same version).
GRPCIO_TOOLS_VERSION = "1.85.1"

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_FILES = ["protos/joulefarm/v1/agent.proto"]


def generate(out_dir: Path) -> list[Path]:
    """Generate *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto into ``out_dir``."""
    installed = metadata.version("grpcio-tools")
    if installed != GRPCIO_TOOLS_VERSION:
        raise SystemExit(
            f"grpcio-tools {GRPCIO_TOOLS_VERSION} is required to generate code, found {installed}: "
            f"pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}"
        )
    from grpc_tools import protoc  # imported late: only needed when generating

    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{REPO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(REPO_ROOT / p) for p in PROTO_FILES],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    outputs = []
    for proto in PROTO_FILES:
        stem = proto.removesuffix(".proto")
        outputs += [out_dir / f"{stem}_pb2.py", out_dir / f"{stem}_pb2.pyi",
                    out_dir / f"{stem}_pb2_grpc.py"]
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT, help="output root (default: repo)")
    ns = parser.parse_args()
    for path in generate(ns.out):
        print(path.relative_to(ns.out))


if __name__ == "__main__":
    sys.exit(main())

"""The committed gRPC code is exactly what the pinned generator makes from the .proto files."""

from __future__ import annotations

from pathlib import Path

from protos.generate import generate
from tests.helpers import REPO


def test_generated_code_matches_the_proto_files(tmp_path: Path) -> None:
    outputs = generate(tmp_path)
    assert outputs, "no output files"
    for fresh in outputs:
        committed = REPO / fresh.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run python -m protos.generate"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed.relative_to(REPO)} differs from a fresh generation: "
            "run python -m protos.generate and commit the result")


def test_service_is_importable_and_has_its_rpcs() -> None:
    from protos.joulefarm.v1 import agent_pb2

    service = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
    assert service.full_name == "joulefarm.v1.AgentService"
    assert {m.name for m in service.methods} == {"GetDeviceFacts", "UploadModelChunks",
                                                   "RunBenchmark"}

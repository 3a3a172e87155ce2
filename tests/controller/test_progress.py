"""Plain-text progress (what a cron log keeps): says what happens, at a bounded rate."""

from __future__ import annotations

import pytest

from controller.cli import console as console_module
from controller.cli.console import PLAIN_EVERY_S, DeviceProgress, plain_line


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_long_layers_job_prints_where_it_is_at_a_bounded_rate(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_module.console, "width", 200)
    clock = Clock()
    progress = DeviceProgress(["host"], clock=clock)
    progress.update("host", "starting", 0, 0, "local agent")
    progress.update("host", "upload", 0, 10, "nmp layers")
    progress.update("host", "prepare", 0, 10, "nmp layers: splitting the model into layers")
    for k in range(50):
        clock.t += 0.1
        progress.update("host", "prepare", 0, 10,
                        f"nmp layers: loading the layers' interpreters ({k}/50)")
    # 222 layers over 30 s: a line when the stage changes, then one per PLAIN_EVERY_S.
    for k in range(222):
        clock.t += 30 / 222
        progress.update("host", "layers", 0, 10,
                        f"nmp layers: layer {k} CONV_2D ({k}/222)")
    progress.update("host", "upload", 1, 10, "tiny_cnn layers")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[host] starting: local agent"  # no "0/0"
    assert lines[1] == "[host] job 1/10 upload: nmp layers"
    layer_lines = [x for x in lines if " layers: nmp layers: layer " in x]
    assert 1 + int(30 // PLAIN_EVERY_S) - 1 <= len(layer_lines) <= 1 + int(30 // PLAIN_EVERY_S)
    assert layer_lines[0].startswith("[host] job 1/10 layers: nmp layers: layer 0 CONV_2D")
    # The last says where the job was at most PLAIN_EVERY_S before it ended.
    last = int(layer_lines[-1].split(" layer ")[1].split()[0])
    assert last >= 222 - PLAIN_EVERY_S * 222 / 30 - 1
    assert lines[-1] == "[host] job 2/10 upload: tiny_cnn layers"
    assert len(lines) <= 12


def test_device_states_carry_no_job_counter() -> None:
    assert plain_line("host", "unhealthy", 8, 0, "connection refused") == (
        "[host] unhealthy: connection refused")
    assert plain_line("host", "done", 10, 10, "10 done, 0 failed") == (
        "[host] done: 10 done, 0 failed")
    assert plain_line("pi", "waiting", 2, 5, "another agent is measuring") == (
        "[pi] job 3/5 waiting: another agent is measuring")

"""``python -m agent serve ...``: run the agent on this device (argparse keeps the agent light)."""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
from pathlib import Path

from agent.runtimes.backend import BACKEND_CHOICES, configure_runtime, runtime_info
from agent.server import (
    DEFAULT_CACHE_QUOTA_BYTES,
    DEFAULT_MAX_MODEL_BYTES,
    AgentConfig,
    serve,
)
from joulefarm.enums import LITERT_LIB_URL, Platform


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as e:
        sys.exit(f"error: cannot read {what} file {path}: {e.strerror}")
    if not value:
        sys.exit(f"error: {what} file {path} is empty")
    return value


def _read_pem(path: Path, option: str, marker: bytes, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        sys.exit(f"error: cannot read {option} {path}: {e.strerror or e}")
    if marker not in data:
        sys.exit(f"error: {option} {path} is not {what} in PEM form")
    return data


def load_tls(cert: Path, key: Path) -> tuple[bytes, bytes]:
    """(key, certificate chain) for the server, once both are PEM and the key is the
    certificate's; one line and exit 1 otherwise. gRPC would only say so when the first
    client connects, in a core log line, or not start with a traceback."""
    cert_pem = _read_pem(cert, "--tls-cert", b"-----BEGIN CERTIFICATE-----", "a certificate")
    key_pem = _read_pem(key, "--tls-key", b"PRIVATE KEY-----", "a private key")
    if b"ENCRYPTED" in key_pem:
        sys.exit(f"error: --tls-key {key} is encrypted; the agent needs it unencrypted (keep "
                 "the file mode 0600)")
    # The standard library's OpenSSL checks that the pair belongs together; a callable
    # password keeps it from ever prompting on a terminal.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            sys.exit(f"error: --tls-key {key} is not the private key of --tls-cert {cert}")
        sys.exit(f"error: cannot load --tls-cert {cert} with --tls-key {key}: "
                 f"{e.reason or e}")
    except OSError as e:  # a file that vanished between the two reads
        sys.exit(f"error: cannot read --tls-cert {cert} or --tls-key {key}: {e.strerror or e}")
    return key_pem, cert_pem


def build_parser() -> argparse.ArgumentParser:
    """The agent's command line (``controller.farm.agent_command`` writes it)."""
    parser = argparse.ArgumentParser(prog="python -m agent", description="joulefarm device agent")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve benchmarks over gRPC until SIGTERM")
    s.add_argument("--name", required=True, help="device name, as in devices.toml")
    s.add_argument("--platform", choices=Platform.values(), default="linux")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    s.add_argument("--token-file", type=Path, required=True,
                   help="file holding the token callers must present (never logged)")
    s.add_argument("--meter", default="sim", help="meter kind (default sim)")
    s.add_argument("--profile", default="host", help="simulated device profile (sim meter)")
    s.add_argument("--sample-rate-hz", type=float, default=None)
    s.add_argument("--meter-options", default="{}", metavar="JSON",
                   help="driver settings as a JSON object (devices.toml [device.meter] options)")
    s.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache/joulefarm/agent")
    s.add_argument("--max-model-bytes", type=int, default=DEFAULT_MAX_MODEL_BYTES,
                   help="largest model an upload may carry")
    s.add_argument("--cache-quota-bytes", type=int, default=DEFAULT_CACHE_QUOTA_BYTES,
                   help="models kept in --cache-dir at most; the least recently used go first")
    s.add_argument("--allow-delegate", action="append", default=[], metavar="PATH",
                   help="an external delegate library benchmarks may load (repeatable); any "
                        "other delegate_path is refused")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate chain (enables TLS)")
    s.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    s.add_argument("--exit-with-parent", type=int, metavar="PID",
                   help="stop when process PID exits (local agents started by a controller)")
    s.add_argument("--runtime", choices=BACKEND_CHOICES, default="auto",
                   help="TFLite runtime: auto (a Python runtime, or litert-c when --litert-lib "
                        "is given), ai-edge-litert, tflite-runtime, or litert-c (a standalone "
                        "libLiteRt.so through the LiteRT C API)")
    s.add_argument("--litert-lib", type=Path, metavar="PATH",
                   help=f"standalone libLiteRt.so for the litert-c runtime ({LITERT_LIB_URL})")
    s.add_argument("--litert-version", metavar="LABEL",
                   help="version label of --litert-lib, reported with its sha256")
    s.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)

    logging.basicConfig(level=ns.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = _read_secret(ns.token_file, "token")
    tls = None
    if ns.tls_cert or ns.tls_key:
        if not (ns.tls_cert and ns.tls_key):
            sys.exit("error: --tls-cert and --tls-key go together")
        tls = load_tls(ns.tls_cert, ns.tls_key)
    try:
        configure_runtime(ns.runtime, ns.litert_lib, ns.litert_version)
        runtime_info()  # load it now: a bad --litert-lib is one line here, not a traceback later
    except (ImportError, ValueError, OSError) as e:
        sys.exit(f"error: {' '.join(str(e).split())}")
    try:
        meter_options = json.loads(ns.meter_options)
        if not isinstance(meter_options, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        sys.exit(f"error: --meter-options: {e}")
    config = AgentConfig(
        meter_options=meter_options,
        name=ns.name, platform=ns.platform, meter_kind=ns.meter, meter_profile=ns.profile,
        sample_rate_hz=ns.sample_rate_hz, cache_dir=ns.cache_dir,
        max_model_bytes=ns.max_model_bytes, cache_quota_bytes=ns.cache_quota_bytes,
        allowed_delegates=tuple(ns.allow_delegate),
    )
    try:
        serve(config, token, host=ns.host, port=ns.port, tls=tls,
              parent_pid=ns.exit_with_parent)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()

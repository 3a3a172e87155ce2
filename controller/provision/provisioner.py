"""`provision_device`: one device from nothing (or from an older install) to a verified agent.

Order matters: everything that can refuse (host key, Python, architecture, wheel, a TLS pair
the user brought) is checked before anything on the device changes; the old agent is stopped
before its files are replaced; the token, key and certificate are written before the agent
that reads them starts, and the certificate is pinned in devices.toml before that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from controller.config.registry import Device, RegistryError
from controller.config.registry_edit import set_device_tls, tls_table
from controller.farm.tls import is_loopback
from controller.provision import certs, install, service, termux
from controller.provision.errors import ProvisionError, ProvisionInputError, WheelError
from controller.provision.redact import Redactor
from controller.provision.requirements import UnsupportedDeviceError, agent_requirements
from controller.provision.ssh import (
    SshSession,
    connect,
    endpoints_for,
    passphrase_from_env_or_tty,
)
from controller.provision.tokens import ensure_local_token
from controller.provision.verify import verify
from controller.provision.wheel import build_sdist, build_wheel, mismatch_plan, wheel_problem
from joulefarm.results import DeviceFacts

Report = Callable[[str], None]


@dataclass(frozen=True)
class ProvisionOptions:
    trust_new_host: bool = False
    # A prebuilt wheel (another architecture, CI); None builds one from this source tree.
    wheel: Path | None = None
    # Overrides every device's ssh.prefix (tests install into a temporary directory).
    prefix: str | None = None
    start_timeout_s: float = service.START_TIMEOUT_S
    passphrase_source: Callable[[Path], str | None] = passphrase_from_env_or_tty
    # Build the Rust core on every device (as ssh.build_on_device does for one).
    build_on_device: bool = False
    # The devices file the devices come from: a certificate made for an agent is pinned there.
    devices_file: Path | None = None


@dataclass(frozen=True)
class ProvisionResult:
    device: str
    prefix: str
    service: str
    pid: int
    reached: str
    facts: DeviceFacts
    tls: str = "plaintext"
    """How the controller reaches the agent: ``sha256 <16 hex digits>...`` or plaintext."""


class WheelSource:
    """The wheel of this run: built (or taken from the cache) once, on first need."""

    def __init__(self, wheel: Path | None, report: Report) -> None:
        self._given = wheel
        self._report = report
        self._path: Path | None = None
        self._error: ProvisionError | None = None

    @property
    def path(self) -> Path:
        # A failed build is remembered too: the next device would only fail the same way.
        if self._error is not None:
            raise self._error
        if self._path is None:
            try:
                self._path = self._resolve()
            except ProvisionError as exc:
                self._error = exc
                raise
        return self._path

    def _resolve(self) -> Path:
        if self._given is not None:
            if not self._given.is_file():
                raise ProvisionInputError(f"--wheel {self._given}: no such file")
            return self._given
        return build_wheel(on_event=self._report)


def check_provisionable(device: Device) -> None:
    """Input errors that stop a run before any connection: ProvisionInputError."""
    if device.local:
        raise ProvisionInputError(f"device {device.name!r} is local (the controller starts "
                                  "it itself); there is nothing to provision")
    endpoints_for(device)  # a [device.ssh] table, a valid jump host
    if not device.token_file:
        raise ProvisionInputError(
            f"device {device.name!r} has no token_file; add e.g. token_file = "
            f"\"~/.config/joulefarm/{device.name}.token\" (it is created if missing)")
    if device.port == 0:
        raise ProvisionInputError(f"device {device.name!r} has no agent port; set `port`")
    if device.tls is not None:
        certs.check_given(device)  # the user's pair: readable, matching, valid


def provision_device(device: Device, options: ProvisionOptions, wheel: WheelSource,
                     report: Report, redactor: Redactor | None = None) -> ProvisionResult:
    """Install, start and verify the agent on `device`; raises `ProvisionError`."""
    check_provisionable(device)
    assert device.ssh is not None and device.token_file is not None
    ssh = device.ssh
    redactor = redactor or Redactor()
    target, jump = endpoints_for(device)
    report(f"connecting to {target.label}" + (f" through {jump.label}" if jump else ""))
    with connect(device, trust_new_host=options.trust_new_host, on_event=report,
                 passphrase_source=options.passphrase_source, redactor=redactor) as session:
        probe = install.probe_device(session, ssh.python)
        report(f"device: {probe.summary()}")
        env = probe.termux
        litert_source = ssh.litert_lib
        if litert_source is None and env is not None:
            litert_source = termux.default_litert_url(probe.machine, android=True)
        try:
            requirements = agent_requirements(probe.python[:2], probe.machine,
                                              python_runtime=litert_source is None)
        except UnsupportedDeviceError as exc:
            raise ProvisionError(f"{device.name}: {exc}") from None
        build_here = options.build_on_device or ssh.build_on_device
        if not build_here:
            problem = wheel_problem(wheel.path, probe.python[:2], probe.machine, probe.glibc)
            if problem and env is None:
                raise WheelError(mismatch_plan(device.name, wheel.path, problem))
            if problem:
                report(f"the wheel does not fit ({problem}): building the agent on the device")
                build_here = True
        sdist = build_sdist(on_event=report) if build_here else None
        kind = service.choose_service(ssh.service, probe.systemd_user, device.name,
                                      runit_available=env is not None and env.has_runit)
        host = service.Host(probe.shell, env.svdir if env is not None else None)

        token = ensure_local_token(Path(device.token_file).expanduser(), report)
        redactor.add(token)
        cert = _agent_tls(device, options.devices_file, report)
        if cert is not None:
            device = replace(device, tls=cert.tls)  # what the agent and verify() use below
        layout = install.RemoteLayout.resolve(options.prefix or ssh.prefix, session.home())
        session.mkdir_private(layout.prefix)

        report(f"stopping any agent installed before in {layout.prefix}")
        service.stop_agent(session, device, layout, host)
        if env is not None:
            packages = termux.PACKAGES + (termux.BUILD_PACKAGES if sdist else ())
            report(f"installing Termux packages: {' '.join(packages)}")
            install.install_system_packages(session, packages)
        # Termux's numpy and grpcio come from pkg: the venv must see them.
        site = ssh.system_site_packages or env is not None
        if install.ensure_venv(session, layout, ssh.python, probe, site):
            report(f"created the virtual environment {layout.venv}")
        if sdist is not None:
            report(f"building the agent on the device from {sdist.name} (Rust release build; "
                   "minutes on a phone; the wheel built last time if the sources are the same)")
            built = install.build_on_device(session, layout, sdist)
            report(f"installing {built.rsplit('/', 1)[-1]} (--no-deps)")
            install.install_remote_wheel(session, layout, built)
        else:
            report(f"installing {wheel.path.name} (--no-deps)")
            install.install_wheel(session, layout, wheel.path)
        report(f"installing the agent's requirements: {' '.join(requirements)}")
        install.install_requirements(session, layout, requirements)
        litert = None
        if litert_source is not None:
            report(f"installing the LiteRT runtime library from {litert_source}")
            install.install_litert_lib(session, layout, litert_source, probe.machine)
            install.install_schema(session, layout)
            litert = service.LiteRtLibrary(
                layout.litert_lib, termux.litert_version_label(litert_source, ssh.litert_version),
                layout.schema)
        install.check_agent_imports(session, layout, schema=litert.schema if litert else None)
        install.write_token(session, layout, token)
        if cert is not None:
            install.write_tls(session, layout, cert.key_pem, cert.cert_pem)
        service.write_scripts(session, device, layout, host, litert)
        if env is not None:
            for note in termux.warnings_for(env):
                report(f"warning: {note}")
            if env.has_wake_lock:
                session.run("termux-wake-lock", what="taking a wake lock", check=False)
                report("took a Termux wake lock (release it with termux-wake-unlock)")

        report(f"starting the agent ({kind})")
        running = service.start_agent(session, device, layout, kind, options.start_timeout_s,
                                      host)
        if running.warning:
            report(f"warning: {running.warning}")
        facts, reached = verify(session, device, token)
        _write_manifest(session, layout, device, sdist or wheel.path, running.kind,
                        requirements, litert)
    report(f"healthy {reached}: {facts.device_name} ({facts.machine}, {facts.os}, Python "
           f"{facts.python_version}, {facts.runtime_name} {facts.runtime_version}, agent "
           f"{facts.agent_version}, pid {running.pid})")
    tls = f"sha256 {cert.tls.sha256[:16]}..." if cert and cert.tls.sha256 else "plaintext"
    return ProvisionResult(device.name, layout.prefix, running.kind, running.pid, reached, facts,
                           tls)


def _agent_tls(device: Device, devices_file: Path | None,
               report: Report) -> certs.AgentCertificate | None:
    """The key and certificate the agent will serve, pinned in ``devices_file`` when made
    here; None for a device that opts out of TLS (``insecure_plaintext = true``)."""
    if device.insecure_plaintext:
        if not (is_loopback(device.address) or (device.ssh and device.ssh.tunnel)):
            report(f"warning: insecure_plaintext = true: the agent serves plaintext on "
                   f"{device.address}:{device.port}, and its token crosses the network in clear")
        return None
    cert = certs.agent_certificate(device, report)
    if not cert.new_pin:
        return cert
    if devices_file is None:
        keys = ", ".join(tls_table(cert.tls).splitlines()[2:])
        report(f"warning: no devices file to pin the certificate in; give the device a "
               f"[device.tls] table with {keys}")
        return cert
    try:
        set_device_tls(devices_file, device.name, cert.tls)
    except RegistryError as exc:
        raise ProvisionError(f"{device.name}: {exc}") from None
    report(f"pinned the agent's certificate in {devices_file} ([device.tls] sha256 "
           f"{cert.tls.sha256})")
    return cert



def _write_manifest(session: SshSession, layout: install.RemoteLayout, device: Device,
                    wheel: Path, kind: str, requirements: tuple[str, ...],
                    litert: service.LiteRtLibrary | None) -> None:
    """What was installed, for whoever looks at the device later (no secrets in it)."""
    manifest = {
        "device": device.name,
        "wheel": wheel.name,
        "requirements": list(requirements),
        "runtime": ({"kind": "litert-c", "library": litert.path, "version": litert.version}
                    if litert else {"kind": "python"}),
        "service": kind,
        "port": device.port,
        "provisioned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    session.write_file(layout.path("install.json"),
                       (json.dumps(manifest, indent=2) + "\n").encode(), 0o644)

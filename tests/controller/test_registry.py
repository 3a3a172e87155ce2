"""Tests of controller.config.registry: devices.toml into dataclasses, and errors with exact
places."""

from __future__ import annotations

import pickle
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import pytest

from controller.config.registry import (
    Device,
    MeterConfig,
    Registry,
    RegistryError,
    SshConfig,
    UnknownDeviceError,
    UnknownTagError,
    load_registry,
    parse_registry,
)
from controller.config.toml_check import LineIndex
from joulefarm.errors import JoulefarmError
from tests.helpers import REPO, run_cli

# A remote Pi with every optional key, written with separate tables (lines 1-26 matter below).
VALID = """\
schema_version = 1

# the controller's own machine
[[device]]
name = "host"
platform = "linux"
address = "127.0.0.1"
local = true
tags = ["demo", "x86"]

[device.meter]
kind = "sim"
profile = "rpi4"

[[device]]
name = "pi-1"
platform = "raspberry-pi"
address = "pi1.lab.example.org"
port = 50051
tags = ["demo", "arm"]
description = "Pi 5 on the bench"

[device.meter]
kind = "ina3221"
sample_rate_hz = 1000
options = { total_rail = "VDD_IN" }

[device.ssh]
user = "pi"
port = 2222
key = "~/.ssh/id_ed25519"
jump = "bastion.example.org"
known_hosts = "~/.ssh/known_hosts"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text(dedent(text))
    return path


def error_of(tmp_path: Path, text: str, **kwargs: object) -> str:
    """The full message of the RegistryError that loading `text` raises."""
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path, **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{path}:")
    return str(info.value).removeprefix(f"{path}:")


def device(body: str, meter: str = 'kind = "sim"\nprofile = "rpi4"') -> str:
    """A one-device file: line 1 version, line 3 [[device]], body from line 4."""
    return f"schema_version = 1\n\n[[device]]\n{dedent(body)}\n[device.meter]\n{meter}\n"


HOST = 'name = "a"\nplatform = "linux"\naddress = "127.0.0.1"\nlocal = true\n'


def host_named(name: str) -> str:
    return HOST.replace('"a"', f'"{name}"')


# --------------------------------------------------------------------------------------------
# A valid file
# --------------------------------------------------------------------------------------------


def test_valid_file_round_trips_into_dataclasses(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    registry = load_registry(path, sim_profiles=["rpi4", "jetson-orin"])
    assert registry == Registry(
        path=path,
        schema_version=1,
        devices=(
            Device(
                name="host",
                platform="linux",
                address="127.0.0.1",
                meter=MeterConfig(kind="sim", profile="rpi4"),
                port=0,
                local=True,
                tags=("demo", "x86"),
            ),
            Device(
                name="pi-1",
                platform="raspberry-pi",
                address="pi1.lab.example.org",
                meter=MeterConfig(
                    kind="ina3221",
                    sample_rate_hz=1000.0,
                    options={"total_rail": "VDD_IN"},
                ),
                port=50051,
                tags=("demo", "arm"),
                description="Pi 5 on the bench",
                ssh=SshConfig(
                    user="pi",
                    port=2222,
                    key="~/.ssh/id_ed25519",
                    jump="bastion.example.org",
                    known_hosts="~/.ssh/known_hosts",
                ),
            ),
        ),
    )
    pi = registry.get("pi-1")
    assert isinstance(pi.meter.sample_rate_hz, float)
    assert hash(pi)  # frozen and hashable even with an options table
    with pytest.raises(TypeError):
        pi.meter.options["total_rail"] = "sum"  # type: ignore[index]
    assert parse_registry(path.read_text(), path) == registry


def test_inline_and_dotted_tables_and_defaults(tmp_path: Path) -> None:
    text = """\
        schema_version = 1
        [[device]]
        name = "h"
        platform = "sim"
        address = "::1"
        local = true
        meter = { kind = "replay" }
        ssh.user = "me"
    """
    (dev,) = load_registry(write(tmp_path, text)).devices
    assert dev == Device(
        name="h",
        platform="sim",
        address="::1",
        meter=MeterConfig(kind="replay"),
        local=True,
        ssh=SshConfig(user="me", port=22),
    )


def test_array_of_inline_tables_is_accepted(tmp_path: Path) -> None:
    text = """\
        schema_version = 1
        device = [
          { name = "a", platform = "linux", address = "10.0.0.1", port = 1, meter.kind = "rapl" },
          { name = "b", platform = "sim", address = "::1", local = true, meter = {kind = "otii"} },
        ]
    """
    assert load_registry(write(tmp_path, text)).names == ("a", "b")
    bad = text.replace("local = true", "local = 1")
    assert error_of(tmp_path, bad) == (
        "4: device[1].local: expected a boolean (true or false), got integer 1"
    )


def test_repo_devices_toml_loads() -> None:
    path = REPO / "devices.toml"
    if not path.exists():
        pytest.skip("devices.toml is not in the repository yet")
    registry = load_registry(path)
    assert len(registry) >= 1


# --------------------------------------------------------------------------------------------
# Registry.get / select / Device.grpc_target
# --------------------------------------------------------------------------------------------


def test_get_unknown_device_lists_known_names(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    registry = load_registry(path)
    with pytest.raises(UnknownDeviceError) as info:
        registry.get("pi-2")
    assert str(info.value) == (
        f"unknown device 'pi-2' in {path} (did you mean 'pi-1'?); known devices: host, pi-1"
    )
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, JoulefarmError)


def test_select(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, VALID))
    host, pi = registry.devices
    assert registry.select() == (host, pi)
    assert registry.select(names=["pi-1", "host", "pi-1"]) == (host, pi)  # file order, once
    assert registry.select(tags=["demo"]) == (host, pi)
    assert registry.select(tags=["demo", "arm"]) == (pi,)  # all tags must match
    assert registry.select(names=["host"], tags=["arm"]) == ()
    with pytest.raises(UnknownDeviceError, match="known devices: host, pi-1"):
        registry.select(names=["nope"])
    with pytest.raises(UnknownTagError) as info:
        registry.select(tags=["amr"])
    assert "has tag 'amr' (did you mean 'arm'?); known tags: arm, demo, x86" in str(info.value)


def test_grpc_target_brackets_ipv6() -> None:
    meter = MeterConfig(kind="sim", profile="x")
    assert Device("a", "linux", "::1", meter, port=7).grpc_target() == "[::1]:7"
    assert Device("a", "linux", "pi.local", meter, port=7).grpc_target() == "pi.local:7"
    local = Device("a", "linux", "127.0.0.1", meter, local=True)
    assert local.grpc_target(port=4242) == "127.0.0.1:4242"
    with pytest.raises(ValueError, match="no fixed port"):
        local.grpc_target()


# --------------------------------------------------------------------------------------------
# File-level errors
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 0, "")
    assert str(err) == f"{path}:0: file not found"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r":0: is a directory, not a devices file$"):
        load_registry(tmp_path)


def test_toml_syntax_error_has_tomllib_line(tmp_path: Path) -> None:
    text = 'schema_version = 1\n[[device]]\nname = "a"\nplatform = linux\n'
    assert error_of(tmp_path, text) == "4: invalid TOML: Invalid value (column 12)"


def test_toml_syntax_error_at_end_of_file(tmp_path: Path) -> None:
    text = 'schema_version = 1\ndescription = """never closed\n'
    assert error_of(tmp_path, text) == "2: invalid TOML: Unterminated string at end of file"


def test_invalid_utf8_reports_its_line(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    path.write_bytes(b"schema_version = 1\n# caf\xe9\n")
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert str(info.value) == f"{path}:2: file is not valid UTF-8"


def test_error_is_a_picklable_joulefarm_error() -> None:
    err = RegistryError("d.toml", 3, "device[0].port", "bad")
    assert isinstance(err, JoulefarmError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.line, copy.field, copy.message) == (
        "d.toml",
        3,
        "device[0].port",
        "bad",
    )
    assert str(copy) == "d.toml:3: device[0].port: bad"


# --------------------------------------------------------------------------------------------
# schema_version and the device array
# --------------------------------------------------------------------------------------------


def test_missing_schema_version(tmp_path: Path) -> None:
    text = "# farm\n[[device]]\nname = 3\n"
    assert error_of(tmp_path, text) == (
        "1: schema_version: missing; start the file with `schema_version = 1`"
    )


def test_unsupported_schema_version(tmp_path: Path) -> None:
    text = '# farm\nschema_version = 2\n[[device]]\nbogus = "not checked"\n'
    assert error_of(tmp_path, text) == (
        "2: schema_version: unsupported schema version 2; this joulefarm reads version 1"
    )


def test_schema_version_wrong_type(tmp_path: Path) -> None:
    assert error_of(tmp_path, '\nschema_version = "1"\n') == (
        "2: schema_version: expected an integer, got string '1'"
    )


def test_no_devices(tmp_path: Path) -> None:
    assert error_of(tmp_path, "schema_version = 1\n") == (
        "1: device: no devices; add at least one [[device]] table"
    )
    assert error_of(tmp_path, "schema_version = 1\n\n# none yet") == (
        "3: device: no devices; add at least one [[device]] table"
    )
    assert error_of(tmp_path, "schema_version = 1\n\ndevice = []\n") == (
        "3: device: no devices; add at least one [[device]] table"
    )


def test_single_bracket_device_table(tmp_path: Path) -> None:
    text = 'schema_version = 1\n\n[device]\nname = "a"\n'
    assert error_of(tmp_path, text) == (
        "3: device: expected an array of tables: write [[device]], not [device]"
    )


def test_device_entry_not_a_table(tmp_path: Path) -> None:
    text = "schema_version = 1\ndevice = [\n  1,\n]\n"
    assert error_of(tmp_path, text) == "3: device[0]: expected a table, got integer 1"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = 'schema_version = 1\n\n[[devices]]\nname = "a"\n'
    assert error_of(tmp_path, text) == "3: devices: unknown key 'devices' (did you mean 'device'?)"


# --------------------------------------------------------------------------------------------
# Unknown keys
# --------------------------------------------------------------------------------------------


def test_unknown_device_key_suggests_closest(tmp_path: Path) -> None:
    text = device(HOST + 'adress = "1.2.3.4"\n')
    assert error_of(tmp_path, text) == (
        "8: device[0].adress: unknown key 'adress' (did you mean 'address'?)"
    )


def test_missing_key_at_header_comes_before_a_later_unknown_key(tmp_path: Path) -> None:
    text = device('name = "a"\nplatform = "linux"\nadress = "1.2.3.4"\nport = 1\n')
    assert error_of(tmp_path, text) == "3: device[0].address: missing required key"


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    text = device(HOST + "wattage = 5\n")
    assert error_of(tmp_path, text) == (
        "8: device[0].wattage: unknown key 'wattage'; valid keys: name, platform, address, "
        "port, local, tags, description, token_file, meter, ssh, tls, insecure_plaintext, "
        "delegates"
    )


def test_unknown_meter_key_in_header_table(tmp_path: Path) -> None:
    text = device(HOST, meter='kind = "sim"\nprofile = "rpi4"\nsample_rate = 10')
    assert error_of(tmp_path, text) == (
        "12: device[0].meter.sample_rate: unknown key 'sample_rate' (did you mean "
        "'sample_rate_hz'?)"
    )


def test_unknown_meter_key_in_inline_table(tmp_path: Path) -> None:
    text = f'schema_version = 1\n[[device]]\n{HOST}meter = {{ kind = "rapl", optoins = {{}} }}\n'
    assert error_of(tmp_path, text) == (
        "7: device[0].meter.optoins: unknown key 'optoins' (did you mean 'options'?)"
    )


def test_unknown_meter_key_as_dotted_key(tmp_path: Path) -> None:
    text = f'schema_version = 1\n[[device]]\n{HOST}meter.kind = "rapl"\nmeter.knd = "x"\n'
    assert error_of(tmp_path, text) == (
        "8: device[0].meter.knd: unknown key 'knd' (did you mean 'kind'?)"
    )


def test_unknown_ssh_key(tmp_path: Path) -> None:
    text = device(HOST) + '\n[device.ssh]\nuser = "pi"\nidentity = "~/.ssh/x"\n'
    assert error_of(tmp_path, text) == (
        "15: device[0].ssh.identity: unknown key 'identity'; valid keys: user, port, key, "
        "jump, known_hosts, python, prefix, service, system_site_packages, tunnel, litert_lib, "
        "litert_version, build_on_device"
    )


def test_misspelt_local_is_an_unknown_key_not_a_missing_port(tmp_path: Path) -> None:
    # `locale = true` left `local` unset, so the device read as remote and the headline was
    # "port: missing; a remote device ...", which sends the user the wrong way.
    text = device(HOST.replace("local = true", "locale = true"))
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert str(info.value) == (
        f"{path}:7: device[0].locale: unknown key 'locale' (did you mean 'local'?)"
    )
    assert [e.field for e in info.value.problems] == ["device[0].locale"]


def test_misspelt_port_is_an_unknown_key_not_a_missing_port(tmp_path: Path) -> None:
    text = device('name = "a"\nplatform = "linux"\naddress = "10.0.0.2"\nprot = 50051\n',
                  meter='kind = "rapl"')
    assert error_of(tmp_path, text) == (
        "7: device[0].prot: unknown key 'prot' (did you mean 'port'?)"
    )


def test_unrelated_unknown_key_keeps_the_missing_port(tmp_path: Path) -> None:
    text = device('name = "a"\nplatform = "linux"\naddress = "10.0.0.2"\ncolour = "red"\n',
                  meter='kind = "rapl"')
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert [f"{e.line}: {e.field}" for e in info.value.problems] == [
        "3: device[0].port", "7: device[0].colour"]


def test_devices_validate_reports_the_misspelt_key_first(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    path.write_text((REPO / "devices.toml").read_text().replace("local = true", "locale = true"))
    done = run_cli("devices", "validate", "--devices", str(path), timeout=60)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines and all("unknown key 'locale' (did you mean 'local'?)" in x for x in lines), lines
    assert lines[0].startswith(f"error: {path}:") and "device[0].locale" in lines[0]
    assert "].port" not in done.stderr


def test_quoted_unknown_key_is_shown_quoted(tmp_path: Path) -> None:
    text = device(HOST + '"my key" = 1\n')
    assert error_of(tmp_path, text) == (
        "8: device[0].\"my key\": unknown key 'my key'; valid keys: name, platform, address, "
        "port, local, tags, description, token_file, meter, ssh, tls, insecure_plaintext, "
        "delegates"
    )


# --------------------------------------------------------------------------------------------
# name, platform, address
# --------------------------------------------------------------------------------------------


def test_duplicate_name_points_at_first_definition(tmp_path: Path) -> None:
    text = VALID.replace('name = "pi-1"', 'name = "host"')
    assert error_of(tmp_path, text) == (
        "16: device[1].name: duplicate device name 'host' (first defined at line 5)"
    )


def test_invalid_name(tmp_path: Path) -> None:
    text = device(HOST.replace('"a"', '"my pi"'))
    assert error_of(tmp_path, text) == (
        "4: device[0].name: 'my pi' is not a valid device name: use 1-63 characters from "
        "A-Z a-z 0-9 _ . - starting with a letter or digit"
    )


def test_unknown_platform_lists_valid_ones(tmp_path: Path) -> None:
    text = device(HOST.replace('"linux"', '"raspberrypi"'))
    assert error_of(tmp_path, text) == (
        "5: device[0].platform: unknown platform 'raspberrypi' (did you mean "
        "'raspberry-pi'?); expected one of: android, raspberry-pi, jetson, linux, sim"
    )


def test_bad_address_matches_documented_example(tmp_path: Path) -> None:
    second = VALID.replace('"pi1.lab.example.org"', '"300.1.1.1"')
    path = write(tmp_path, second)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    err = info.value
    assert (err.line, err.field) == (18, "device[1].address")
    assert err.message == "'300.1.1.1' is not a valid IP address or host name"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("300.1.1.1", "'300.1.1.1' is not a valid IP address or host name"),
        ("10.0.0", "'10.0.0' is not a valid IP address or host name"),
        ("", "'' is not a valid IP address or host name"),
        ("pi_1.lan", "'pi_1.lan' is not a valid IP address or host name"),
        ("-pi.lan", "'-pi.lan' is not a valid IP address or host name"),
        ("a" * 64 + ".lan", f"'{'a' * 64}.lan' is not a valid IP address or host name"),
        (
            "[::1]",
            "'[::1]' is not a valid IP address or host name; write IPv6 addresses without brackets",
        ),
        (
            "pi.lan:50051",
            "'pi.lan:50051' is not a valid IP address or host name; put the port "
            "in `port`, not in the address",
        ),
    ],
)
def test_bad_addresses(tmp_path: Path, address: str, message: str) -> None:
    text = device(HOST.replace('"127.0.0.1"', f'"{address}"'))
    assert error_of(tmp_path, text) == f"6: device[0].address: {message}"


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "::1",
        "fe80::1%eth0",
        "2001:db8::42",
        "localhost",
        "pi-5.lab.example.org.",
        "1pi.local",
        "jetson",
    ],
)
def test_good_addresses(tmp_path: Path, address: str) -> None:
    text = device(HOST.replace('"127.0.0.1"', f'"{address}"'))
    assert load_registry(write(tmp_path, text)).devices[0].address == address


# --------------------------------------------------------------------------------------------
# Missing required keys point at the header of their table
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("removed", "field"),
    [
        ('name = "a"\n', "name"),
        ('platform = "linux"\n', "platform"),
        ('address = "127.0.0.1"\n', "address"),
    ],
)
def test_missing_device_key_points_at_device_header(
    tmp_path: Path, removed: str, field: str
) -> None:
    text = "\n\n" + device(HOST.replace(removed, ""))
    assert error_of(tmp_path, text) == f"5: device[0].{field}: missing required key"


def test_missing_meter_table(tmp_path: Path) -> None:
    text = f"schema_version = 1\n\n[[device]]\n{HOST}\n[[device]]\n{host_named('b')}"
    assert error_of(tmp_path, text) == "3: device[0].meter: missing required table"


def test_missing_meter_kind_points_at_meter_header(tmp_path: Path) -> None:
    text = device(HOST, meter='profile = "rpi4"')
    assert error_of(tmp_path, text) == "9: device[0].meter.kind: missing required key"


def test_missing_sim_profile(tmp_path: Path) -> None:
    text = device(HOST, meter='kind = "sim"')
    assert error_of(tmp_path, text) == "9: device[0].meter.profile: missing required key"


def test_missing_ssh_user_points_at_ssh_header(tmp_path: Path) -> None:
    text = device(HOST) + "\n\n[device.ssh]\nport = 22\n"
    assert error_of(tmp_path, text) == "14: device[0].ssh.user: missing required key"


# --------------------------------------------------------------------------------------------
# Types and ranges
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('port = "22"', "8: device[0].port: expected an integer, got string '22'"),
        ("port = true", "8: device[0].port: expected an integer, got boolean true"),
        ("port = 1.5", "8: device[0].port: expected an integer, got float 1.5"),
        (
            'local = "yes"',
            "8: device[0].local: expected a boolean (true or false), got string 'yes'",
        ),
        ('tags = "demo"', "8: device[0].tags: expected an array, got string 'demo'"),
        ('description = ["x"]', "8: device[0].description: expected a string, got array ['x']"),
        ('meter = "sim"', "8: device[0].meter: expected a table, got string 'sim'"),
    ],
)
def test_wrong_types(tmp_path: Path, line: str, expected: str) -> None:
    # The tested key sits on line 8; [device.meter] is left out when the line defines meter.
    host = HOST.replace("local = true", "port = 1") if line.startswith("local") else HOST
    text = f"schema_version = 1\n\n[[device]]\n{host}{line}\n"
    if not line.startswith("meter"):
        text += '[device.meter]\nkind = "sim"\nprofile = "p"\n'
    assert error_of(tmp_path, text) == expected


def test_wrong_type_inside_multiline_array_points_at_element(tmp_path: Path) -> None:
    text = device(HOST + 'tags = [\n  "demo",\n  # a comment\n  7,\n]\n')
    assert error_of(tmp_path, text) == "11: device[0].tags[1]: expected a string, got integer 7"


def test_ssh_port_wrong_type(tmp_path: Path) -> None:
    text = device(HOST) + '[device.ssh]\nuser = "pi"\nport = "22"\n'
    assert error_of(tmp_path, text) == (
        "14: device[0].ssh.port: expected an integer, got string '22'"
    )


@pytest.mark.parametrize(
    ("port", "message"),
    [("70000", "port 70000 is out of range 0..65535"), ("-1", "port -1 is out of range 0..65535")],
)
def test_device_port_out_of_range(tmp_path: Path, port: str, message: str) -> None:
    text = device(HOST + f"port = {port}\n")
    assert error_of(tmp_path, text) == f"8: device[0].port: {message}"


def test_ssh_port_zero_is_out_of_range(tmp_path: Path) -> None:
    text = device(HOST) + '[device.ssh]\nuser = "pi"\nport = 0\n'
    assert error_of(tmp_path, text) == "14: device[0].ssh.port: port 0 is out of range 1..65535"


def test_port_zero_needs_local(tmp_path: Path) -> None:
    remote = HOST.replace("local = true\n", "port = 0\n")
    assert error_of(tmp_path, device(remote)) == (
        "7: device[0].port: port 0 (pick a free port) is only allowed with local = true; "
        "give the port the agent listens on"
    )


def test_missing_port_on_remote_device_points_at_header(tmp_path: Path) -> None:
    remote = HOST.replace("local = true\n", "local = false\n")
    assert error_of(tmp_path, device(remote)) == (
        "3: device[0].port: missing; a remote device (local = false) needs the port its agent "
        "listens on"
    )


def test_unknown_meter_kind_lists_valid_ones(tmp_path: Path) -> None:
    text = device(HOST, meter='kind = "ina3221_iio"')
    assert error_of(tmp_path, text) == (
        "10: device[0].meter.kind: unknown meter kind 'ina3221_iio' (did you mean "
        "'ina3221-iio'?); expected one of: sim, replay, rapl, ina3221, ina3221-iio, ina2xx, "
        "rpi5-pmic, tegrastats, android-battery, android-odpm, joulescope, monsoon, otii"
    )


def test_unknown_sim_profile_lists_valid_ones(tmp_path: Path) -> None:
    text = device(HOST, meter='kind = "sim"\nprofile = "rpi3"')
    assert error_of(tmp_path, text) == (  # by default, the profiles the simulator has
        "11: device[0].meter.profile: unknown sim profile 'rpi3' (did you mean 'rpi4'?); "
        "expected one of: host, jetson-orin-nano, rpi4"
    )
    assert error_of(tmp_path, text, sim_profiles=("rpi4", "jetson-orin")) == (
        "11: device[0].meter.profile: unknown sim profile 'rpi3' (did you mean 'rpi4'?); "
        "expected one of: jetson-orin, rpi4"
    )


def test_profile_only_for_sim_meters(tmp_path: Path) -> None:
    text = device(HOST, meter='kind = "rapl"\nprofile = "rpi4"')
    assert error_of(tmp_path, text) == (
        "11: device[0].meter.profile: only used with kind = 'sim', not 'rapl'"
    )


@pytest.mark.parametrize(("rate", "message"), [
    ("0", "must be >= 0.1, got 0"),
    ("-5.0", "must be >= 0.1, got -5"),
    ("0.01", "must be >= 0.1, got 0.01"),
    ("nan", "must be a finite number, got nan"),
    ("inf", "must be a finite number, got inf"),
    # Was accepted: a simulated meter then asked numpy for 1e300 samples.
    ("1e300", "must be <= 10000000, got 1e+300"),
    ("20_000_000", "must be <= 10000000, got 20000000"),
])
def test_sample_rate_is_bounded(tmp_path: Path, rate: str, message: str) -> None:
    text = device(HOST, meter=f'kind = "rapl"\nsample_rate_hz = {rate}')
    assert error_of(tmp_path, text) == f"11: device[0].meter.sample_rate_hz: {message}"


@pytest.mark.parametrize("rate", ["0.1", "10_000_000", "2e6"])
def test_sample_rates_within_the_bounds_load(tmp_path: Path, rate: str) -> None:
    text = device(HOST, meter=f'kind = "rapl"\nsample_rate_hz = {rate}')
    assert load_registry(write(tmp_path, text)).devices[0].meter.sample_rate_hz == float(rate)


@pytest.mark.parametrize(("kind", "options", "message"), [
    ("tegrastats", "interval_ms = 0", "12: device[0].meter.options.interval_ms: must be >= 1, "
                                      "got 0"),
    ("tegrastats", "interval_ms = 100_000_000", "12: device[0].meter.options.interval_ms: must "
                                                "be <= 10000, got 100000000"),
    ("tegrastats", 'interval_ms = "100"', "12: device[0].meter.options.interval_ms: expected an "
                                          "integer, got string '100'"),
    ("replay", 'path = "t.csv"\noffset_s = nan', "13: device[0].meter.options.offset_s: must be "
                                                 "a finite number, got nan"),
    ("replay", 'path = "t.csv"\noffset_s = 1e300', "13: device[0].meter.options.offset_s: must "
                                                   "be <= 604800, got 1e+300"),
    ("monsoon", "vout = 20", "12: device[0].meter.options.vout: must be <= 13.5, got 20"),
    ("otii", "port = 70000", "12: device[0].meter.options.port: must be <= 65535, got 70000"),
])
def test_numeric_meter_options_are_bounded(tmp_path: Path, kind: str, options: str,
                                           message: str) -> None:
    text = device('name = "m"\nplatform = "linux"\naddress = "10.0.0.2"\nport = 1\n',
                  meter=f'kind = "{kind}"\n[device.meter.options]\n{options}')
    assert error_of(tmp_path, text) == message


_DEEP = {
    "arrays": "x = " + "[" * 100_000 + "\n",
    "inline-tables": "x = " + "{ a = " * 50_000 + "1" + " }" * 50_000 + "\n",
    "dotted-key": "x" + ".a" * 100_000 + " = 1\n",
}


@pytest.mark.parametrize("deep", list(_DEEP), ids=list(_DEEP))
def test_deep_nesting_is_an_error_naming_the_file_not_a_crash(tmp_path: Path, deep: str) -> None:
    # Was: RecursionError, printed as an internal error (exit 1).
    path = write(tmp_path, "schema_version = 1\n" + _DEEP[deep])
    for command in ("list", "validate"):
        done = run_cli("devices", command, "--devices", str(path), timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"{path}:2: " in done.stderr, done.stderr
        assert "nested more than 32 levels deep" in done.stderr


def test_a_fifo_as_the_devices_file_is_refused(tmp_path: Path) -> None:
    import os

    path = tmp_path / "devices.toml"
    os.mkfifo(path)
    done = run_cli("devices", "list", "--devices", str(path), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{path}:0: is a named pipe (FIFO), not a devices file" in done.stderr


# --------------------------------------------------------------------------------------------
# Order of errors and the line indexer
# --------------------------------------------------------------------------------------------


def test_first_error_in_file_order_is_reported(tmp_path: Path) -> None:
    # The port check runs before the meter checks, but meter.kind is written first.
    text = (
        'schema_version = 1\n[[device]]\nname = "a"\nplatform = "linux"\n'
        'meter.kind = "bogus"\naddress = "10.0.0.1"\nport = 99999\n'
    )
    assert error_of(tmp_path, text).startswith("5: device[0].meter.kind: unknown meter kind")


def test_errors_in_later_devices_are_found(tmp_path: Path) -> None:
    third = device(HOST) + f"\n[[device]]\n{host_named('b')}meter.kind = 'rapl'\n"
    third += f"\n[[device]]\n{host_named('c')}port = 65536\nmeter.kind = 'rapl'\n"
    assert error_of(tmp_path, third) == "25: device[2].port: port 65536 is out of range 0..65535"


def test_line_indexer_is_not_fooled_by_strings_and_comments(tmp_path: Path) -> None:
    text = (
        "schema_version = 1\r\n"  # 1 (CRLF line ends)
        "[[device]]  # first\r\n"  # 2
        'name = "a"\r\n'  # 3
        'description = """\r\n'  # 4
        "[[device]]\r\n"  # 5: inside the string
        'address = "300.1.1.1" \\"""\r\n'  # 6: still inside (escaped quote)
        "# not a comment\r\n"  # 7
        '"""\r\n'  # 8
        "platform = 'linux' # x = 1\r\n"  # 9
        "tags = ['''a'b''', \"c#\", [\r\n"  # 10
        "  1]]\r\n"  # 11
        '"address" = "10.0.0.1"\r\n'  # 12
        "local = true\r\n"  # 13
        "meter = { kind = 'replay', options = { path = [1, {b = 2}] } }\r\n"  # 14
        "[device.ssh]\r\n"  # 15
        "user = 'x'\r\n"  # 16
        "key = '''k'''''\r\n"  # 17: a closing run of 5 quotes
        "port = 1979-05-27 07:32:00\r\n"  # 18
    )
    assert error_of(tmp_path, text) == "10: device[0].tags[2]: expected a string, got array [1]"
    fixed = text.replace(", [\r\n  1]]", "]")
    assert error_of(tmp_path, fixed) == (
        "17: device[0].ssh.port: expected an integer, got datetime 1979-05-27T07:32:00"
    )


def _key_paths(value: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every key path of a parsed TOML document (tables and array entries included)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,)
            yield from _key_paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield path + (index,)
            yield from _key_paths(item, path + (index,))


@pytest.mark.parametrize(
    "text",
    [
        VALID,
        'schema_version = 1\ndevice = [\n  { name = "a", meter = { kind = "x", options.b = [\n'
        '    {c = 1},\n  ] } },\n  {name = "b"}\n]\n',
    ],
)
def test_line_index_finds_every_key_on_a_line_that_writes_it(text: str) -> None:
    index = LineIndex(text)
    lines = text.splitlines()
    for path in _key_paths(tomllib.loads(text)):
        key = path[-1]
        if isinstance(key, str):
            line = lines[index.line_of(path) - 1]
            assert re.search(rf"(^|[\[{{,\s.]){re.escape(key)}\s*[=.\]]", line), (path, line)


def test_unknown_meter_option_is_named_with_its_line(tmp_path: Path) -> None:
    text = device('name = "j"\nplatform = "jetson"\naddress = "10.0.0.2"\nport = 1',
                  meter='kind = "tegrastats"\n[device.meter.options]\ninterval_ms = 100\n'
                        'totl_rail = "VDD_IN"')
    message = error_of(tmp_path, text)
    assert message.startswith("12: device[0].meter.options.totl_rail: meter kind 'tegrastats' "
                              "takes no option 'totl_rail' (did you mean 'total_rail'?)"), message

"""Fixtures shared by the controller's tests."""

from tests.helpers.sshd import sshd_server

# A fixture is found by name in a conftest; naming it here is the one import it needs.
__all__ = ["sshd_server"]

"""The farm's configuration files: the device registry and benchmark suites."""

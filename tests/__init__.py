"""followupd's test suite (a package, so that ``tests.servers`` can be imported by conftest and plugins)."""

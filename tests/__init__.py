"""The test suite: a package, so that ``from tests.conftest import ...`` works under plain ``pytest`` too."""

from tests.watch.conftest import areas_a, hanako, resident_b, shigeru  # noqa: F401 - shared fixtures

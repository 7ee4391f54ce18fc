"""pytest setup for the whole repository: one marker per homework, derived from
``assignments/*/assignment.toml`` (adding a homework adds its marker)."""


def pytest_configure(config):
    from autograder.authoring.markers import HOMEWORKS

    for hw in HOMEWORKS:
        config.addinivalue_line("markers", f"{hw}: a test of {hw}")

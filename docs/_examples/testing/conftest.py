import pytest

from example_app import create_app

pytest_plugins = ["flask_asyncendpoints.testing.plugin"]


@pytest.fixture
def app(asyncendpoints_config, monkeypatch):
    monkeypatch.setenv("EXAMPLE_DELAY", "0")  # how long the example app's jobs take
    return create_app(asyncendpoints_config)


@pytest.fixture
def client(app):
    return app.test_client()

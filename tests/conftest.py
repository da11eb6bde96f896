def pytest_configure(config):
    # Until pyproject registers it: integration tests need real Dovecot (scripts/setup.sh).
    config.addinivalue_line("markers", "integration: needs real Dovecot + SMTP on loopback")

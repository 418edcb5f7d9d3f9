pytest_plugins = ["tests.fixtures.slapd", "tests.fixtures.postgres", "tests.fixtures.smtp", "tests.fixtures.app",
                  "tests.fixtures.browser"]

pytest_plugins = ["tests.fixtures.slapd", "tests.fixtures.ds389", "tests.fixtures.postgres", "tests.fixtures.smtp",
                  "tests.fixtures.app", "tests.fixtures.browser", "tests.fixtures.samba_ad",
                  "tests.fixtures.write_path"]  # every write of the suite's runs comes from the services or the store

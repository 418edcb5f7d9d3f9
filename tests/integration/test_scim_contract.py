"""scim2-server's own ScimStorageContract suite, run against the store on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from scim2_models import ScimProvider
from scim2_server.testing import ScimStorageContract

from bridge.config import ScimConfig
from bridge.scim.schema import build_provider
from bridge.scim.storage import StoreStorage


class TestStoreStorage(ScimStorageContract):
    """The cursor tests run because StoreStorage.supports_cursors; the root-search tests
    because of supports_root_search. Nothing of either is skipped."""

    supports_root_search = True  # Users and Groups as one collection in SQL (bridge.scim.keyset)

    @pytest.fixture
    def provider(self) -> ScimProvider:
        return build_provider(ScimConfig())

    @pytest.fixture
    def storage(self, services):
        return StoreStorage(services)

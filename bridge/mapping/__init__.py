"""The mapping engine: scopes, roles, mapping rules, effective rights, check and explain.

Writes go through the service layer (bridge.services: roles, scopes, grants,
customers); this package reads: it compiles what the store holds into what
``check`` answers from, caches it per process and keeps the cache exact
through the store's change log.
"""

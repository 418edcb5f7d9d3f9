"""dirbridge: a directory bridge between IdPs, LDAP directories and the portal's authorization model."""

__version__ = "0.1.0"

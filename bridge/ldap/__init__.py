"""LDAP sources: connections (ldap3), and later presets, sync and write-back."""

"""Local accounts: invitations, password policy, lockout, TOTP, login, CSV import.

The modules here decide; every write goes through ``bridge.services.accounts``
(the one write path, audited). Time comes from an injected clock so that the
tests control expiry, lockout and password age without sleeping.
"""

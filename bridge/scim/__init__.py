"""The SCIM 2.0 service provider (RFC 7643/7644) on scim2-server, backed by the store."""

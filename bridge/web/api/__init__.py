"""The portal and admin API under /api/v1: JSON, described by an OpenAPI 3.1 document
generated from the route declarations (flask-openapi3 + pydantic), so the document
cannot drift from the code."""

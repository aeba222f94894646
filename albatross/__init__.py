"""Albatross: a multi-tenant platform for virtual airlines."""

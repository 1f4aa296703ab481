"""Handlers of the submitters' API, one module per resource."""

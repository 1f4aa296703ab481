"""The corpus runs against the same kind of live stack as the fault tests (its own one)."""

from tests.faults.conftest import live_stack

__all__ = ["live_stack"]

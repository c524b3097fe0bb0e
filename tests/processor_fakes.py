"""The old name of the in-memory unit of work (`tests.fakes.FakeUnitOfWork`), until it moves."""

from tests.fakes import FakeUnitOfWork as FakeProcessorUnitOfWork

__all__ = ["FakeProcessorUnitOfWork"]

"""The run's ledger: one small Ray actor that counts rows once per batch and keeps the first
portanet error raised in a read task or a predictor.

Ray carries a remote exception back as its own wrapper, with the original only as traceback
text; the ledger hands the driver the error itself (its class and message), so that the CLI
prints the same one line and exit code as the local engine.
"""

from __future__ import annotations

from typing import Any

from portanet import errors


class Ledger:
    """Counts and the first failure (made a Ray actor with ``ray.remote(num_cpus=0)``)."""

    def __init__(self) -> None:
        self.batches: dict[Any, tuple[int, int]] = {}
        self.unkeyed = [0, 0]
        self.first_failure: tuple[str, str] | None = None

    def add(self, key: Any, predicted: int, rejected: int) -> None:
        """Record a batch; a retried batch reports the same ``key`` and is counted once."""
        if key is None:
            self.unkeyed[0] += predicted
            self.unkeyed[1] += rejected
        else:
            self.batches[key] = (predicted, rejected)

    def fail(self, kind: str, message: str) -> None:
        """Keep the first error raised anywhere in the run."""
        if self.first_failure is None:
            self.first_failure = (kind, message)

    def totals(self) -> tuple[int, int]:
        """(rows predicted, rows rejected)."""
        return (
            sum(p for p, _ in self.batches.values()) + self.unkeyed[0],
            sum(r for _, r in self.batches.values()) + self.unkeyed[1],
        )

    def failure(self) -> tuple[str, str] | None:
        """The first error's class name and message, if any."""
        return self.first_failure


def report(ledger: Any, error: errors.PortanetError) -> None:
    """Tell the ledger (a Ray actor handle, or ``None``) about ``error`` before it is raised."""
    if ledger is not None:
        import ray

        ray.get(ledger.fail.remote(type(error).__name__, str(error)))


def rebuild(failure: tuple[str, str]) -> errors.PortanetError:
    """The portanet error a ledger recorded, as an exception of its own class."""
    kind, message = failure
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.PortanetError)):
        cls = errors.InputError
    return cls(message)

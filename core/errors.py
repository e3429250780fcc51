"""The one exception type a user sees: the CLI prints it as a single line."""


class GansweepError(Exception):
    """A user-facing error: bad input, bad config, bad file. The message names the culprit."""


class DivergenceError(GansweepError):
    """A training loss became non-finite."""

    def __init__(self, iteration: int, losses: dict[str, float]):
        self.iteration = iteration
        self.losses = losses
        shown = ", ".join(f"{k}={v}" for k, v in losses.items())
        super().__init__(f"training diverged at iteration {iteration}: {shown}")

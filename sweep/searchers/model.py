"""A model of a D x G grid's partition effects: which network's layers matter, and which
pairs are worth running (``sweep.searchers.structured``, the report's effects section). No Ray here.

A pair's final score, on the metric's lower-is-better scale (``Metric.loss``), is modelled
as y = f(d, g) + e with

    f ~ GP(0, c + s_D^2 k(d, d') + s_G^2 k(g, g') + s_DG^2 k(d, d') k(g, g')
                + s_P^2 [d = d', g = g'])

a constant, a main effect of D's partition, one of G's, a smooth interaction and a pair's
own deviation (an interaction no neighbour shares); e is the noise of one trial (its seed,
the metric's sampling), independent between trials. k is a
squared-exponential kernel on a partition's fractions (i, j, k) / L, so partitions that
treat most units alike share strength, and a partition outside the grid (a baseline's,
say scale-shift's D(0,L,0)) informs its neighbours. The five scales, the noise's among
them, are estimated by maximising the marginal likelihood under a weak log-normal prior
(MAP), on scores standardised by their mean and sd: replicate seeds of a pair tell the noise
from the pair's own deviation; with one seed per pair only the prior splits the two.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, cholesky, solve_triangular
from scipy.optimize import minimize

from gansweep.core.errors import GansweepError
from gansweep.core.treatments import Partition

# k's length scale on the fractions (i, j, k) / L: moving one of L = 5 units to another
# treatment keeps a correlation of 0.92, moving all of them 0.02.
LENGTH_SCALE = 0.5
TERMS = ("D", "G", "DxG", "pair", "noise")  # the scales, in this order
NOISE = TERMS.index("noise")
# Each scale's log-normal prior, in sds of the standardised scores: centred on half the
# scores' spread, a factor e either way at one sd. Weak: data of a few pairs outweigh it.
PRIOR = (math.log(0.5), 1.0)
BOUNDS = (-5.0, 2.0)  # of each log scale (a safety net: the prior keeps them inside)
def fractions(partition: str) -> np.ndarray:
    """A canonical ``D(i,j,k)``/``G(i,j,k)`` as its fractions (i, j, k) / L."""
    p = Partition.parse(partition)
    return np.array([p.i, p.j, p.k], dtype=float) / p.units


def _kernel(levels: Sequence[str]) -> np.ndarray:
    x = np.stack([fractions(p) for p in levels])
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / LENGTH_SCALE ** 2)


@dataclass(frozen=True)
class Observation:
    """One trial's final score at a pair, on the lower-is-better scale."""

    d: str
    g: str
    value: float


def _objective(theta: np.ndarray, parts: list[np.ndarray], z: np.ndarray, within: float,
               dof: int) -> tuple[float, np.ndarray]:
    """The negative log posterior of the log scales and its gradient. ``z``: each pair's mean
    score; ``parts[NOISE]``: diag(1 / replicates); ``within``, ``dof``: the sum of squares of
    the replicates about their pair's mean and its degrees of freedom (it informs the
    noise)."""
    v = np.exp(2 * theta)
    k = 1.0 + sum(vc * p for vc, p in zip(v, parts))
    try:
        factor = cho_factor(k, lower=True)
    except LinAlgError:
        return 1e10, np.zeros_like(theta)
    alpha = cho_solve(factor, z)
    inverse = cho_solve(factor, np.eye(len(z)))
    value = 0.5 * z @ alpha + np.log(np.diag(factor[0])).sum()
    inner = inverse - np.outer(alpha, alpha)
    grad = np.array([vc * np.sum(inner * p) for vc, p in zip(v, parts)])
    value += dof * theta[NOISE] + 0.5 * within / v[NOISE]
    grad[NOISE] += dof - within / v[NOISE]
    centre, sd = PRIOR
    value += 0.5 * np.sum(((theta - centre) / sd) ** 2)
    return float(value), grad + (theta - centre) / sd ** 2


class Posterior:
    """f's posterior given the observations, at their MAP scales. Pairs are named by their
    partitions; any partition of the same networks can be asked about."""

    def __init__(self, observations: Sequence[Observation]):
        if len(observations) < 2:
            raise GansweepError(f"the partition model needs at least 2 observations, got "
                                f"{len(observations)}")
        self.observations = list(observations)
        y = np.array([o.value for o in observations], dtype=float)
        self.centre = float(y.mean())
        self.spread = float(y.std()) or 1.0
        # Replicates of a pair (seeds) enter as their mean, with noise / n, and the sum of
        # squares about it: the same likelihood, at the cost of the distinct pairs only.
        groups: dict[tuple[str, str], list[float]] = {}
        for o, value in zip(observations, (y - self.centre) / self.spread):
            groups.setdefault((o.d, o.g), []).append(float(value))
        self._d = [d for d, _ in groups]
        self._g = [g for _, g in groups]
        self._z = np.array([np.mean(v) for v in groups.values()])
        self._reps = np.array([len(v) for v in groups.values()], dtype=float)
        within = float(sum(np.sum((np.array(v) - np.mean(v)) ** 2) for v in groups.values()))
        kd, kg = self._cross(self._d, self._d), self._cross(self._g, self._g)
        parts = [kd, kg, kd * kg, np.eye(len(self._z)), np.diag(1 / self._reps)]
        self.theta = self._fit(parts, within, len(y) - len(groups))
        self._solve(parts)

    def _solve(self, parts: list[np.ndarray]) -> None:
        v = np.exp(2 * self.theta)
        self._factor = cho_factor(1.0 + sum(vc * p for vc, p in zip(v, parts)), lower=True)
        self._alpha = cho_solve(self._factor, self._z)

    def _fit(self, parts: list[np.ndarray], within: float, dof: int) -> np.ndarray:
        best = None
        # Two starts (the prior's centre; little structure, much noise): the likelihood of
        # a few pairs can have a second mode where the noise explains everything.
        for start in (np.full(len(TERMS), PRIOR[0]),
                      np.array([PRIOR[0] - 1] * NOISE + [PRIOR[0] + 0.5])):
            # BFGS, not L-BFGS-B: the prior keeps the scales finite, and L-BFGS-B's Fortran
            # core threads its tiny vector operations, 20x slower on a busy machine.
            r = minimize(_objective, start, args=(parts, self._z, within, dof), jac=True,
                         method="BFGS")
            if best is None or r.fun < best.fun:
                best = r
        return np.clip(best.x, *BOUNDS)

    @staticmethod
    def _cross(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        levels = sorted(set(a) | set(b))
        k = _kernel(levels)
        at = {p: n for n, p in enumerate(levels)}
        return k[np.ix_([at[p] for p in a], [at[p] for p in b])]

    def _prior(self, d1, g1, d2, g2) -> np.ndarray:
        v = np.exp(2 * self.theta)
        kd, kg = self._cross(d1, d2), self._cross(g1, g2)
        same = (np.array(d1)[:, None] == np.array(d2)[None, :]) & \
            (np.array(g1)[:, None] == np.array(g2)[None, :])
        return 1.0 + v[0] * kd + v[1] * kg + v[2] * kd * kg + v[3] * same

    @property
    def scales(self) -> dict[str, float]:
        """The sd of each term, in the score's units (``noise``: one trial's)."""
        return dict(zip(TERMS, (self.spread * np.exp(self.theta)).tolist()))

    @property
    def noise_sd(self) -> float:
        return self.scales["noise"]

    def joint(self, d: Sequence[str], g: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and covariance of f at the pairs (d[n], g[n]), in score units."""
        cross = self._prior(d, g, self._d, self._g)
        mean = cross @ self._alpha
        w = cho_solve(self._factor, cross.T)
        cov = self._prior(d, g, d, g) - cross @ w
        return self.centre + self.spread * mean, self.spread ** 2 * (cov + cov.T) / 2

    def predict(self, d: Sequence[str], g: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of f at each pair."""
        cross = self._prior(d, g, self._d, self._g)
        mean = cross @ self._alpha
        w = solve_triangular(self._factor[0], cross.T, lower=True)  # L^-1 k
        v = np.exp(2 * self.theta)
        var = 1.0 + v[:NOISE].sum() - (w * w).sum(0)
        return self.centre + self.spread * mean, self.spread * np.sqrt(np.maximum(var, 1e-12))

    def believing(self, pairs: Sequence[tuple[str, str]]) -> Posterior:
        """This posterior with pairs still running counted as observed at their predicted
        mean (the "kriging believer"): their uncertainty no longer attracts a suggestion,
        and the scales stay those the real observations gave."""
        if not pairs:
            return self
        mean, _ = self.predict([d for d, _ in pairs], [g for _, g in pairs])
        out = Posterior.__new__(Posterior)
        out.__dict__.update(self.__dict__)
        out._d, out._g = self._d + [d for d, _ in pairs], self._g + [g for _, g in pairs]
        out._z = np.concatenate([self._z, (mean - self.centre) / self.spread])
        out._reps = np.concatenate([self._reps, np.ones(len(pairs))])
        kd, kg = self._cross(out._d, out._d), self._cross(out._g, out._g)
        # a running pair that was observed before is the same pair: its deviation is shared
        same = (np.array(out._d)[:, None] == np.array(out._d)[None, :]) & \
            (np.array(out._g)[:, None] == np.array(out._g)[None, :])
        out._solve([kd, kg, kd * kg, same.astype(float), np.diag(1 / out._reps)])
        return out

    def expected_improvement(self, d: Sequence[str], g: Sequence[str],
                             incumbent: float) -> np.ndarray:
        """E[max(incumbent - f, 0)] at each pair (lower is better)."""
        mean, sd = self.predict(d, g)
        u = (incumbent - mean) / sd
        from scipy.stats import norm  # here: scipy.stats costs every driver 0.3 s to import

        return (incumbent - mean) * norm.cdf(u) + sd * norm.pdf(u)

    def draws(self, d: Sequence[str], g: Sequence[str], n: int, seed: int = 0) -> np.ndarray:
        """n draws of f at the pairs (n x pairs), from a fixed random seed."""
        mean, cov = self.joint(d, g)
        jitter = 1e-9 * max(float(np.mean(np.diag(cov))), 1e-12)
        lower = cholesky(cov + jitter * np.eye(len(mean)), lower=True)
        z = np.random.default_rng(seed).standard_normal((n, len(mean)))
        return mean + z @ lower.T


@dataclass(frozen=True)
class Estimate:
    """A quantity's posterior mean with its 95 % interval."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Effects:
    """What the model says of a grid of D and G partitions (scores on the lower-is-better
    scale): each partition's main effect (its row or column mean of f minus f's grand mean),
    the interaction's share of f's variance over the grid, and the predicted best pair with
    the probability that it is the grid's best."""

    d: dict[str, Estimate]
    g: dict[str, Estimate]
    interaction_share: Estimate
    best: tuple[str, str]
    best_value: Estimate
    best_probability: float
    noise_sd: float  # one trial's, as estimated


DRAWS = 2000


def grid_effects(posterior: Posterior, ds: Sequence[str], gs: Sequence[str]) -> Effects:
    """The model's effects on the grid ds x gs. Main effects are linear in f, so their
    intervals are exact; the interaction's share and the best pair come from DRAWS draws."""
    d = [a for a in ds for _ in gs]
    g = [b for _ in ds for b in gs]
    mean, cov = posterior.joint(d, g)
    nd, ng = len(ds), len(gs)
    n = nd * ng
    rows = np.kron(np.eye(nd), np.full((1, ng), 1 / ng)) - 1 / n  # a(d) = row mean - mean
    cols = np.kron(np.full((1, nd), 1 / nd), np.eye(ng)) - 1 / n

    def linear(c: np.ndarray, names: Sequence[str]) -> dict[str, Estimate]:
        m, sd = c @ mean, np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", c, cov, c), 0))
        return {p: Estimate(float(a), float(a - 1.96 * s), float(a + 1.96 * s))
                for p, a, s in zip(names, m, sd)}

    f = posterior.draws(d, g, DRAWS).reshape(DRAWS, nd, ng)
    centred = f - f.mean(axis=(1, 2), keepdims=True)
    inter = centred - centred.mean(2, keepdims=True) - centred.mean(1, keepdims=True)
    total = (centred ** 2).sum(axis=(1, 2))
    share = (inter ** 2).sum(axis=(1, 2)) / np.where(total > 0, total, 1.0)
    at = int(np.argmin(mean))
    winners = f.reshape(DRAWS, n).argmin(1)
    sd_best = math.sqrt(max(cov[at, at], 0.0))
    return Effects(linear(rows, ds), linear(cols, gs),
                   Estimate(float(share.mean()), *map(float, np.percentile(share, [2.5, 97.5]))),
                   (d[at], g[at]),
                   Estimate(float(mean[at]), float(mean[at] - 1.96 * sd_best),
                            float(mean[at] + 1.96 * sd_best)),
                   float(np.mean(winners == at)), posterior.noise_sd)

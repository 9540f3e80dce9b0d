"""Algorithm 3 of Vonderfecht & Liu: the minimum-cost DiffC timestep schedule.

For every image x_0 in a set, walk a chain of candidate timesteps g_0 = T-1 > g_1 > ...
with x_{g_0} ~ q(x_{g_0} | x_0) and x_{g_{a+1}} ~ q(x_{g_{a+1}} | x_{g_a}, x_0) (each
sample is distributed as q(x_g | x_0), which is all the algorithm needs), and from one
model evaluation at each x_{g_a} measure

    D[x, a, b] = D_KL( q(x_{g_b} | x_{g_a}, x_0) || p(x_{g_b} | x_{g_a}) )   for all b > a

(and D_KL(q(x_T | x_0) || p(x_T)) for the first step). The cost of an edge is the mean
over images of what coding it costs: ``ceil(D / (k - padding))`` chunks of about k bits
(the fixed-length bound of the entropy-coded PFR index) plus the bits each step spends
on framing (``step_bits``: chunk count, length, CRC, coder flush; raise it to trade
rate for fewer, faster steps). The schedule is the shortest path from g_0 to the last
candidate in this DAG (optimal substructure: a sent x_i is a fair sample of q(x_i|x_0)
whatever path led to it), made to pass through the reconstruction points wanted as
quality levels (:func:`waypoint_path`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gencodec.diffc.profile import Profile
from gencodec.diffusion import ddpm
from gencodec.diffusion.base import Backbone

#: Bits a step spends besides its chunks: ~2 varint bytes, 4 CRC bytes, ~2 flush bytes.
STEP_BITS = 64


@dataclasses.dataclass
class Measurement:
    candidates: list[int]
    #: prior[x]: D_KL of the first step; kl[x, a, b] for a < b (NaN elsewhere).
    prior: np.ndarray
    kl: np.ndarray


def candidate_timesteps(num_timesteps: int, count: int, t_final: int) -> list[int]:
    """``count`` candidates from T-1 down to ``t_final``, spaced geometrically in t."""
    ts = np.rint(np.geomspace(num_timesteps - 1, max(t_final, 1), count)).astype(int)
    if t_final == 0:
        ts[-1] = 0
    return sorted({int(t) for t in ts}, reverse=True)


def measure(backbone: Backbone, latents: list[np.ndarray], candidates: list[int],
            seed: int = 0, progress=None) -> Measurement:
    """The D_KL table of Algorithm 3 (lines 1-9): one model evaluation per candidate."""
    from gencodec.rcc import gaussian_kl_bits

    abar, G = backbone.alphas_cumprod, len(candidates)
    prior = np.zeros(len(latents))
    kl = np.full((len(latents), G, G), np.nan)
    rng = np.random.Generator(np.random.Philox(key=[seed, 0xCA1]))
    for n, x0 in enumerate(latents):
        x0 = x0.astype(np.float64)
        a, s = ddpm.signal_noise(abar, candidates[0])
        mu_p, sig_p = backbone.prior(x0.shape)
        prior[n] = gaussian_kl_bits(a * x0, s, mu_p, sig_p)
        x = (a * x0 + s * rng.standard_normal(x0.shape)).astype(np.float32)
        for ia, i in enumerate(candidates[:-1]):
            predict = backbone.reverse_predictor(x, i)
            for ib in range(ia + 1, G):
                j = candidates[ib]
                post = ddpm.posterior(abar, i, j)
                mu_p, sig_p = predict(j)
                kl[n, ia, ib] = gaussian_kl_bits(post.A * x0 + post.B * x, np.sqrt(post.var),
                                                 mu_p, sig_p)
            post = ddpm.posterior(abar, i, candidates[ia + 1])
            x = (post.A * x0 + post.B * x + np.sqrt(post.var)
                 * rng.standard_normal(x0.shape)).astype(np.float32)
            if progress is not None:
                progress.update(1)
    return Measurement(list(candidates), prior, kl)


def step_cost(kl_bits: np.ndarray, chunk_bits: int, padding_bits: float,
              step_bits: float = STEP_BITS) -> np.ndarray:
    """C(D): bits to code a step whose D_KL is ``kl_bits``."""
    chunks = np.ceil(np.maximum(kl_bits, 0) / (chunk_bits - padding_bits))
    return chunks * chunk_bits + step_bits


def shortest_path(cost: np.ndarray, start: int, end: int) -> tuple[list[int], float]:
    """Minimum-cost path from node ``start`` to node ``end`` of a DAG with edges a -> b
    (a < b) of weight ``cost[a, b]`` (line 11 of Algorithm 3). Nodes and cost."""
    dist = {start: 0.0}
    back: dict[int, int] = {}
    for b in range(start + 1, end + 1):
        a = min(range(start, b), key=lambda a: dist[a] + cost[a, b])
        dist[b], back[b] = dist[a] + cost[a, b], a
    path = [end]
    while path[-1] != start:
        path.append(back[path[-1]])
    return path[::-1], dist[end]


def waypoint_path(cost: np.ndarray, waypoints: list[int]) -> tuple[list[int], float]:
    """The cheapest path through the given nodes in order: every waypoint is a
    reconstruction point (a quality level) that the schedule must offer. For an exact
    model the cheapest unconstrained path is a single jump (the chain rule makes extra
    intermediate samples pure cost), hence the waypoints."""
    path, total = [waypoints[0]], 0.0
    for a, b in zip(waypoints, waypoints[1:]):
        seg, c = shortest_path(cost, a, b)
        path += seg[1:]
        total += c
    return path, total


def optimal_profile(m: Measurement, chunk_bits: int, padding_bits: float,
                    step_bits: float = STEP_BITS, targets: list[int] | None = None,
                    **profile_options) -> Profile:
    """Algorithm 3 lines 10-12 (through the ``targets`` timesteps, each snapped to the
    nearest candidate), then the profile with the mean D_KL of each step."""
    G = len(m.candidates)
    upper = np.triu(np.ones((G, G), bool), 1)
    kl = np.where(upper, m.kl, 0.0)
    cost = np.where(upper, step_cost(kl, chunk_bits, padding_bits, step_bits).mean(0), np.inf)
    cand = np.array(m.candidates)
    nodes = {0, G - 1} | {int(np.argmin(np.abs(cand - t))) for t in targets or []}
    path, total = waypoint_path(cost, sorted(nodes))
    total += float(step_cost(m.prior, chunk_bits, padding_bits, step_bits).mean())
    mean_kl = [float(m.prior.mean())] + [float(m.kl[:, a, b].mean())
                                         for a, b in zip(path, path[1:])]
    calibration = dict(profile_options.pop("calibration", {}))
    calibration.update({"candidates": G, "images": int(len(m.prior)),
                        "step_bits": step_bits, "expected_bits": round(total, 1)})
    return Profile(timesteps=tuple(m.candidates[a] for a in path), chunk_bits=chunk_bits,
                   padding_bits=padding_bits, kl_bits=tuple(mean_kl),
                   calibration=calibration, **profile_options)


def fit_zipf_exponent(indices: np.ndarray, chunk_bits: int) -> float:
    """Maximum-likelihood s of p(n) ~ (n + 1)^-s on 0..2^k-1 from observed PFR indices."""
    from scipy.optimize import minimize_scalar

    logn = np.log(np.arange(1, (1 << chunk_bits) + 1, dtype=np.float64))
    mean_log = float(np.mean(np.log(np.asarray(indices, np.float64) + 1)))

    def nll(s):
        return s * mean_log + np.log(np.sum(np.exp(-s * logn)))

    return round(float(minimize_scalar(nll, bounds=(0.5, 4.0), method="bounded").x), 4)

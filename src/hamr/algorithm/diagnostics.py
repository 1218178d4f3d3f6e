"""Whether each of HAMR's modules moved in an epoch (the per-epoch history, the tuning summary and
the tables' modules.md): the spread of the post-meta weights and of the learned loss -> weight curve,
f_θ's norm against its start, the spread of h and of the sampling probabilities, each class's share
of the draws against its share of the data, and whether hard means high loss."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import numpy as np
import torch
from scipy.stats import spearmanr

from hamr.algorithm.weights import WeightNet, weight_curve

log = logging.getLogger(__name__)
Z_GRID = torch.linspace(-3, 3, 7)  # where the learned loss -> weight curve is logged
# Below this relative spread of the curve over Z_GRID ((max - min) / mean) the normalised weights of
# any batch differ by less than 5%: the meta-weighting acts as uniform weights, and the run says so
FLAT_CURVE_SPREAD = 0.05
# The last epoch's diagnostics that summaries show, with their column labels (the tuning summary
# averages them over a trial's seeds, the tables' modules.md over a configuration's seeds)
DIAGNOSTICS = {
    "weight_p10": "w p10",
    "weight_p90": "w p90",
    "h_max_over_mean": "h max/mean",
    "p_hard_decile_over_median": "p hard decile/median",
    "max_share_gap": "max share gap",
    "spearman_h_loss": "Spearman(h, loss)",
    "weight_curve/z=-3": "f(z=-3)",
    "weight_curve/z=+0": "f(z=0)",
    "weight_curve/z=+3": "f(z=+3)",
}


def parameter_norm(module: torch.nn.Module) -> float:
    """The L2 norm of all of a module's parameters together."""
    with torch.no_grad():
        return torch.linalg.vector_norm(torch.cat([p.flatten() for p in module.parameters()])).item()


def epoch_diagnostics(
    *,
    weights: list[torch.Tensor],
    meta_losses: list[torch.Tensor],
    h: np.ndarray,
    p: np.ndarray,
    b: np.ndarray,
    last_signal: np.ndarray,
    hard: np.ndarray,
    pool_classes: list[str],
    sampled: np.ndarray,
    weight_net: WeightNet,
    initial_norm: float,
    rates,
    skipped_meta_steps: int,
) -> dict:
    """One epoch's row. ``weights``: each step's w_post (B,); ``meta_losses``: each finite meta
    step's loss; h, p, b (N,) over the pool after the epoch (p: the next epoch's sampling
    probabilities); ``last_signal`` (N,) each example's last hardness signal (NaN: not visited);
    ``hard`` the hard examples' positions; ``pool_classes`` (N,) each example's class; ``sampled`` the
    epoch's drawn positions; ``rates`` the run's StepRates. Warns when f_θ's curve is flat."""
    drawn = torch.cat(weights).float().cpu() if weights else torch.ones(1)
    row = {
        "weight_mean": drawn.mean().item(),
        "weight_p10": drawn.quantile(0.1).item(),
        "weight_p90": drawn.quantile(0.9).item(),
        "meta_loss": torch.stack(meta_losses).mean().item() if meta_losses else float("nan"),
        "b_mean": float(b.mean()),
        "skipped_meta_steps": skipped_meta_steps,
        "train_pool": len(h),
    }
    row.update(spread_diagnostics(h, p, last_signal))
    row.update(
        {
            "hardness_decay": rates.gamma,
            "inner_lr": rates.inner_lr,
            "weight_net_lr": rates.weight_net_lr,
            "weight_net_norm_ratio": parameter_norm(weight_net) / initial_norm,
        }
    )
    curve = weight_curve(weight_net, Z_GRID.to(next(weight_net.parameters()).device)).cpu()
    row.update({f"weight_curve/z={z:+.0f}": float(w) for z, w in zip(Z_GRID.tolist(), curve.tolist())})
    row["weight_curve_spread"] = ((curve.max() - curve.min()) / curve.mean()).item()
    if row["weight_curve_spread"] < FLAT_CURVE_SPREAD:
        log.warning(
            "the weight network's curve is flat (it varies by %.1f%% over z = -3..+3): the post-meta "
            "weights act as uniform weights; f_θ's norm is %.2fx its initial norm (near 0: Adam's L2 "
            "term, hamr.weight_net_weight_decay, outpulled the meta gradient; else the meta "
            "gradient prefers no loss level)",
            100 * row["weight_curve_spread"],
            row["weight_net_norm_ratio"],
        )
    classes = np.asarray(pool_classes)
    members = defaultdict(int, Counter(pool_classes))
    drawn_classes = Counter(classes[sampled].tolist())
    hard_counts = Counter(classes[hard].tolist())
    gaps = []
    for c in sorted(members):
        row[f"data_share/{c}"] = members[c] / len(classes)
        row[f"sample_share/{c}"] = drawn_classes.get(c, 0) / max(len(sampled), 1)
        row[f"hard_fraction/{c}"] = hard_counts.get(c, 0) / members[c]
        gaps.append(abs(row[f"sample_share/{c}"] - row[f"data_share/{c}"]))
    row["max_share_gap"] = max(gaps)
    return row


def spread_diagnostics(h: np.ndarray, p: np.ndarray, last_signal: np.ndarray) -> dict:
    """How far hardness and sampling left uniform, from h (N,), the sampling probabilities p (N,)
    and each example's last loss (N,; NaN where not seen):

    - ``h_max_over_mean``: 1 while h is uniform;
    - ``p_hard_decile_over_median``: mean p of the top 10% of examples by h over the median p
      (1 while sampling is uniform);
    - ``spearman_h_loss``: Spearman's rank correlation of h with the last loss over the examples
      seen (> 0: hard means high loss; NaN with fewer than 3 seen or a constant input).
    """
    top = np.argsort(-h, kind="stable")[: max(1, int(np.ceil(0.1 * len(h))))]
    seen = ~np.isnan(last_signal)
    constant = seen.sum() < 3 or np.ptp(h[seen]) == 0 or np.ptp(last_signal[seen]) == 0
    rho = float("nan") if constant else float(spearmanr(h[seen], last_signal[seen]).statistic)
    return {
        "h_max_over_mean": float(h.max() / h.mean()),
        "p_hard_decile_over_median": float(p[top].mean() / np.median(p)),
        "spearman_h_loss": rho,
    }

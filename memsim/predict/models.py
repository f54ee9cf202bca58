"""Torch models, losses and the training loop of the predictors.

In: feature blocks (:class:`~memsim.predict.features.Features`) and
standardised targets. Out: trained :class:`MemNet` members whose averaged
outputs are the prediction (a fold ensemble: member k is trained on all
training rows but inner fold k, and stops at the epoch where its held-out
inner fold ranks best).

Models (variants of one network, chosen by name in :data:`ARCHS`):

- ``mlp``: a regularised MLP over the dense blocks (COCO-80 scores and the
  sentence embedding when present): input dropout, two hidden layers with
  GELU and dropout, AdamW weight decay;
- ``text``: the same trunk fed also by a token model trained from scratch
  (an ``EmbeddingBag`` mean over unigram + bigram ids of the title or
  descriptions), so it works without any pretrained embedding.

Both are multi-task (one head per target: short-term and long-term share the
trunk). The loss is MSE on standardised targets plus a rank-aware term: a
pairwise logistic loss over all pairs in the batch, which rewards putting a
pair in the right order and so aims at Spearman directly.

Determinism: ``torch.manual_seed`` per member, deterministic algorithms, a
seeded ``torch.Generator`` for batch order. Mixed precision (bfloat16
autocast) only on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "NetConfig",
    "MemNet",
    "train_member",
    "predict_members",
    "rank_loss",
    "pick_device",
    "set_deterministic",
    "ARCHS",
]

ARCHS = ("mlp", "text")


@dataclass(frozen=True)
class NetConfig:
    """Hyper-parameters, fixed in advance (never tuned on scored folds)."""

    arch: str = "text"
    hidden: int = 256
    token_dim: int = 48
    dropout: float = 0.3
    input_dropout: float = 0.1
    weight_decay: float = 1e-2
    lr: float = 2e-3
    batch_size: int = 256
    max_epochs: int = 25
    rank_weight: float = 1.0  # 0 = plain MSE
    task_weights: tuple = (1.0, 1.0)


def pick_device(name: str | None = None) -> torch.device:
    """``cuda`` when available (or asked for), else ``cpu``."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from memsim.errors import UserError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:  # torch's own long message lists every backend it knows
        raise UserError(
            f"--device {name}: not a torch device (auto, cpu, cuda or cuda:N)"
        ) from None


def set_deterministic(threads: int | None = None) -> None:
    """Deterministic kernels; CPU threads (default 1) for these small models.

    One thread is the default because the matrices here are small: extra
    threads cost more in synchronisation than they save, and on a shared
    machine they were 3-7 times slower (measured, see docs/predictors.md).
    """
    # cuBLAS needs a fixed workspace to be deterministic; set before first CUDA use
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    n = threads or int(os.environ.get("MEMSIM_TORCH_THREADS", "1"))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class MemNet(nn.Module):
    """Dense branch (+ token branch for ``text``) -> shared trunk -> one head per target."""

    def __init__(self, cfg: NetConfig, n_dense: int, n_tokens: int, n_out: int):
        super().__init__()
        self.cfg = cfg
        self.in_drop = nn.Dropout(cfg.input_dropout)
        self.dense = nn.Linear(n_dense, cfg.hidden) if n_dense else None
        if cfg.arch == "text":
            self.bag = nn.EmbeddingBag(n_tokens, cfg.token_dim, mode="mean", padding_idx=0)
            self.tok = nn.Linear(cfg.token_dim, cfg.hidden)
        else:
            self.bag = None
        if self.dense is None and self.bag is None:
            raise ValueError("model has no input: no dense features and arch is not 'text'")
        self.trunk = nn.Sequential(
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden // 2),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
        )
        self.heads = nn.Linear(cfg.hidden // 2, n_out)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h = 0
        if self.dense is not None:
            h = self.dense(self.in_drop(x))
        if self.bag is not None:
            h = h + self.tok(self.bag(tokens))
        return self.heads(self.trunk(h))


def rank_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise logistic ranking loss, averaged over ordered pairs with distinct targets.

    Parameters
    ----------
    pred, y : Tensor, shape (b,)
    """
    dp = pred[:, None] - pred[None, :]
    dy = y[:, None] - y[None, :]
    mask = dy > 0
    if not bool(mask.any()):
        return pred.sum() * 0.0
    return nn.functional.softplus(-dp[mask]).mean()


def _loss(cfg: NetConfig, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    total = 0.0
    for k in range(y.shape[1]):
        w = cfg.task_weights[k] if k < len(cfg.task_weights) else 1.0
        term = nn.functional.mse_loss(out[:, k], y[:, k])
        if cfg.rank_weight:
            term = term + cfg.rank_weight * rank_loss(out[:, k], y[:, k])
        total = total + w * term
    return total


def _spearman_cols(p: np.ndarray, y: np.ndarray) -> float:
    """Mean over targets of the Spearman correlation (no ties correction needed for early
    stopping)."""
    from scipy.stats import rankdata

    vals = []
    for k in range(y.shape[1]):
        a, b = rankdata(p[:, k]), rankdata(y[:, k])
        vals.append(np.corrcoef(a, b)[0, 1])
    return float(np.mean(vals))


def _tensors(x, tokens, device):
    return (
        torch.as_tensor(x, dtype=torch.float32, device=device),
        torch.as_tensor(tokens, dtype=torch.int64, device=device),
    )


def _predict(
    model: MemNet, x: torch.Tensor, tok: torch.Tensor, device: torch.device, chunk: int = 4096
) -> np.ndarray:
    model.eval()
    outs = []
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"),
    ):
        for i in range(0, len(x), chunk):
            outs.append(model(x[i : i + chunk], tok[i : i + chunk]).float().cpu().numpy())
    return (
        np.concatenate(outs).astype(np.float64) if outs else np.zeros((0, model.heads.out_features))
    )


def train_member(
    cfg: NetConfig,
    x_tr,
    tok_tr,
    y_tr,
    x_va,
    tok_va,
    y_va,
    *,
    n_tokens: int,
    seed: int,
    device: torch.device,
    on_epoch=None,
) -> tuple[dict, int]:
    """Train one member; keep the weights of the epoch that ranks the validation rows best.

    Returns
    -------
    state : dict
        The best epoch's ``state_dict`` (CPU tensors).
    epoch : int
        That epoch (1-based).
    """
    set_deterministic()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = MemNet(cfg, x_tr.shape[1], n_tokens, y_tr.shape[1]).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs)
    xt, tt = _tensors(x_tr, tok_tr, device)
    yt = torch.as_tensor(y_tr, dtype=torch.float32, device=device)
    xv, tv = _tensors(x_va, tok_va, device)
    best, best_state, best_epoch = -np.inf, None, 0
    n = len(xt)
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            if len(idx) < 2:
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model(xt[idx], tt[idx])
            loss = _loss(cfg, out.float(), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        score = _spearman_cols(_predict(model, xv, tv, device), y_va)
        if not np.isfinite(score):  # constant predictions have no rank order
            score = -np.inf
        if best_state is None or score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch()
    return best_state, best_epoch


def predict_members(
    cfg: NetConfig,
    states: list[dict],
    x,
    tokens,
    *,
    n_dense: int,
    n_tokens: int,
    n_out: int,
    device: torch.device,
) -> np.ndarray:
    """Mean prediction of the ensemble members, shape (n, n_out), standardised units."""
    xt, tt = _tensors(x, tokens, device)
    preds = []
    for st in states:
        model = MemNet(cfg, n_dense, n_tokens, n_out).to(device)
        model.load_state_dict(st)
        preds.append(_predict(model, xt, tt, device))
    return np.mean(preds, axis=0)


def config_dict(cfg: NetConfig) -> dict:
    d = asdict(cfg)
    d["task_weights"] = list(cfg.task_weights)
    return d


def config_from_dict(d: dict) -> NetConfig:
    d = dict(d)
    d["task_weights"] = tuple(d.get("task_weights", (1.0, 1.0)))
    return NetConfig(**d)

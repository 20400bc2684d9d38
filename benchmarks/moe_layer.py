"""Forward + backward time of balance-lab's MoE layer against what the same FLOPs cost elsewhere.

For each shape (tokens T, d_model D, routed experts E, top-K, expert hidden H), side by side in
one process, median of REPEATS timed iterations after WARMUP:
  moe     the project's MoELayer (router + sort-based dispatch + experts; no shared expert)
  dense   a dense SwiGLU FFN of the same active FLOPs (hidden K*H)
  matmul  one plain linear layer of the same FLOPs (the practical limit of this machine)
  naive   a per-expert mask implementation (torch.where over all tokens per expert, as many
          reference implementations do)
  cap     the MoELayer with an expert capacity that drops nothing (capacity_factor = E/K: the same
          FLOPs), so cap/moe is what the capacity machinery itself costs (target: <= 1.05)
GFLOP/s counts the routed experts' FLOPs (3 projections, x3 for forward + backward).

    .venv/bin/python benchmarks/moe_layer.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from balance_lab.balancing import build_balancer
from balance_lab.model.args import RoutingArgs
from balance_lab.model.experts import DenseFFN
from balance_lab.model.moe import MoELayer

SHAPES = [  # T, D, E, K, H
    (4096, 256, 8, 2, 512),
    (4096, 512, 16, 4, 256),
    (8192, 512, 64, 8, 128),  # fine-grained
    (4096, 1024, 16, 4, 512),
    (16384, 1024, 64, 6, 256),  # the paper's 1B routing (64 experts, 6 active), narrower
]
QUICK = SHAPES[:2]


def moe_flops(T: int, D: int, K: int, H: int) -> float:
    return 3 * (2 * T * K * D * H) * 3  # 3 projections; backward = 2x forward


class NaiveMoE(nn.Module):
    """The mask-per-expert reference: every expert scans all T x K routing choices."""

    def __init__(self, layer: MoELayer):
        super().__init__()
        self.layer = layer

    def forward(self, x_BSD: torch.Tensor) -> torch.Tensor:
        B, S, D = x_BSD.shape
        x_TD = x_BSD.reshape(B * S, D)
        routing = self.layer.router(x_TD, batch_size=B)
        experts = self.layer.experts
        y_TD = torch.zeros_like(x_TD)
        for e in range(experts.w_down_EHD.shape[0]):
            token_idx, k_idx = torch.where(routing.experts_TK == e)  # a mask over all tokens
            x_nD = x_TD[token_idx]
            gate_nH, up_nH = (x_nD @ experts.w_gate_up_ED2H[e]).chunk(2, dim=-1)
            h_nH = F.silu(gate_nH) * up_nH
            y_TD.index_add_(0, token_idx, (h_nH @ experts.w_down_EHD[e]) * routing.gates_TK[token_idx, k_idx, None])
        return y_TD.view(B, S, D)


def moe_layer(D: int, E: int, K: int, H: int, routing: RoutingArgs = RoutingArgs()) -> MoELayer:
    torch.manual_seed(0)
    balancer = build_balancer({"name": "loss_free", "update_rate": 1e-3}, E)
    layer = MoELayer(D, E, 0, K, H, "sigmoid", True, balancer, routing)
    for p in layer.experts.parameters():
        nn.init.normal_(p, std=0.02)
    return layer


def build(T: int, D: int, E: int, K: int, H: int) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    layer = moe_layer(D, E, K, H)
    x = torch.randn(1, T, D)
    return {
        "moe": (layer, x),
        "dense": (DenseFFN(D, K * H), x),
        "matmul": (nn.Linear(D, 3 * K * H, bias=False), x),  # 2*T*D*(3KH) per forward = the MoE's FLOPs
        "naive": (NaiveMoE(layer), x),
        "cap": (moe_layer(D, E, K, H, RoutingArgs(capacity_factor=E / K)), x),  # capacity T slots: none dropped
    }


def step(module: nn.Module, x: torch.Tensor) -> None:
    x = x.detach().requires_grad_(True)
    out = module(x)
    out = out.y_BSD if hasattr(out, "y_BSD") else out
    out.float().pow(2).mean().backward()
    module.zero_grad(set_to_none=True)


def time_it(module: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step(module, x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(module, x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the two smallest shapes, fewer repeats")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warmup, repeats = (1, 3) if args.quick else (2, 5)
    print(
        f"MoE layer forward+backward, {torch.get_num_threads()} threads, median of {repeats}, fp32 on "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'} (this script runs on the CPU)\n"
    )
    header = (
        f"{'T':>6} {'D':>5} {'E':>3} {'K':>2} {'H':>4} | {'moe ms':>8} {'dense ms':>8} {'matmul ms':>9} "
        f"{'naive ms':>8} {'cap ms':>7} | {'moe GF/s':>8} {'matmul GF/s':>11} | {'moe/matmul':>10} {'moe/dense':>9} "
        f"{'naive/moe':>9} {'cap/moe':>7}"
    )
    print(header)
    print("-" * len(header))
    for T, D, E, K, H in QUICK if args.quick else SHAPES:
        modules = build(T, D, E, K, H)
        ms = {name: 1e3 * time_it(m, x, warmup, repeats) for name, (m, x) in modules.items()}
        flops = moe_flops(T, D, K, H)
        gf = {name: flops / (t / 1e3) / 1e9 for name, t in ms.items()}
        print(
            f"{T:>6} {D:>5} {E:>3} {K:>2} {H:>4} | {ms['moe']:>8.1f} {ms['dense']:>8.1f} {ms['matmul']:>9.1f} "
            f"{ms['naive']:>8.1f} {ms['cap']:>7.1f} | {gf['moe']:>8.1f} {gf['matmul']:>11.1f} | "
            f"{gf['moe'] / gf['matmul']:>10.2f} {ms['dense'] / ms['moe']:>9.2f} {ms['naive'] / ms['moe']:>9.2f} "
            f"{ms['cap'] / ms['moe']:>7.2f}"
        )
    print(
        "\nmoe/matmul: achieved fraction of the plain matmul's GFLOP/s (target >= 0.7 at D >= 512); "
        "moe/dense: dense time / MoE time (1 = as fast as dense); naive/moe: speed-up over the mask loop;\n"
        "cap/moe: time with an expert capacity that drops nothing / time without (the cost of counting and sorting)."
    )


if __name__ == "__main__":
    main()

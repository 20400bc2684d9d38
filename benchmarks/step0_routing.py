"""Routing at initialisation: MaxVio_batch of the first training batch through a fresh model.

What a run records as `init/maxvio_batch` (per layer: `init/maxvio_batch/layer_<i>`), measured here
for several setups side by side without training: compose the config, build the model and the
datamodule, one forward of the first training batch in train mode (no gradient), MaxVio per MoE
layer of the loads, and the "common direction" of the first MoE layer's router input (mean cosine
between each token's input and the mean input: 1 = every token the same, 0 = nothing shared).

    python benchmarks/step0_routing.py                      # the default table (tiny, small, base)
    python benchmarks/step0_routing.py --seeds 0 1 2 --setups "tiny bytes=model=tiny data.tokenizer=bytes"

A setup is "NAME=OVERRIDES" (space-separated Hydra overrides). The BPE setups train the built-in
corpus's tokenizer on first use (cached, see data/builtin_bpe.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

BPE8K = "data.tokenizer=bpe model.vocab_size=8192"
DEFAULT_SETUPS = [
    "tiny bytes=model=tiny data.tokenizer=bytes model.vocab_size=256",
    f"tiny bpe8k={BPE8K} model=tiny",
    f"tiny bpe8k init 0.006=model=tiny {BPE8K} model.init_std=0.006",
    "small bytes=model=small data.tokenizer=bytes model.vocab_size=256",
    f"small bpe8k=model=small {BPE8K}",
    f"small bpe8k init 0.006=model=small {BPE8K} model.init_std=0.006",
    f"base bpe8k=model=base {BPE8K} data.batch_size=4",
]


def measure(overrides: list[str], seed: int) -> tuple[list[float], float]:
    import torch

    from balance_lab.config.compose import compose_config
    from balance_lab.metrics import maxvio_per_layer
    from balance_lab.training.build import build_datamodule, build_model

    cfg = compose_config([*overrides, f"seed={seed}", "trainer.max_steps=1"])
    torch.manual_seed(seed)
    model = build_model(cfg)
    datamodule = build_datamodule(cfg)
    batch = next(iter(datamodule.train_dataloader()))
    captured = {}
    router = model.moe_layers[0].router
    hook = router.register_forward_pre_hook(lambda module, args: captured.setdefault("x", args[0].detach()))
    model.train()
    with torch.no_grad():
        out = model(batch["tokens"][:, :-1])
    hook.remove()
    x_TD = captured["x"].reshape(-1, captured["x"].shape[-1]).double()
    mean_D = x_TD.mean(0)
    common = float(torch.nn.functional.cosine_similarity(x_TD, mean_D.expand_as(x_TD), dim=1).mean())
    return maxvio_per_layer(out.counts_LBE.sum(1)).tolist(), common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--setups", nargs="+", default=DEFAULT_SETUPS, help='"NAME=OVERRIDES" each')
    args = parser.parse_args()
    print(
        f"| setup | step-0 MaxVio_batch (layer mean, seeds {', '.join(map(str, args.seeds))}) | mean | "
        "per layer (seed 0) | common direction |"
    )
    print("|---|---|---:|---|---:|")
    for setup in args.setups:
        name, overrides = setup.split("=", 1)
        started = time.perf_counter()
        results = [measure(overrides.split(), seed) for seed in args.seeds]
        means = [statistics.fmean(layers) for layers, _ in results]
        common = statistics.fmean(c for _, c in results)
        print(
            f"| {name} | {', '.join(f'{m:.2f}' for m in means)} | {statistics.fmean(means):.2f} | "
            f"{', '.join(f'{v:.2f}' for v in results[0][0])} | {common:.2f} |",
            flush=True,
        )
        print(f"<!-- {name}: {time.perf_counter() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()

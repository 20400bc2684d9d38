"""The LightningModule: LM loss + balancing loss, step-end balancing updates, and the metrics.

Counting happens here, from the counts the model returns, and only in training steps: a
validation forward never touches step counters or biases. Per optimizer step, the counts of all
micro-batches are summed, all-reduced once across data-parallel ranks, handed to every layer's
balancer (loss-free bias update) and turned into `train/maxvio_batch`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import lightning as L
import torch
import torch.nn.functional as F

from balance_lab.diagnostics.args import DiagnosticsArgs
from balance_lab.diagnostics.expert_parallel import ep_degrees
from balance_lab.diagnostics.load_history import LoadHistory
from balance_lab.diagnostics.trace import RoutingTrace
from balance_lab.distributed import all_reduce_sum
from balance_lab.metrics import LOAD_STAT_NAMES, load_statistics, maxvio_per_layer, top_expert_frequency
from balance_lab.model.lm import MoELM
from balance_lab.training.loss_watch import LossWatch


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear warm-up, then cosine decay to min_lr_ratio at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _nll(logits_BSV: torch.Tensor, targets_BS: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in fp32 or wider (bf16 logits lose the small probabilities)."""
    logits = logits_BSV.flatten(0, 1)
    return F.cross_entropy(
        logits.to(torch.promote_types(logits.dtype, torch.float32)), targets_BS.flatten(), reduction=reduction
    )


class MoELMModule(L.LightningModule):
    def __init__(
        self,
        model: MoELM,
        optim: Mapping[str, Any],
        total_steps: int,
        domains: list[str],
        bytes_per_token: float = 1.0,
        diagnostics: DiagnosticsArgs = DiagnosticsArgs(),
    ):
        super().__init__()
        self.model = model
        self.optim, self.total_steps = dict(optim), total_steps
        self.domains, self.bytes_per_token = list(domains), bytes_per_token
        self.layer_ids = model.args.moe_layer_ids
        n_layers, n_experts = model.args.n_moe_layers, model.args.n_routed_experts
        # Routed slots per layer and expert, summed over the micro-batches of the current optimizer step.
        self.register_buffer("step_counts_LE", torch.zeros(n_layers, n_experts, dtype=torch.int64))
        self._micro_vio: list[torch.Tensor] = []  # MaxVio of each micro-batch of the step on this rank
        self._micro_losses: list[torch.Tensor] = []  # (loss, lm_loss, aux_loss) of each micro-batch of the step
        self.loss_watch = LossWatch()  # NaN/inf losses stop the run, one step late but without a sync per step
        self._step_metrics: tuple[torch.Tensor, ...] | None = None  # the last optimizer step's, until logged
        # Sums over every optimizer step so far of (MaxVio batch, MaxVio compute-batch), and the step count:
        # the papers' MaxVio_batch is averaged over training steps, not sampled every log_every_n_steps.
        self.register_buffer("vio_sums_2", torch.zeros(2, dtype=torch.float64))
        self.register_buffer("vio_steps", torch.zeros((), dtype=torch.int64))
        # Slots dropped at expert capacity: (dropped, routed) this step; the sum of the steps' fractions so far.
        self.register_buffer("step_dropped_2", torch.zeros(2, dtype=torch.int64), persistent=False)
        self.register_buffer("dropped_frac_sum", torch.zeros((), dtype=torch.float64))
        self.val_loads: dict[str, Any] | None = None  # filled by each validation epoch
        # What the run records about its routing (diagnostics/): every step's loads, a trace on request.
        d = diagnostics
        self.load_history = LoadHistory(self.layer_ids, n_experts, d.load_history_rows) if d.load_history else None
        self.trace = None
        if d.trace_every:
            self.trace = RoutingTrace(self.layer_ids, self.domains, d.trace_every, d.trace_tokens, d.trace_max_rows)
        self._val_traced = 0  # tokens of the current validation traced so far
        self.ep_degrees = list(diagnostics.ep_degrees or ep_degrees(n_experts))  # of train/straggler_ep<P>
        self.val_step: int | None = None  # global step of the last validation

    # ---- training -------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs_BS, targets_BS = batch["tokens"][:, :-1], batch["tokens"][:, 1:]
        step = self.global_step + 1  # the optimizer step this micro-batch belongs to (1-based, as the metrics)
        traced = self.trace is not None and not self._micro_losses and self.trace.wants_step(step)
        out = self.model(inputs_BS, trace=True) if traced else self.model(inputs_BS)
        if traced:
            self.trace.add("train", step, inputs_BS, batch["domain"], out.experts_LTK, out.gates_LTK)
        lm_loss = _nll(out.logits_BSV, targets_BS)
        loss = lm_loss + out.aux_loss
        self._micro_losses.append(torch.stack([loss, lm_loss, out.aux_loss]).detach())
        counts_LE = out.counts_LBE.sum(dim=1)
        self.step_counts_LE += counts_LE
        self.step_dropped_2 += torch.stack([out.dropped_L.sum(), counts_LE.sum()])
        # one micro-batch on one rank: the load an expert-parallel group actually computes
        self._micro_vio.append(maxvio_per_layer(counts_LE).mean())
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        losses_M3 = torch.stack(self._micro_losses)
        self._micro_losses.clear()
        self.loss_watch.record(self.global_step, losses_M3)  # raises for the previous step's NaN/inf
        # Every micro-batch of this step has run forward and backward: the step's loads are complete.
        # One all-reduce for the loads and the dropped slots of every rank.
        reduced = all_reduce_sum(torch.cat([self.step_counts_LE.flatten(), self.step_dropped_2]))
        counts_LE, dropped_2 = reduced[:-2].view_as(self.step_counts_LE), reduced[-2:]
        for layer, counts_E in zip(self.model.moe_layers, counts_LE):
            layer.balancer.step_end(counts_E)
        if self.load_history is not None:  # kept on the device until a logged step's transfer
            self.load_history.record(self.global_step + 1, counts_LE)
        vio_L = maxvio_per_layer(counts_LE)
        compute_vio = torch.stack(self._micro_vio).mean()
        self.vio_sums_2 += torch.stack([vio_L.mean(), compute_vio])
        self.vio_steps += 1
        dropped_frac = dropped_2[0].double() / dropped_2[1].clamp_min(1)
        self.dropped_frac_sum += dropped_frac
        self.step_counts_LE.zero_()
        self.step_dropped_2.zero_()
        self._micro_vio.clear()
        # device tensors, logged below; the step's loads for the load statistics (computed only on logged steps)
        self._step_metrics = (losses_M3.mean(dim=0), vio_L, compute_vio, dropped_frac, counts_LE.clone())

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """The step's metrics, on the steps Lightning writes to the logger only: each self.log costs
        about half a millisecond of Python, which a GPU step of tens of milliseconds cannot hide."""
        if self._step_metrics is None:  # inside a gradient-accumulation window
            return
        losses_3, vio_L, compute_vio, dropped_frac, counts_LE = self._step_metrics
        self._step_metrics = None
        if self.global_step == 1:  # the first step's loads came from the initial weights and zero biases
            self._log_initial_routing(vio_L)
        every = self.trainer.log_every_n_steps
        last = self.trainer.max_steps > 0 and self.global_step >= self.trainer.max_steps
        if not every or (self.global_step % every and not self.trainer.should_stop and not last):
            if self.load_history is not None and len(self.load_history.pending) >= 256:  # no logging for long
                self.load_history.flush()
            return
        ranges = [r for layer in self.model.moe_layers if (r := layer.balancer.bias_range()) is not None]
        degrees = self.ep_degrees
        logged = torch.cat(
            [
                losses_3.double(),
                vio_L,
                compute_vio.view(1),
                dropped_frac.view(1),
                load_statistics(counts_LE, degrees).to(vio_L),
                torch.stack(ranges).to(vio_L) if ranges else vio_L[:0],
            ]
        )
        values = self._to_host(logged)  # one host sync, which also brings the load history's pending steps
        (loss, lm_loss, aux_loss), rest = values[:3], values[3:]
        vio, (compute, dropped), rest = rest[: len(vio_L)], rest[len(vio_L) : len(vio_L) + 2], rest[len(vio_L) + 2 :]
        names = [*LOAD_STAT_NAMES, *(f"straggler_ep{p}" for p in degrees)]
        load_stats, bias = dict(zip(names, rest[: len(names)])), rest[len(names) :]
        self.log_dict({"train/loss": loss, "train/maxvio_batch": sum(vio) / len(vio)}, prog_bar=True)
        self.log_dict(
            {"train/lm_loss": lm_loss, "train/aux_loss": aux_loss, "train/maxvio_compute_batch": compute}
            | {f"train/maxvio_batch/layer_{i}": v for i, v in zip(self.layer_ids, vio)}
            | ({"train/bias_range": sum(bias) / len(bias)} if bias else {})
            | ({"train/dropped_frac": dropped} if self.model.routing.capacity_factor is not None else {})
            | {f"train/{name}": value for name, value in load_stats.items()}
        )

    def _to_host(self, logged: torch.Tensor) -> list[float]:
        """`logged` as floats, moved in one transfer with the load history's pending step counts
        (exact in float64: counts below 2**53)."""
        steps, pending_NLE = self.load_history.take_pending() if self.load_history is not None else ([], None)
        if pending_NLE is None:
            return logged.tolist()
        host = torch.cat([logged, pending_NLE.flatten().to(logged.dtype)]).cpu()
        self.load_history.add(steps, host[len(logged) :].view(pending_NLE.shape).long().numpy())
        return host[: len(logged)].tolist()

    def _log_initial_routing(self, vio_L: torch.Tensor) -> None:
        """`init/maxvio_batch` (+ per layer) at step 0, written once straight to the logger: through
        self.log, Lightning would hold it until the next logging step and repeat it at every later one."""
        if self.logger is None:
            return
        vio = vio_L.tolist()
        self.logger.log_metrics(
            {"init/maxvio_batch": sum(vio) / len(vio)}
            | {f"init/maxvio_batch/layer_{i}": v for i, v in zip(self.layer_ids, vio)},
            step=0,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.load_history is not None:
            checkpoint["load_history"] = self.load_history.state_dict()
        if self.trace is not None:
            checkpoint["routing_trace"] = self.trace.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint written before a counter existed resumes with it at zero (its run had no capacity).
        state = checkpoint["state_dict"]
        state.setdefault("dropped_frac_sum", torch.zeros((), dtype=torch.float64))
        # Older checkpoints have no history: the resumed run's starts at the resumed step.
        if self.load_history is not None and "load_history" in checkpoint:
            self.load_history.load_state_dict(checkpoint["load_history"])
        if self.trace is not None and "routing_trace" in checkpoint:
            self.trace.load_state_dict(checkpoint["routing_trace"])

    def on_train_end(self) -> None:
        self.loss_watch.check_now()

    def configure_optimizers(self):
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        # On a GPU one fused kernel updates every parameter (the default launches several per group:
        # ~1B parameters per step at paper_1b); the CPU keeps PyTorch's default implementation. Not
        # with a gradient scaler (fp16: configure_gradient_clipping would clip still-scaled gradients)
        # nor under FSDP (sharded gradients need FSDP's own clipping, which Lightning does).
        trainer = self._trainer
        scaler = getattr(trainer.precision_plugin, "scaler", None) if trainer is not None else None
        sharded = trainer is not None and "FSDP" in type(trainer.strategy).__name__
        fused = True if decay[0].is_cuda and scaler is None and not sharded else None
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.optim["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.optim["lr"],
            betas=tuple(self.optim["betas"]),
            eps=self.optim.get("eps", 1e-8),
            fused=fused,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: cosine_with_warmup(
                step, self.optim["warmup_steps"], self.total_steps, self.optim["min_lr_ratio"]
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning refuses to clip for a fused optimizer under mixed precision, in case a scaler left
        the gradients scaled; a fused optimizer is only chosen without a scaler (configure_optimizers)."""
        if not gradient_clip_val or not getattr(optimizer, "_step_supports_amp_scaling", False):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    # ---- validation -----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.loss_watch.check_now()  # never validate (nor checkpoint, nor finish) weights a NaN step wrote
        n_domains, (n_layers, n_experts) = len(self.domains), self.step_counts_LE.shape
        self._val_nll = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_tokens_D = torch.zeros(n_domains, dtype=torch.int64, device=self.device)
        self._val_counts_DLE = torch.zeros(n_domains, n_layers, n_experts, dtype=torch.int64, device=self.device)
        self._val_dropped = torch.zeros((), dtype=torch.int64, device=self.device)
        self._val_traced = 0
        if self.load_history is not None:  # validation waits for the device anyway
            self.load_history.flush()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        inputs_BS, targets_BS = batch["tokens"][:, :-1], batch["tokens"][:, 1:]
        domain_B = batch["domain"]
        traced = self.trace is not None and self.trace.wants_validation(self._val_traced)
        out = self.model(inputs_BS, trace=True) if traced else self.model(inputs_BS)
        if traced:  # every stride-th sequence of the validation set, which holds its domains in turn
            B, S = inputs_BS.shape
            batches = sum(self.trainer.num_val_batches) if self._trainer is not None else 1
            batches = int(batches) if math.isfinite(batches) and batches > 0 else 1
            stride = max(1, batches * B // -(-self.trace.tokens // S))
            limit = self.trace.tokens - self._val_traced
            routing = (out.experts_LTK, out.gates_LTK)
            self._val_traced += self.trace.add(
                "val", self.global_step, inputs_BS, domain_B, *routing, limit, batch_idx * B, stride
            )
        nll = _nll(out.logits_BSV, targets_BS, reduction="sum")
        self._val_nll += nll.double()
        self._val_tokens_D.index_add_(0, domain_B, torch.full_like(domain_B, targets_BS.shape[1]))
        self._val_counts_DLE.index_add_(0, domain_B, out.counts_LBE.transpose(0, 1))
        self._val_dropped += out.dropped_L.sum()

    def on_validation_epoch_end(self) -> None:
        reduce = lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")  # noqa: E731
        nll, tokens_D, counts_DLE = reduce(self._val_nll), reduce(self._val_tokens_D), reduce(self._val_counts_DLE)
        dropped = int(reduce(self._val_dropped))
        loss = float(nll) / max(int(tokens_D.sum()), 1)
        counts_LE = counts_DLE.sum(dim=0)
        vio_L = maxvio_per_layer(counts_LE)
        metrics = {
            "val/loss": loss,
            "val/ppl": math.exp(min(loss, 50.0)),
            "val/bpb": loss / math.log(2) / self.bytes_per_token,
            "val/maxvio_global": float(vio_L.mean()),
            "val/dead_experts": float((counts_LE == 0).sum()),  # (layer, expert) pairs no token reached
            "val/dropped_frac": dropped / max(int(counts_LE.sum()), 1),
        }  # slots dropped at capacity (0 without)
        metrics |= {f"val/maxvio_global/layer_{i}": float(v) for i, v in zip(self.layer_ids, vio_L)}
        for d, name in enumerate(self.domains):
            freq_L = top_expert_frequency(counts_DLE[d], int(tokens_D[d]))
            metrics[f"val/top_expert_freq/{name}"] = float(freq_L.mean())
        if self.vio_steps > 0:  # averages over all training steps so far (the final validation: the whole run)
            mean_2 = (self.vio_sums_2 / self.vio_steps).tolist()
            metrics |= {
                "train/maxvio_batch_mean": mean_2[0],
                "train/maxvio_compute_batch_mean": mean_2[1],
                "train/dropped_frac_mean": float(self.dropped_frac_sum / self.vio_steps),
            }
        self.log_dict(metrics, sync_dist=False)
        self.val_step = self.global_step
        self.val_loads = {
            "layers": counts_LE.tolist(),
            "layer_ids": self.layer_ids,
            "domains": {name: counts_DLE[d].tolist() for d, name in enumerate(self.domains)},
            "tokens": {name: int(tokens_D[d]) for d, name in enumerate(self.domains)},
        }

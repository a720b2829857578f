"""`regression`: channel pruning by LASSO channel selection and least-squares reconstruction.

He, Zhang and Sun, "Channel Pruning for Accelerating Very Deep Neural Networks", ICCV 2017.

For each conv pair producer P -> consumer L (P's output channels reach L only through
BatchNorm, activations and pooling), the method samples positions of L's input patches X and of
L's output Y on training data, then (1) selects the input channels of L to keep by LASSO:
beta = argmin ||Y - sum_c beta_c Z_c||^2 + lambda ||beta||_1, with Z_c = X_c * W[:, c] the
contribution of channel c, following the LASSO path (scikit-learn's LARS, in Gram form) until
the kept count of betas is non-zero; (2) refits L's weights (and bias) on the kept channels by
least squares and zeroes the dropped columns; (3) zeroes P's dropped output channels exactly
(weights, bias, BatchNorm scale, shift and mean), so they output 0 and the `channels` exporter
removes them. Pairs go front to back; as in the paper, each consumer's target is its output in
the *original* model while its input comes from the model pruned so far, so errors do not pile
up. `sparsity` is the fraction of each producer's output channels removed (the scope is always
per pair). Anything not clearly such a chain (residual adds, concatenations, grouped convs, a
producer feeding several layers, a conv into a Linear) is left dense, with the reason recorded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import SparsebenchError
from ..base import PruningMethod, dense_layers, finetune, register_method
from ..channel_graph import (
    OPTYPE,
    ROOT_TYPES,
    build_graph,
    prunable_groups,
    trace_layers,
)
from ..channel_scoring import _zero_group_
from ..training import progress_bar

CHUNK = 64  # inputs per forward pass while sampling
RIDGES = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # least-squares ridges tried, relative to the
# mean diagonal of the Gram matrix; the one reconstructing held-out images best is kept
HOLDOUT = 5  # every HOLDOUT-th sampled image validates the ridge
# what may sit between a producer and its consumer (`unsafe_reason` checks the ops act per channel)
_PASS_THROUGH = {OPTYPE.BN, OPTYPE.PRELU, OPTYPE.ELEMENTWISE}


@dataclass
class Pair:
    """A producer conv whose output channels feed exactly one consumer conv, channel by channel."""

    producer: str
    consumer: str
    order: int  # the consumer's position in the forward pass


class _Stop(Exception):
    """Raised from a hook once the wanted activations are captured (skips the rest)."""


def _is_out(dg, item) -> bool:
    return dg.is_out_channel_pruning_fn(item.dep.handler)


def _conv_reason(conv: nn.Module, role: str, name: str) -> str:
    """Why `conv` cannot be this method's producer or consumer; "" when it can."""
    if not isinstance(conv, nn.Conv2d):
        return f"{role} {name} is a {type(conv).__name__}, not a Conv2d"
    if conv.groups != 1:
        return f"{role} {name} is a grouped conv"
    if role == "consumer" and conv.padding_mode != "zeros":
        return f"consumer {name} pads with '{conv.padding_mode}', not zeros"
    if role == "consumer" and _padding(conv) is None:
        return f"consumer {name} has asymmetric 'same' padding"
    return ""


def _padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """The conv's zero padding as two ints (None for asymmetric 'same' padding)."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        return None if any(t % 2 for t in total) else (total[0] // 2, total[1] // 2)
    return tuple(conv.padding)


def pair_of(dg, group, root: str, unsafe: str, names, trace) -> tuple[str, str]:
    """(consumer name, "") when the group is a clean producer -> consumer chain, else ("", why)."""
    producer = group[0].dep.target.module
    reason = unsafe or _conv_reason(producer, "producer", root)
    if reason:
        return "", reason
    outs = [i.dep.target.module for i in group if _is_out(dg, i)]
    ins = [i for i in group if not _is_out(dg, i) and isinstance(i.dep.target.module, ROOT_TYPES)]
    if any(isinstance(m, ROOT_TYPES) and m is not producer for m in outs):
        return "", "its channels are shared with other layers' outputs (residual add or concat)"
    if len(ins) != 1:
        return "", f"its channels feed {len(ins)} layers, not one"
    name = names[ins[0].dep.target.module]
    reason = _conv_reason(ins[0].dep.target.module, "consumer", name) or _chain_reason(
        group, producer, ins[0], name
    )
    if not reason and (trace.calls[producer] != 1 or trace.calls[ins[0].dep.target.module] != 1):
        reason = "the producer or the consumer runs more than once per forward pass"
    return ("", reason) if reason else (name, "")


def _chain_reason(group, producer: nn.Module, consumer_item, name: str) -> str:
    """Why the channels do not go from producer to consumer one to one through channel-wise
    ops only (BatchNorm, activations, pooling); "" when they do."""
    consumer = consumer_item.dep.target.module
    for item in group:
        node = item.dep.target
        if node.type not in _PASS_THROUGH and not isinstance(node.module, ROOT_TYPES):
            return f"its channels pass through {node.type.name.lower()} on the way to {name}"
    if getattr(consumer, "in_channels", None) != producer.out_channels or list(
        consumer_item.idxs
    ) != list(consumer_item.root_idxs):
        return f"consumer {name} does not take the producer's channels one to one"
    return ""


def find_pairs(model: nn.Module, example: torch.Tensor):
    """The dependency graph, the prunable pairs front to back and {layer: why skipped}."""
    trace = trace_layers(model, example)
    final = trace.order[-1] if trace.order else None
    names = {m: n for n, m in model.named_modules()}
    dg = build_graph(model, example)
    order = {m: i for i, m in enumerate(trace.order)}
    pairs, skipped = [], {}
    if final is not None:
        skipped[names[final]] = "final layer: its outputs are the model's outputs"
    for root, group, unsafe in prunable_groups(dg, model, final):
        consumer, reason = pair_of(dg, group, root, unsafe, names, trace)
        if reason:
            skipped[root] = reason
        else:
            pairs.append(Pair(root, consumer, order[model.get_submodule(consumer)]))
    return dg, sorted(pairs, key=lambda p: p.order), skipped


def _positions(count: int, length: int, per_image: int, seed: int) -> torch.Tensor:
    """(count, min(per_image, length)) distinct output positions per image, drawn under `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, length, generator=generator).argsort(1)[:, :per_image]


def _gather(flat: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """(batch, features, L) at positions `where` (batch, p) -> (batch * p, features), float64."""
    index = where.to(flat.device)[:, None, :].expand(-1, flat.shape[1], -1)
    return flat.gather(2, index).transpose(1, 2).reshape(-1, flat.shape[1]).double()


class Sampler:
    """Runs the sampled inputs through a model and keeps consumers' inputs or outputs at the
    same sampled positions (`positions` per image, drawn per consumer under the seed)."""

    def __init__(self, inputs: torch.Tensor, positions: int, seed: int):
        self.inputs, self.per_image, self.seed = inputs, positions, seed

    def _where(self, order: int, length: int, start: int, stop: int) -> torch.Tensor:
        return _positions(len(self.inputs), length, self.per_image, self.seed + order)[start:stop]

    def _run(self, model: nn.Module, hooks) -> None:
        device = next(model.parameters()).device
        try:
            with torch.no_grad():
                for start in range(0, len(self.inputs), CHUNK):
                    self.span = (start, min(start + CHUNK, len(self.inputs)))
                    try:
                        model(self.inputs[start : start + CHUNK].to(device))
                    except _Stop:
                        pass
        finally:
            for handle in hooks:
                handle.remove()

    def outputs(self, model: nn.Module, consumers: dict[str, int]) -> dict[str, torch.Tensor]:
        """Each consumer's output (samples x out channels) in `model`, by name."""
        found: dict[str, list[torch.Tensor]] = {name: [] for name in consumers}

        def hook(name):
            def record(_module, _args, out):
                where = self._where(consumers[name], out[0, 0].numel(), *self.span)
                found[name].append(_gather(out.flatten(2), where))

            return record

        self._run(model, [model.get_submodule(name).register_forward_hook(hook(name))
                          for name in consumers])  # fmt: skip
        return {name: torch.cat(parts) for name, parts in found.items()}

    def inputs_of(self, model: nn.Module, name: str, order: int) -> torch.Tensor:
        """The consumer's input patches (samples x in channels * kh * kw) in `model`."""
        conv, parts = model.get_submodule(name), []

        def record(_module, args):
            x = args[0]
            out_hw = _out_hw(conv, x.shape[-2:])
            where = self._where(order, out_hw[0] * out_hw[1], *self.span)
            parts.append(patches_at(conv, x, where, out_hw[1]))
            raise _Stop

        self._run(model, [conv.register_forward_pre_hook(record)])
        return torch.cat(parts)


def _out_hw(conv: nn.Conv2d, hw) -> tuple[int, int]:
    """Output height and width of `conv` on an input of spatial size `hw`."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(hw, conv.kernel_size, conv.stride, _padding(conv),
                                          conv.dilation, strict=True))  # fmt: skip


def patches_at(conv: nn.Conv2d, x: torch.Tensor, where: torch.Tensor, width: int) -> torch.Tensor:
    """The input patches `conv` sees at flat output positions `where` (batch, p), as
    (batch * p, in channels * kh * kw) in float64, ordered as `F.unfold` orders them."""
    (pad_h, pad_w), (s_h, s_w), (d_h, d_w) = _padding(conv), conv.stride, conv.dilation
    x = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
    where = where.to(x.device)
    rows = (where // width * s_h)[..., None, None]
    cols = (where % width * s_w)[..., None, None]
    ky = torch.arange(conv.kernel_size[0], device=x.device)[:, None] * d_h
    kx = torch.arange(conv.kernel_size[1], device=x.device)[None, :] * d_w
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    patches = x.permute(0, 2, 3, 1)[batch, rows + ky, cols + kx]  # batch, p, kh, kw, channels
    return patches.permute(0, 1, 4, 2, 3).reshape(-1, x.shape[1] * ky.numel() * kx.numel()).double()


@dataclass
class Fit:
    """The sufficient statistics of one consumer's regression (centred when it has a bias)."""

    x: torch.Tensor  # samples x (in channels * kk), uncentred
    y: torch.Tensor  # samples x out channels: the original model's output, bias included
    x_mean: torch.Tensor
    y_mean: torch.Tensor
    gram: torch.Tensor  # X'X of the centred patches
    cross: torch.Tensor  # X'Y of the centred patches and targets


def statistics(x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor | None) -> Fit:
    """Centre X and Y when the consumer has a bias to refit (an intercept), else keep them."""
    x_mean = x.mean(0) if bias is not None else torch.zeros_like(x[0])
    y_mean = y.mean(0) if bias is not None else torch.zeros_like(y[0])
    xc, yc = x - x_mean, y - y_mean
    return Fit(x, y, x_mean, y_mean, xc.T @ xc, xc.T @ yc)


def channel_gram(fit: Fit, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Z'Z and Z'y of the LASSO over channels, Z_c = X_c * W[:, c], without forming Z:
    <Z_c, Z_d> = sum of (W'W * X'X) over the (c, d) block of kernel positions."""
    out, channels = weight.shape[:2]
    flat = weight.reshape(out, -1)
    kk = flat.shape[1] // channels
    gram = ((flat.T @ flat) * fit.gram).reshape(channels, kk, channels, kk).sum((1, 3))
    zy = (fit.cross * flat.T).reshape(channels, kk, out).sum((1, 2))
    return gram, zy


def select_channels(gram: torch.Tensor, zy: torch.Tensor, keep: int, samples: int) -> list[int]:
    """The `keep` channels of the LASSO path at its first point with `keep` non-zero betas
    (lambda lowered from where all are zero); the largest |beta| there, then energy, win."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lars_path_gram

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, _, coefs = lars_path_gram(zy.cpu().numpy(), gram.cpu().numpy(), n_samples=samples,
                                     method="lasso", max_iter=4 * gram.shape[0])  # fmt: skip
    coefs = torch.from_numpy(coefs)
    counts = (coefs != 0).sum(0)
    reached = torch.nonzero(counts >= keep)
    beta = coefs[:, int(reached[0]) if len(reached) else -1].abs()
    energy = gram.diagonal().cpu()
    order = sorted(range(len(beta)), key=lambda c: (-float(beta[c]), -float(energy[c]), c))
    return sorted(order[:keep])


def _columns(kept: list[int], kk: int) -> torch.Tensor:
    return (torch.tensor(kept)[:, None] * kk + torch.arange(kk)).flatten()


def _solve(gram: torch.Tensor, cross: torch.Tensor, ridge: torch.Tensor) -> torch.Tensor:
    """(gram + ridge I)^-1 cross, by Cholesky (least squares if that fails)."""
    a = gram + ridge * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info):
        return torch.linalg.lstsq(a, cross).solution
    return torch.cholesky_solve(cross, factor)


def choose_ridge(fit: Fit, cols: torch.Tensor, images: int, scale: torch.Tensor) -> float:
    """The ridge of `RIDGES` whose fit on the other images best reconstructs every
    HOLDOUT-th sampled image (the smallest with fewer than HOLDOUT images)."""
    if images < HOLDOUT:
        return RIDGES[0]
    rows = torch.arange(len(fit.x), device=fit.x.device)
    held = rows // (len(fit.x) // images) % HOLDOUT == HOLDOUT - 1
    xv, yv = fit.x[held][:, cols] - fit.x_mean[cols], fit.y[held] - fit.y_mean
    gram = fit.gram[cols][:, cols] - xv.T @ xv
    cross = fit.cross[cols] - xv.T @ yv
    errors = [float((yv - xv @ _solve(gram, cross, r * scale)).norm()) for r in RIDGES]
    return RIDGES[errors.index(min(errors))]


def refit(fit: Fit, cols: torch.Tensor, images: int):
    """Least-squares weights (out x len(cols)) and bias reconstructing Y from the kept columns,
    with the ridge `choose_ridge` picks; returns (weight, bias, relative ridge)."""
    gram, cross = fit.gram[cols][:, cols], fit.cross[cols]
    scale = gram.diagonal().mean().clamp_min(1e-12)
    ridge = choose_ridge(fit, cols, images, scale)
    weight = _solve(gram, cross, ridge * scale).T
    return weight, fit.y_mean - weight @ fit.x_mean[cols], ridge


def relative_error(fit: Fit, weight: torch.Tensor, bias: torch.Tensor, cols) -> float:
    """||Y - (X[:, cols] W' + b)|| / ||Y||, on the sampled positions."""
    predicted = fit.x[:, cols] @ weight.T + bias
    return float((fit.y - predicted).norm() / fit.y.norm().clamp_min(1e-30))


def prune_pair(model, dg, pair: Pair, target: torch.Tensor, sampler: Sampler,
               sparsity: float) -> dict:  # fmt: skip
    """Select, refit and zero one pair in place; returns what it did and the errors."""
    producer, consumer = model.get_submodule(pair.producer), model.get_submodule(pair.consumer)
    channels = consumer.in_channels
    keep = channels - min(round(sparsity * channels), channels - 1)
    record = {"producer": pair.producer, "consumer": pair.consumer, "kept": keep,
              "channels": channels}  # fmt: skip
    if keep == channels:
        return record
    x = sampler.inputs_of(model, pair.consumer, pair.order)
    weight = consumer.weight.detach().double()
    bias = consumer.bias.detach().double() if consumer.bias is not None else None
    fit = statistics(x, target, bias)
    gram, zy = channel_gram(fit, weight)
    kept = select_channels(gram, zy, keep, x.shape[0] * target.shape[1])
    cols = _columns(kept, weight[0, 0].numel()).to(x.device)
    new_weight, new_bias, record["ridge"] = refit(fit, cols, len(sampler.inputs))
    flat, old_bias = weight.reshape(weight.shape[0], -1), bias if bias is not None else 0.0
    all_cols = torch.arange(flat.shape[1], device=x.device)
    record["error_input"] = relative_error(fit, flat, old_bias, all_cols)
    record["error_before"] = relative_error(fit, flat[:, cols], old_bias, cols)
    record["error_after"] = relative_error(fit, new_weight, new_bias, cols)
    _write_(consumer, new_weight, new_bias, cols)
    dropped = sorted(set(range(channels)) - set(kept))
    record["dropped"] = dropped
    _zero_producer_(dg, producer, dropped)
    return record


def _write_(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, cols) -> None:
    """The refit weights into the kept columns of `conv`, zeros elsewhere; the bias if any."""
    with torch.no_grad():
        flat = torch.zeros(conv.weight.shape[0], conv.weight[0].numel(), dtype=weight.dtype,
                           device=weight.device)  # fmt: skip
        flat[:, cols] = weight
        conv.weight.copy_(flat.reshape(conv.weight.shape).to(conv.weight.dtype))
        if conv.bias is not None:
            conv.bias.copy_(bias.to(conv.bias.dtype))


def _zero_producer_(dg, producer: nn.Module, dropped: list[int]) -> None:
    """Make the producer's dropped channels output exactly 0 (weights, bias, BatchNorm)."""
    pruning_fn = dg.get_pruner_of_module(producer).prune_out_channels
    _zero_group_(dg, dg.get_pruning_group(producer, pruning_fn, idxs=list(dropped)))


@register_method
class Regression(PruningMethod):
    name = "regression"
    description = "channel pruning: LASSO channel selection, least-squares reconstruction"
    paper = "He, Zhang and Sun 2017, Channel Pruning for Accelerating Very Deep Neural Networks"
    needs_data = True
    granularity = "channels"
    uses_scope = False
    defaults = {"samples": 256, "positions": 10}

    def prune(self, model, config, data=None, example=None):
        """Every clean conv pair front to back (see the module docstring), then fine-tuning
        under the zero pattern given `data.epochs`.

        `extra["regression"]` holds `pairs` (per pair: producer, consumer, channels kept of
        total, the dropped channels, the relative ridge and the relative reconstruction errors
        of the consumer's output on the sampled positions: `error_input` with every channel
        but the pruned model's input, `error_before` with the channels dropped and no refit,
        `error_after` once refit), `skipped` ({layer: why it stays dense}), `samples` and
        `positions`. The graph is traced on `example` when given, else on a training sample.
        """
        if data is None:
            raise SparsebenchError(f"method '{self.name}' needs training data (pass --data)")
        samples, positions = self.option(config, "samples"), self.option(config, "positions")
        if samples < 1 or positions < 1:
            raise SparsebenchError(f"method '{self.name}' needs samples and positions >= 1")
        layers = dense_layers(model)
        model.eval()
        inputs, _ = data.sample(samples, config.seed)
        device = next(model.parameters()).device
        example = inputs[:1] if example is None else example
        dg, pairs, skipped = find_pairs(model, example.to(device))
        if not pairs:
            why = "; ".join(f"{name}: {reason}" for name, reason in list(skipped.items())[:3])
            raise SparsebenchError(
                f"method '{self.name}' found no conv -> conv pair to prune ({why or 'no convs'})"
            )
        sampler = Sampler(inputs, positions, config.seed)
        targets = sampler.outputs(model, {p.consumer: p.order for p in pairs})  # still original
        records = []
        with progress_bar("regression pairs", len(pairs), loss=False) as advance:
            for p in pairs:
                records.append(prune_pair(model, dg, p, targets.pop(p.consumer), sampler,
                                          config.sparsity))  # fmt: skip
                advance()
        result = finetune(self, model, layers, config, data)
        for pair, record in zip(pairs, records, strict=True):  # fine-tuning keeps them 0; be exact
            if record.get("dropped"):
                _zero_producer_(dg, model.get_submodule(pair.producer), record["dropped"])
        result.extra["regression"] = {"pairs": records, "skipped": skipped,
                                      "samples": len(inputs), "positions": positions}  # fmt: skip
        return result

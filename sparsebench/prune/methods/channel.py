"""`channel`: zero the least important output channels of each channel group, scored by
torch-pruning's importance criteria, so `sparsebench export -f channels` removes them.

Li, Kadav, Durdanovic, Samet and Graf, "Pruning Filters for Efficient ConvNets", ICLR 2017
(`l1`); Liu et al., "Learning Efficient Convolutional Networks through Network Slimming",
ICCV 2017 (`bn`, BatchNorm scale); Molchanov et al., "Importance Estimation for Neural Network
Pruning", CVPR 2019 (`taylor`); the groups follow Fang et al., "DepGraph: Towards Any
Structural Pruning", CVPR 2023 (torch-pruning). `sparsity` is the fraction of each group's
channels zeroed (weights, bias and BatchNorm, so the channels output exactly 0); the final
layer keeps its outputs, and groups whose channels cannot be cut exactly are left alone.
`taylor` takes its gradients from `--data` (else from pseudo-labelled noise).
"""

from __future__ import annotations

from ...errors import SparsebenchError
from ..base import PruningMethod, dense_layers, finetune, register_method
from ..channel_graph import build_graph, probe_inputs, prunable_groups, trace_layers
from ..channel_scoring import CRITERIA, soft_prune_, taylor_batch


@register_method
class ChannelImportance(PruningMethod):
    name = "channel"
    description = "zero the least important channels per group (l1, l2, bn or taylor)"
    paper = "Li et al. 2017 (L1), Liu et al. 2017 (BN scale), Molchanov et al. 2019 (Taylor)"
    granularity = "channels"
    uses_scope = False
    needs_example = True
    defaults = {"criterion": "l1"}

    def prune(self, model, config, data=None, example=None):
        criterion = self.option(config, "criterion")
        if criterion not in CRITERIA:
            raise SparsebenchError(
                f"unknown channel criterion '{criterion}': use one of {', '.join(CRITERIA)}"
            )
        layers = dense_layers(model)
        trace = trace_layers(model, probe_inputs(example))
        final = trace.order[-1] if trace.order else None
        dg = build_graph(model, example)
        groups = list(prunable_groups(dg, model, final))
        roots = [root for root, _, unsafe in groups if not unsafe]
        if not roots:
            raise SparsebenchError("the model has no channel group that can be pruned exactly")
        batch = None
        if criterion == "taylor":
            batch = data.sample(32, config.seed) if data is not None else None
            batch = _as_batch(batch) if batch else taylor_batch(model, example, None)
        zeroed = soft_prune_(model, dg, roots, config.sparsity, criterion, batch)
        result = finetune(self, model, layers, config, data)
        result.extra["channels"] = {
            root: {"zeroed": z, "of": dg.get_out_channels(model.get_submodule(root))}
            for root, z in zeroed.items()
        }
        skipped = {root: unsafe for root, _, unsafe in groups if unsafe}
        if skipped:
            result.extra["skipped"] = skipped
        return result


def _as_batch(sample):
    from ...inputs import Batch

    x, y = sample
    return Batch((x,)), y.long()

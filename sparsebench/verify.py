"""Verification: an exported model must reproduce the dense reference before it is measured.

Every artifact also stores the outputs of its verified model on a fixed synthetic batch
(`check_inputs`), so each load re-checks it (`check_reference`), with the tolerance of the
format's code: a tampered or corrupted file fails before anything is measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import SparsebenchError
from .inputs import Batch, InputSpecs, as_batch, call

CHECK_SEED = 1234
CHECK_SAMPLES = 8
REFERENCE_KEY = "reference_outputs"
MAX_REFERENCE_ELEMENTS = 2**24  # outputs of the 8 check samples (far more than any logits)


@dataclass
class Verification:
    """Output agreement of an exported model with its dense reference on one batch."""

    samples: int
    max_abs_err: float
    max_rel_err: float  # max |a - b| / max |reference|
    top1_agreement: float  # fraction of samples whose argmax matches
    tolerance: float
    inputs: str  # "synthetic" or the dataset spec

    @property
    def passed(self) -> bool:
        return self.max_rel_err <= self.tolerance

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def compare_outputs(
    reference: nn.Module,
    exported: nn.Module,
    inputs: Batch | torch.Tensor,
    tolerance: float,
    source: str,
    device: str = "cpu",
) -> Verification:
    """Run both models on `inputs` and measure how far the exported outputs are."""
    inputs = as_batch(inputs).to(device)
    with torch.inference_mode():
        ref = call(reference, inputs).float().cpu()
        out = call(exported, inputs).float().cpu()
    if ref.shape != out.shape:
        raise SparsebenchError(
            f"verification failed: output shape {list(out.shape)} != reference {list(ref.shape)}"
        )
    abs_err = float((ref - out).abs().max()) if ref.numel() else 0.0
    scale = float(ref.abs().max()) or 1.0
    agreement = (
        float((ref.argmax(dim=-1) == out.argmax(dim=-1)).float().mean()) if ref.dim() > 1 else 1.0
    )
    return Verification(
        samples=len(inputs),
        max_abs_err=abs_err,
        max_rel_err=abs_err / scale,
        top1_agreement=agreement,
        tolerance=tolerance,
        inputs=source,
    )


def require_passed(verification: Verification, what: str) -> None:
    """Raise a one-line error when the exported model is beyond tolerance."""
    if not verification.passed:
        raise SparsebenchError(
            f"verification of {what} failed: max relative error {verification.max_rel_err:.2e} "
            f"> tolerance {verification.tolerance:.0e} (max abs {verification.max_abs_err:.2e}, "
            f"top-1 agreement {verification.top1_agreement:.1%}); nothing written"
        )


def check_inputs(specs: InputSpecs | list[int] | tuple[int, ...]) -> Batch:
    """The deterministic batch an artifact's reference outputs were computed on."""
    if not isinstance(specs, InputSpecs):
        specs = InputSpecs.single(specs)
    return specs.synthetic(seed=CHECK_SEED, batch=CHECK_SAMPLES)


class StoredOutputs(nn.Module):
    """A stand-in model that returns the outputs an artifact stored."""

    def __init__(self, outputs: torch.Tensor):
        super().__init__()
        self.outputs = outputs

    def forward(self, *inputs):
        return self.outputs


def check_reference(
    model: nn.Module, reference: torch.Tensor, specs, tolerance: float, what: str,
    device: str = "cpu",
) -> Verification:  # fmt: skip
    """Re-run the check batch on `model` and require its outputs to match `reference`."""
    plain = reference.layout == torch.strided and reference.device.type == "cpu"
    if not plain or not reference.dtype.is_floating_point:
        raise SparsebenchError(f"corrupt {what}: its reference outputs are not dense CPU floats")
    if reference.numel() > MAX_REFERENCE_ELEMENTS:
        raise SparsebenchError(f"corrupt {what}: {reference.numel():,} reference outputs")
    check = compare_outputs(
        StoredOutputs(reference.float()), model, check_inputs(specs), tolerance,
        "artifact check", device,
    )  # fmt: skip
    require_passed(check, f"{what} (tampered or corrupted?)")
    return check


def reference_from_json(stored, source: str) -> torch.Tensor | None:
    """Reference outputs kept as JSON (`{"shape": [...], "values": [...]}`) in an ONNX model's
    metadata or an engine's sidecar; None when the file keeps none."""
    if not stored:
        return None
    try:
        return torch.tensor(stored["values"], dtype=torch.float32).reshape(stored["shape"])
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise SparsebenchError(f"{source}: corrupt reference outputs ({exc})") from exc


def reference_to_json(reference: torch.Tensor) -> dict:
    """The JSON form `reference_from_json` reads."""
    reference = reference.float()
    return {"shape": list(reference.shape), "values": reference.reshape(-1).tolist()}

"""Fuzz the loaders: mutate every kind of input file and check each one fails cleanly.

Seed files are built from code (random weights, zoo model `mnist1d_mlp`): a sparsebench
checkpoint, a plain state_dict, dense/csr/channels/onnx artifacts, a TorchScript archive, a
`torch.export` program and a pickled module. They are mutated (truncations, bit flips, random
bytes, zip-entry edits, recompression, duplicate entries, zip bombs, semantic edits of the
payload, out-of-range sparse indices, ONNX edits, renames) and crafted into files that run code
if anything executes them (pickles with a `__reduce__`, TorchScript/.pt2 programs, metadata
naming callables); the unmodified seeds run too, as a control. Each case runs `sparsebench
profile` (or, for about a quarter, `sparsebench export -f dense`) in a subprocess, never with
`--trust-checkpoint`, and is classified: `ok` (exit 0), `clean error` (exit 2, one `error:`
line), `traceback`, `signal`, `hang`, `other exit`; `code executed` when a marker file appeared
or a victim file changed. Prints a markdown table and every non-clean case; exits 1 on any
traceback, signal, hang or code executed.

Usage: python benchmarks/fuzz_inputs.py [--cases 240] [--seed 0] [--timeout 60] [--workdir DIR]
       [--jobs 2] [--only FAMILY_OR_KIND,...] [--bomb-mib 1024] [--memory-limit-gib 8]
"""

from __future__ import annotations

import argparse
import copy
import io
import itertools
import json
import os
import pickle
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

ARCH = "mnist1d_mlp"
SHAPE = [1, 40]
FAST = ["--no-memory", "--no-energy", "--warmup", "1", "--min-iters", "2", "--min-seconds", "0.01"]
OUTCOMES = ["ok", "clean error", "traceback", "signal", "hang", "other exit"]
BAD = {"traceback", "signal", "hang"}
MARKER = "PWNED"
VICTIM_BYTES = b"zzzzzzzz"


# --------------------------------------------------------------------------- data types


@dataclass
class Seed:
    """One valid input file of a kind, plus the CLI arguments that kind needs."""

    kind: str
    path: Path
    args: list[str] = field(default_factory=list)

    @property
    def is_zip(self) -> bool:
        """Whether the file is a zip archive (torch.save, TorchScript, .pt2)."""
        return zipfile.is_zipfile(self.path)


@dataclass
class Ctx:
    """What a mutator gets: the seed, the case's folder, its rng and its bookkeeping."""

    seed: Seed
    out: Path
    rng: random.Random
    case_id: str
    markers: list[Path] = field(default_factory=list)
    victims: dict[Path, bytes] = field(default_factory=dict)
    tampered: bool = False  # the file must not load: an exit 0 is reported as accepted

    def marker(self, where: Path | None = None) -> Path:
        """A fresh marker path that must never come into existence."""
        path = (where or self.out) / f"{MARKER}-{self.case_id}-{len(self.markers)}"
        self.markers.append(path.resolve())
        return self.markers[-1]

    def victim(self) -> Path:
        """A file that a payload would overwrite if it ran."""
        path = (self.out / f"victim-{len(self.victims)}").resolve()
        path.write_bytes(VICTIM_BYTES)
        self.victims[path] = VICTIM_BYTES
        return path

    def dst(self, suffix: str | None = None) -> Path:
        """Where the mutated file goes (the seed's suffix unless told otherwise)."""
        suffix = self.seed.path.suffix if suffix is None else suffix
        return self.out / f"input{suffix}"


@dataclass
class Case:
    """One subprocess to run on one mutated file."""

    id: str
    kind: str
    family: str
    variant: str
    command: list[str]
    cwd: Path
    markers: list[Path]
    victims: dict[Path, bytes]
    verb: str = "profile"
    tampered: bool = False


@dataclass
class Result:
    """How one case ended."""

    case: Case
    outcome: str
    returncode: int | None
    first_line: str
    code_executed: bool
    seconds: float


# --------------------------------------------------------------------------- payloads that run code


class Reduce:
    """A pickle that calls `fn(*args)` when unpickled (the classic `__reduce__` exploit)."""

    def __init__(self, fn: Callable, *args: Any):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def evil(ctx: Ctx) -> Reduce:
    """An object whose unpickling creates a fresh marker file (open, os.system or exec)."""
    marker = ctx.marker()
    how = ctx.rng.choice(["open", "system", "exec"])
    if how == "open":
        return Reduce(open, str(marker), "w")
    if how == "system":
        return Reduce(os.system, f"touch '{marker}'")
    return Reduce(exec, f"open({str(marker)!r}, 'w').close()")


class VictimWriter(nn.Module):
    """A scriptable model that overwrites a victim file in forward and creates a marker when
    TorchScript restores it (`__setstate__` runs inside `torch.jit.load`)."""

    def __init__(self, victim: str, marker: str):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 40))
        self.victim, self.marker = victim, marker

    def forward(self, x):
        data = torch.from_file(self.victim, True, 8, dtype=torch.uint8).fill_(65)
        return nn.functional.linear(x, self.weight) + data.sum().float() * 0

    @torch.jit.export
    def __getstate__(self) -> tuple[str, str, bool, torch.Tensor]:
        return (self.victim, self.marker, self.training, self.weight)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, str, bool, torch.Tensor]) -> None:
        self.victim = state[0]
        self.marker = state[1]
        self.training = state[2]
        touched = torch.from_file(self.marker, True, 1, dtype=torch.uint8)
        self.weight = state[3] + touched.sum().float() * 0


def evil_factory_source(marker: Path) -> str:
    """Python source of an architecture factory that creates `marker` on import and call."""
    return textwrap.dedent(
        f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")
        def build(**kwargs):
            pathlib.Path({str(marker)!r}).write_text("built")
            from sparsebench.zoo import create_model
            return create_model({ARCH!r})
        """
    )


# --------------------------------------------------------------------------- seed files


def pruned_model() -> nn.Module:
    """mnist1d_mlp with random weights, 80% of each Linear's weights L1-pruned to zero."""
    from torch.nn.utils import prune

    from sparsebench.zoo import create_model

    torch.manual_seed(0)
    model = create_model(ARCH)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            prune.l1_unstructured(module, "weight", 0.8)
            prune.remove(module, "weight")
    return model.eval()


def export_function() -> Callable:
    """`sparsebench.export.export`, imported when seeds are built."""
    from sparsebench.export import export

    return export


def build_seeds(folder: Path) -> list[Seed]:
    """Write one valid file of every kind into `folder`."""
    from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
    from sparsebench.formats import ExportConfig

    export = export_function()
    folder.mkdir(parents=True, exist_ok=True)
    model = pruned_model()
    ckpt = folder / "checkpoint.pt"
    save_checkpoint(ckpt, model, CheckpointMeta(arch=ARCH, input_shape=SHAPE), force=True)
    seeds = [Seed("checkpoint", ckpt)]
    torch.save(model.state_dict(), folder / "state_dict.pt")
    seeds.append(Seed("state_dict", folder / "state_dict.pt", ["--arch", ARCH]))
    for fmt, options in [("dense", {}), ("csr", {}), ("channels", {"ratio": 0.5})]:
        path = folder / f"artifact_{fmt}.pt"
        export(ckpt, path, ExportConfig.of(format=fmt, verify_samples=8, **options), force=True)
        seeds.append(Seed(f"artifact-{fmt}", path))
    export(
        ckpt, folder / "model.onnx", ExportConfig.of(format="onnx", verify_samples=8), force=True
    )
    seeds.append(Seed("onnx", folder / "model.onnx"))
    shape = ["--input-shape", ",".join(map(str, SHAPE))]
    torch.jit.save(torch.jit.script(model), folder / "scripted.pt")
    seeds.append(Seed("torchscript", folder / "scripted.pt", shape))
    program = torch.export.export(model, (torch.zeros(SHAPE),))
    torch.export.save(program, folder / "program.pt2")
    seeds.append(Seed("export-pt2", folder / "program.pt2", shape))
    torch.save(model, folder / "module.pt")
    seeds.append(Seed("pickled-module", folder / "module.pt", shape))
    return seeds


PAYLOAD_KINDS = {"checkpoint", "state_dict", "artifact-dense", "artifact-csr", "artifact-channels"}
META_KINDS = PAYLOAD_KINDS - {"state_dict"}
ARTIFACT_KINDS = META_KINDS - {"checkpoint"}


# --------------------------------------------------------------------------- byte-level mutators


def mutate_control(ctx: Ctx, variant: str) -> Path:
    """The seed itself: ok, or a clean refusal for the kinds that carry code."""
    shutil.copyfile(ctx.seed.path, ctx.dst())
    return ctx.dst()


def mutate_truncate(ctx: Ctx, variant: str) -> Path:
    """Cut the file at an offset: empty, one byte, half, all but 1 or 22 bytes, random."""
    data = ctx.seed.path.read_bytes()
    cut = {
        "empty": 0,
        "1-byte": 1,
        "half": len(data) // 2,
        "minus-1": len(data) - 1,
        "minus-22": len(data) - 22,  # the zip end-of-central-directory record
    }.get(variant)
    if cut is None:
        cut = ctx.rng.randrange(len(data))
    ctx.dst().write_bytes(data[:cut])
    return ctx.dst()


def flip_bits(data: bytearray, count: int, rng: random.Random, lo: int = 0, hi: int = 0) -> None:
    """Flip `count` random bits of `data[lo:hi]` in place."""
    hi = hi or len(data)
    for _ in range(count):
        data[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)


def entry_span(path: Path, suffix: str) -> tuple[int, int] | None:
    """Byte range of the stored data of the first zip entry ending in `suffix`."""
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if info.filename.endswith(suffix):
                raw.seek(info.header_offset + 26)  # the local header's name and extra lengths
                name_len, extra_len = struct.unpack("<HH", raw.read(4))
                start = info.header_offset + 30 + name_len + extra_len
                return start, start + max(info.compress_size, 1)
    return None


def mutate_bitflip(ctx: Ctx, variant: str) -> Path:
    """Flip k random bits anywhere, in the first 256 bytes, or inside the pickle entry."""
    data = bytearray(ctx.seed.path.read_bytes())
    lo, hi = 0, len(data)
    if variant == "header-8":
        hi = min(256, len(data))
    elif variant == "pickle-8":
        lo, hi = entry_span(ctx.seed.path, "data.pkl") or entry_span(ctx.seed.path, ".json")
    flip_bits(data, int(variant.split("-")[-1]), ctx.rng, lo, hi)
    ctx.dst().write_bytes(bytes(data))
    return ctx.dst()


def mutate_random_bytes(ctx: Ctx, variant: str) -> Path:
    """Random bytes: a whole file of them, spliced in, appended, overwritten, after zip magic."""
    data = ctx.seed.path.read_bytes()
    junk = ctx.rng.randbytes(ctx.rng.choice([1, 7, 100, 4096, 65536]))
    at = ctx.rng.randrange(len(data))
    new = {
        "whole": junk,
        "splice": data[:at] + junk + data[at:],
        "append": data + junk,
        "overwrite": data[:at] + junk + data[at + len(junk) :],
        "zip-magic": b"PK\x03\x04" + junk,
        "onnx-like": b"\x08\x07\x12\x07pytorch" + junk,
    }[variant]
    ctx.dst().write_bytes(new)
    return ctx.dst()


def mutate_renamed(ctx: Ctx, variant: str) -> Path:
    """The same bytes under another suffix, or a directory / FIFO / dangling link as input."""
    if variant == "directory":
        ctx.dst(".pt").mkdir()
        return ctx.dst(".pt")
    if variant == "fifo":
        os.mkfifo(ctx.dst(".pt"))
        return ctx.dst(".pt")
    if variant == "dangling-link":
        ctx.dst(".pt").symlink_to(ctx.out / "does-not-exist.pt")
        return ctx.dst(".pt")
    shutil.copyfile(ctx.seed.path, ctx.dst(variant))
    return ctx.dst(variant)


def renamed_variants(seed: Seed) -> list[str]:
    """Every suffix a loader dispatches on, except the seed's own, plus odd file types."""
    suffixes = [".onnx", ".pt", ".pt2", ".engine", ".ONNX", ".pth", ".plan", ""]
    return [s for s in suffixes if s != seed.path.suffix] + ["directory", "fifo", "dangling-link"]


# --------------------------------------------------------------------------- zip mutators


@dataclass
class Entry:
    """One zip entry: data None means a zip bomb (`bomb` zero bytes, deflated)."""

    name: str
    data: bytes | None
    compress: int = zipfile.ZIP_STORED


def read_entries(path: Path) -> list[Entry]:
    """The entries of a zip file, in order."""
    with zipfile.ZipFile(path) as archive:
        return [Entry(i.filename, archive.read(i)) for i in archive.infolist()]


def write_entries(path: Path, entries: list[Entry], bomb_bytes: int = 0) -> Path:
    """Write `entries` as a zip (duplicate names allowed on purpose)."""
    chunk = bytes(1 << 24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(path, "w", compresslevel=1) as archive:
            for entry in entries:
                info = zipfile.ZipInfo(entry.name, date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if entry.data is None else entry.compress
                if entry.data is not None:
                    archive.writestr(info, entry.data)
                    continue
                with archive.open(info, "w", force_zip64=True) as out:
                    for _ in range(max(bomb_bytes // len(chunk), 1)):
                        out.write(chunk)
    return path


def find(entries: list[Entry], suffix: str) -> Entry:
    """The first entry whose name ends with `suffix`."""
    return next(e for e in entries if e.name.endswith(suffix))


def prefix_of(entries: list[Entry]) -> str:
    """The archive's top folder ('archive' for torch.save)."""
    return entries[0].name.split("/", 1)[0]


def _set_entry(suffix: str, data: Callable[[bytes], bytes]) -> tuple[str, Callable]:
    """An edit that replaces the data of the entry ending in `suffix` by `data(old)`."""

    def edit(entries: list[Entry]) -> None:
        entry = find(entries, suffix)
        entry.data = data(entry.data)

    return suffix, edit


def _del_entry(suffix: str) -> tuple[str, Callable]:
    """An edit that deletes the entry ending in `suffix`."""
    return suffix, lambda entries: entries.remove(find(entries, suffix))


def _garble(data: bytes) -> bytes:
    """Every byte XOR 0x5A."""
    return bytes(b ^ 0x5A for b in data)


def _zip_edit_table(ctx: Ctx) -> dict[str, tuple[str, Callable[[list[Entry]], Any]]]:
    """Zip-entry edits: name -> (entry suffix it needs, edit of the entry list)."""
    evil_pickle = lambda old: pickle.dumps(evil(ctx))  # noqa: E731
    python = lambda old: f"import os\nos.system('touch {ctx.marker()}')\n".encode()  # noqa: E731
    slip = lambda es: es.append(Entry(f"../{ctx.marker(ctx.out.parent).name}", b"x"))  # noqa: E731
    other_prefix = lambda es: setattr(es[-1], "name", "x/" + es[-1].name.split("/", 1)[1])  # noqa: E731
    return {
        "data.pkl-random": _set_entry("/data.pkl", lambda old: ctx.rng.randbytes(300)),
        "data.pkl-garbled": _set_entry("/data.pkl", _garble),
        "data.pkl-deleted": _del_entry("/data.pkl"),
        "data.pkl-evil-global": _set_entry("/data.pkl", evil_pickle),
        "data0-deleted": _del_entry("/data/0"),
        "data0-truncated": _set_entry("/data/0", lambda old: old[:3]),
        "data0-doubled": _set_entry("/data/0", lambda old: old * 2),
        "version-deleted": _del_entry("/version"),
        "version-999": _set_entry("/version", lambda old: b"999\n"),
        "version-garbage": _set_entry("/version", lambda old: b"\xff\x00abc"),
        "byteorder-big": _set_entry("/byteorder", lambda old: b"big"),
        "byteorder-garbage": _set_entry("/byteorder", lambda old: b"middle"),
        "byteorder-deleted": _del_entry("/byteorder"),
        "format-version-99": _set_entry("/.format_version", lambda old: b"99"),
        "alignment-garbage": _set_entry("/.storage_alignment", lambda old: b"-7"),
        "prefix-mixed": ("", other_prefix),
        "zip-slip": ("", slip),
        "all-deleted": ("", lambda es: es.clear()),
        "ts-code-python": _set_entry("/code/__torch__.py", python),
        "ts-constants-evil": _set_entry("/constants.pkl", evil_pickle),
        "pt2-model-json-garbled": _set_entry("/models/model.json", _garble),
        "pt2-weights-config-int": _set_entry("weights_config.json", lambda old: b'{"config": 5}'),
        "pt2-weight-truncated": _set_entry("/weights/weight_0", lambda old: b"\x00" * 3),
        "pt2-sample-inputs-garbled": _set_entry("/sample_inputs/model.pt", _garble),
    }


def zip_entry_variants(seed: Seed) -> list[str]:
    """The zip-entry edits whose target entry the seed has."""
    names = [e.name for e in read_entries(seed.path)]
    dummy = Ctx(seed, Path("."), random.Random(0), "x")
    table = _zip_edit_table(dummy)
    return [v for v, (need, _) in table.items() if any(n.endswith(need) for n in names)]


def mutate_zip_entry(ctx: Ctx, variant: str) -> Path:
    """Replace, garble or delete one entry (pickle, data, version, byteorder, code, json)."""
    entries = read_entries(ctx.seed.path)
    _zip_edit_table(ctx)[variant][1](entries)
    return write_entries(ctx.dst(), entries)


def mutate_zip_recompress(ctx: Ctx, variant: str) -> Path:
    """Rewrite the archive with another compression (all entries or the pickle only)."""
    entries = read_entries(ctx.seed.path)
    method = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}
    for entry in entries:
        if variant == "deflate-first-entry":
            entries[0].compress = zipfile.ZIP_DEFLATED
        elif variant in method:
            entry.compress = method[variant]
    return write_entries(ctx.dst(), entries)  # "stored-unaligned": same entries, no alignment


def mutate_zip_duplicate(ctx: Ctx, variant: str) -> Path:
    """Duplicate entries: the first or every entry, or the pickle with a harmful second copy."""
    entries = read_entries(ctx.seed.path)
    if variant == "first-entry-twice":
        entries.insert(1, copy.copy(entries[0]))
    elif variant == "all-twice":
        entries = entries + [copy.copy(e) for e in entries]
    else:  # "evil-copy-last" / "evil-copy-first": the main pickle (or model.json) again
        main = next(e for e in entries if e.name.endswith(("/data.pkl", "/models/model.json")))
        twin = Entry(main.name, pickle.dumps(evil(ctx)))
        entries.insert(entries.index(main) + (variant == "evil-copy-last"), twin)
    return write_entries(ctx.dst(), entries)


def mutate_zip_bomb(ctx: Ctx, variant: str, bomb: int) -> Path:
    """Replace an entry (or add one) with `bomb` zero bytes, deflated to a few MB."""
    entries = read_entries(ctx.seed.path)
    if variant == "extra-entry":
        entries.append(Entry(f"{prefix_of(entries)}/data/bomb", None))
    else:
        find(entries, variant).data = None
    return write_entries(ctx.dst(), entries, bomb)


def zip_bomb_variants(seed: Seed) -> list[str]:
    """Entries to replace with a bomb (those the seed has), or an extra one."""
    names = [e.name for e in read_entries(seed.path)]
    wanted = ["/data.pkl", "/data/0", "/version", "/models/model.json", "/weights/weight_0"]
    return [w for w in wanted if any(n.endswith(w) for n in names)] + ["extra-entry"]


# --------------------------------------------------------------------------- payload edits


def load_payload(path: Path) -> Any:
    """A seed's payload, as `torch.load(weights_only=True)` gives it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def sd_of(p: dict) -> dict:
    """The state_dict inside a payload (the payload itself for a plain state_dict)."""
    return p["state_dict"] if "state_dict" in p else p


def dense_key(p: dict) -> str:
    """A strided weight to edit: fc1.weight unless it is sparse, else fc1.bias."""
    sd = sd_of(p)
    return "fc1.weight" if sd["fc1.weight"].layout == torch.strided else "fc1.bias"


def put(p: dict, fn: Callable[[torch.Tensor], Any]) -> None:
    """Replace the chosen weight `t` with `fn(t)`."""
    sd, key = sd_of(p), dense_key(p)
    sd[key] = fn(sd[key])


def put_key(key: Any, value: Any) -> Callable[[dict], None]:
    """An edit that sets state_dict[key] = value."""
    return lambda p: sd_of(p).__setitem__(key, copy.deepcopy(value))


def negate_all(p: dict) -> None:
    """Negate every weight (CSR values too)."""
    sd = sd_of(p)
    for key, t in list(sd.items()):
        if t.layout == torch.sparse_csr:
            crow, col, values = t.crow_indices(), t.col_indices(), t.values()
            sd[key] = torch.sparse_csr_tensor(crow, col, -values, t.shape)
        elif t.is_floating_point():
            sd[key] = -t


def with_mask(mask: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict], None]:
    """fc1.weight -> fc1.weight_orig plus a `torch.nn.utils.prune` mask made by `mask`."""

    def edit(p: dict) -> None:
        sd = sd_of(p)
        weight = sd.pop("fc1.weight").to_dense()
        sd["fc1.weight_orig"], sd["fc1.weight_mask"] = weight, mask(weight)

    return edit


def add_module_prefix(p: dict) -> None:
    """Every key as `module.<key>` (a DataParallel state_dict)."""
    sd = sd_of(p)
    for key in list(sd):
        sd["module." + key] = sd.pop(key)


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values and shape with a last stride of 2."""
    return torch.stack([t, t], -1)[..., 0]


SD_EDITS: dict[str, Callable[[dict], Any]] = {
    "sd-shape-doubled": lambda p: put(p, lambda t: torch.cat([t, t])),
    "sd-shape-extra-dim": lambda p: put(p, lambda t: t.unsqueeze(0)),
    "sd-shape-empty": lambda p: put(p, lambda t: t[:0]),
    "sd-shape-scalar": lambda p: put(p, lambda t: t.reshape(-1)[0].clone()),
    "sd-dtype-int64": lambda p: put(p, lambda t: t.long()),
    "sd-dtype-float16": lambda p: put(p, lambda t: t.half()),
    "sd-dtype-bool": lambda p: put(p, lambda t: t.bool()),
    "sd-dtype-complex": lambda p: put(p, lambda t: t.to(torch.complex64)),
    "sd-dtype-uint8": lambda p: put(p, lambda t: t.to(torch.uint8)),
    "sd-value-int": put_key("fc1.bias", 5),
    "sd-value-str": put_key("fc1.bias", "weights"),
    "sd-value-list": put_key("fc1.bias", [torch.zeros(3)]),
    "sd-key-missing": lambda p: sd_of(p).pop("fc2.bias"),
    "sd-key-extra": put_key("evil.weight", torch.zeros(3, 3)),
    "sd-key-renamed": lambda p: sd_of(p).__setitem__("fc1.weigth", sd_of(p).pop("fc1.bias")),
    "sd-key-int": put_key(7, torch.zeros(1)),
    "sd-empty": lambda p: sd_of(p).clear(),
    "sd-nan": lambda p: put(p, lambda t: torch.full_like(t, float("nan"))),
    "sd-inf": lambda p: put(p, lambda t: torch.full_like(t, float("inf"))),
    "sd-expanded-right-shape": lambda p: put(p, lambda t: torch.ones(1).expand(t.shape)),
    "sd-expanded-huge": lambda p: put(p, lambda t: torch.ones(1).expand(10**6, 10**6)),
    "sd-meta-device": lambda p: put(p, lambda t: torch.empty(t.shape, device="meta")),
    "sd-noncontiguous": lambda p: put(p, noncontiguous),
    "sd-module-prefix": add_module_prefix,
    "sd-mask-wrong-shape": with_mask(lambda w: torch.ones(3)),
    "sd-mask-nonbinary": with_mask(lambda w: torch.full_like(w, 0.5)),
    "sd-mask-only": put_key("fc2.weight_mask", torch.ones(100, 100)),
    "sd-parametrization-garbage": put_key("fc1.parametrizations.weight.original", torch.zeros(2)),
}


def _meta_set(key: str, value: Any) -> Callable[[dict], None]:
    """An edit that sets a sparsebench metadata field."""
    return lambda p: p["sparsebench"].__setitem__(key, copy.deepcopy(value))


META_EDITS: dict[str, Callable[[dict], Any]] = {
    "meta-not-dict": lambda p: p.__setitem__("sparsebench", "checkpoint"),
    "meta-version-999": _meta_set("version", 999),
    "meta-version-str": _meta_set("version", "one"),
    "state-missing": lambda p: p.pop("state_dict"),
    "state-not-dict": lambda p: p.__setitem__("state_dict", [1, 2]),
    "arch-int": _meta_set("arch", 5),
    "arch-none": _meta_set("arch", None),
    "arch-unknown": _meta_set("arch", "resnet9000"),
    "arch-empty": _meta_set("arch", ""),
    "arch-list": _meta_set("arch", ["mnist1d_mlp"]),
    "arch-kwargs-str": _meta_set("arch_kwargs", "hidden=5"),
    "arch-kwargs-list": _meta_set("arch_kwargs", [1, 2]),
    "arch-kwargs-bad-key": _meta_set("arch_kwargs", {"nope": 1}),
    "arch-kwargs-huge": _meta_set("arch_kwargs", {"hidden": [100000, 100000]}),
    "arch-kwargs-big": _meta_set("arch_kwargs", {"hidden": [20000, 20000]}),
    "arch-kwargs-negative": _meta_set("arch_kwargs", {"hidden": [-5]}),
    "arch-kwargs-zero-classes": _meta_set("arch_kwargs", {"num_classes": 0}),
    "arch-kwargs-int-key": _meta_set("arch_kwargs", {1: 2}),
    "shape-str": _meta_set("input_shape", "1,40"),
    "shape-huge": _meta_set("input_shape", [1, 10**12]),
    "shape-huge-batch": _meta_set("input_shape", [10**9, 40]),
    "shape-big-batch": _meta_set("input_shape", [2**20, 40]),
    "shape-bigint": _meta_set("input_shape", [1, 2**70]),
    "shape-negative": _meta_set("input_shape", [1, -40]),
    "shape-zero": _meta_set("input_shape", [0, 40]),
    "shape-empty": _meta_set("input_shape", []),
    "shape-nested": _meta_set("input_shape", [[1, 40]]),
    "shape-float": _meta_set("input_shape", [1.5, 40]),
    "shape-bool": _meta_set("input_shape", [True, 40]),
    "shape-rank3": _meta_set("input_shape", [1, 1, 40]),
    "shape-int": _meta_set("input_shape", 40),
    "classes-int": _meta_set("classes", 10),
    "classes-huge": _meta_set("classes", [f"c{i}" for i in range(100000)]),
    "classes-mismatched": _meta_set("classes", ["only-one"]),
    "dataset-int": _meta_set("dataset", 3),
    "dataset-path": _meta_set("dataset", "/etc/passwd"),
    "extra-not-dict": _meta_set("extra", "x"),
    "format-unknown": _meta_set("format", "nope"),
    "format-int": _meta_set("format", 5),
    "format-tensorrt": _meta_set("format", "tensorrt"),
    "format-onnx": _meta_set("format", "onnx"),
    "format-semi24": _meta_set("format", "semi24"),
    "export-not-dict": _meta_set("export", "x"),
    "export-list": _meta_set("export", [1]),
    "export-added-no-reference": _meta_set("export", {"payload": {}, "layers": []}),
    "top-list": lambda p: [p],
    "top-none": lambda p: None,
    "top-str": lambda p: "sparsebench",
    "top-tensor": lambda p: torch.zeros(3),
    "top-tuple": lambda p: (p, p),
}


def _export_set(key: str, value: Any) -> Callable[[dict], None]:
    """An edit that sets a field of the export report."""
    return lambda p: p["sparsebench"]["export"].__setitem__(key, copy.deepcopy(value))


def _payload(**payload: Any) -> Callable[[dict], None]:
    """An edit that replaces the format's payload."""
    return _export_set("payload", payload)


def _csr_layer(**layer: Any) -> Callable[[dict], None]:
    """A csr payload describing fc1 with `layer` overriding its fields."""
    return _payload(layers={"fc1": {"kind": "Linear", "shape": [100, 40], **layer}})


def _removed(layer: str, channels: Any, shape: Any = None) -> Callable[[dict], None]:
    """A channels payload removing `channels` of `layer`."""
    return _payload(input_shape=shape or SHAPE, removed=[{"layer": layer, "channels": channels}])


def _ref_set(fn: Callable[[torch.Tensor], Any]) -> Callable[[dict], None]:
    """An edit of the stored reference outputs."""

    def edit(p: dict) -> None:
        p["tensors"]["reference_outputs"] = fn(p["tensors"]["reference_outputs"])

    return edit


def _swap_format(p: dict) -> None:
    """Claim another format than the one the tensors are in."""
    meta = p["sparsebench"]
    meta["format"] = "dense" if meta["format"] != "dense" else "csr"


def _tolerance_negated(p: dict) -> None:
    """Negated weights with every tolerance field the file could claim set to 1e9."""
    negate_all(p)
    export = p["sparsebench"]["export"]
    export["verification"] = {**export.get("verification", {}), "tolerance": 1e9, "passed": True}
    export["config"] = {**export.get("config", {}), "tolerance": 1e9}
    export["tolerance"] = 1e9


ARTIFACT_EDITS: dict[str, Callable[[dict], Any]] = {
    "format-swapped": _swap_format,
    "layers-str": _export_set("layers", "x"),
    "layers-ints": _export_set("layers", [1, 2, 3]),
    "layers-bad-entries": _export_set("layers", [{"name": 5, "kind": None, "details": "x"}]),
    "layers-none": _export_set("layers", None),
    "payload-str": _export_set("payload", "x"),
    "payload-layers-int": _payload(layers=5),
    "payload-csr-bad-shape": _csr_layer(shape=[100, 41]),
    "payload-csr-huge-shape": _csr_layer(shape=[10**6, 10**6]),
    "payload-csr-kind-conv": _csr_layer(kind="Conv2d"),
    "payload-unknown-layer": _payload(layers={"fc9": {"kind": "Linear", "shape": [1, 1]}}),
    "payload-channels-out-of-range": _removed("fc1", [10**9]),
    "payload-channels-negative": _removed("fc1", [-1, -2]),
    "payload-channels-not-list": _removed("fc1", "x"),
    "payload-channels-unknown-layer": _removed("fc9", [0]),
    "payload-channels-removed-str": _payload(input_shape=SHAPE, removed="x"),
    "payload-channels-shape-str": _removed("fc1", [], "abc"),
    "payload-channels-shape-huge": _removed("fc1", [], [1, 10**12]),
    "verification-str": _export_set("verification", "passed"),
    "negated-weights": negate_all,
    "tolerance-1e9-negated": _tolerance_negated,
    "ref-removed": lambda p: p["tensors"].pop("reference_outputs"),
    "ref-nan": _ref_set(lambda t: torch.full_like(t, float("nan"))),
    "ref-inf": _ref_set(lambda t: torch.full_like(t, float("inf"))),
    "ref-negated": _ref_set(lambda t: -t),
    "ref-wrong-shape": _ref_set(lambda t: t[:3]),
    "ref-int": _ref_set(lambda t: t.long()),
    "ref-bool": _ref_set(lambda t: t > 0),
    "ref-float16": _ref_set(lambda t: t.half()),
    "ref-sparse": _ref_set(lambda t: t.to_sparse()),
    "ref-expanded-huge": _ref_set(lambda t: torch.zeros(1).expand(10**6, 10**6)),
    "ref-empty": _ref_set(lambda t: t[:0]),
    "ref-not-tensor": _ref_set(lambda t: 5),
    "tensors-not-dict": lambda p: p.__setitem__("tensors", "x"),
    "tensors-extra-non-tensor": lambda p: p["tensors"].__setitem__("x", 5),
    "tensors-removed": lambda p: p.pop("tensors"),
}
# edits after which an artifact must not load: an exit 0 means a tampered file was accepted
TAMPERED = {"negated-weights", "tolerance-1e9-negated", "ref-negated", "ref-nan", "ref-inf",
            "sd-nan", "sd-inf", "values-nan"}  # fmt: skip
TOP_LEVEL = {"top-list", "top-none", "top-str", "top-tensor", "top-tuple"}


def semantic_variants(seed: Seed) -> list[str]:
    """The payload edits that make sense for a seed's kind."""
    names = list(SD_EDITS) if seed.kind == "state_dict" else []
    if seed.kind in META_KINDS:
        names = list(SD_EDITS) + list(META_EDITS)
    if seed.kind in ARTIFACT_KINDS:
        names += list(ARTIFACT_EDITS)
    if seed.kind == "state_dict":
        names += sorted(TOP_LEVEL)
    return names


def save_payload(ctx: Ctx, edit: Callable[[Any], Any], replace: bool = False, **options) -> Path:
    """Load the seed's payload, apply `edit` (whose result is the new payload if `replace`),
    and write it back with torch.save (`options`: e.g. the legacy, non-zip format)."""
    payload = load_payload(ctx.seed.path)
    result = edit(payload)
    torch.save(result if replace else payload, ctx.dst(), **options)
    return ctx.dst()


def mutate_semantic(ctx: Ctx, variant: str) -> Path:
    """Edit the loaded payload: state_dict tensors, metadata fields, export report, reference."""
    edit = {**SD_EDITS, **META_EDITS, **ARTIFACT_EDITS}[variant]
    ctx.tampered = variant in TAMPERED and ctx.seed.kind in ARTIFACT_KINDS
    return save_payload(ctx, edit, replace=variant in TOP_LEVEL)


# --------------------------------------------------------------------------- sparse indices


def csr_parts(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
    """crow, col, values and shape of `t` (made CSR first if it is dense)."""
    t = t if t.layout == torch.sparse_csr else t.to_sparse_csr()
    return t.crow_indices().clone(), t.col_indices().clone(), t.values().clone(), tuple(t.shape)


def crafted_csr(t: torch.Tensor, variant: str) -> torch.Tensor:
    """A CSR tensor like `t` with its indices broken as `variant` says (no invariant check)."""
    crow, col, values, shape = csr_parts(t)
    if variant == "col-out-of-range":
        col[-1] = shape[1] + 10**6
    elif variant == "col-negative":
        col[0] = -5
    elif variant == "crow-non-monotonic":
        crow[1], crow[2] = crow[2] + 3, crow[1]
    elif variant == "crow-last-too-big":
        crow[-1] = crow[-1] + 1000
    elif variant == "crow-first-nonzero":
        crow[0] = 7
    elif variant == "crow-short":
        crow = crow[:-5]
    elif variant == "values-short":
        values = values[:-3]
    elif variant == "index-dtype-mixed":
        col = col.to(torch.int64 if col.dtype == torch.int32 else torch.int32)
    elif variant == "size-more-cols":
        shape = (shape[0], 10**7)
    elif variant == "values-nan":
        values = torch.full_like(values, float("nan"))
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def crafted_sparse(t: torch.Tensor, variant: str) -> torch.Tensor:
    """Other sparse layouts with broken indices: COO, CSC, BSR."""
    dense = t.to_dense()
    if variant.startswith("coo-"):
        coo = dense.to_sparse().coalesce()
        idx = coo.indices().clone()
        idx[1, -1] = 10**9 if variant == "coo-out-of-range" else -1
        return torch.sparse_coo_tensor(idx, coo.values(), coo.shape, check_invariants=False)
    if variant == "csc-out-of-range":
        csc = dense.to_sparse_csc()
        row = csc.row_indices().clone()
        row[-1] = 10**6
        parts = (csc.ccol_indices(), row, csc.values(), csc.shape)
        return torch.sparse_csc_tensor(*parts, check_invariants=False)
    bsr = dense.to_sparse_bsr((2, 2))
    col = bsr.col_indices().clone()
    col[-1] = 10**6
    parts = (bsr.crow_indices(), col, bsr.values(), bsr.shape)
    return torch.sparse_bsr_tensor(*parts, check_invariants=False)


CSR_VARIANTS = ["col-out-of-range", "col-negative", "crow-non-monotonic", "crow-last-too-big",
                "crow-first-nonzero", "crow-short", "values-short", "index-dtype-mixed",
                "size-more-cols", "values-nan"]  # fmt: skip
OTHER_SPARSE = ["coo-out-of-range", "coo-negative", "csc-out-of-range", "bsr-out-of-range"]


def sparse_variants(seed: Seed) -> list[str]:
    """Broken sparse tensors, for every kind with an editable payload."""
    return CSR_VARIANTS + OTHER_SPARSE if seed.kind in PAYLOAD_KINDS else []


def mutate_sparse(ctx: Ctx, variant: str) -> Path:
    """Put fc1.weight back as a CSR (or COO/CSC/BSR) tensor with out-of-range indices."""
    build = crafted_csr if variant in CSR_VARIANTS else crafted_sparse
    ctx.tampered = variant in TAMPERED and ctx.seed.kind in ARTIFACT_KINDS

    def edit(p):
        sd_of(p)["fc1.weight"] = build(sd_of(p)["fc1.weight"], variant)

    return save_payload(ctx, edit)


# --------------------------------------------------------------------------- code-naming metadata


def code_arch_variants(seed: Seed) -> list[str]:
    """Code-naming architectures, for every kind with sparsebench metadata."""
    if seed.kind not in META_KINDS:
        return []
    return ["subprocess:run", "os:system", "builtins:open", "abs-file.py:build",
            "rel-file.py:build", "cwd-module:build", "torch:load"]  # fmt: skip


def code_arch(ctx: Ctx, variant: str) -> tuple[str, dict]:
    """The arch and arch_kwargs that would create a marker if sparsebench ran them."""
    marker = ctx.marker()
    if variant == "subprocess:run":
        return variant, {"args": ["touch", str(marker)]}
    if variant == "os:system":
        return variant, {"command": f"touch '{marker}'"}
    if variant == "builtins:open":
        return variant, {"file": str(marker), "mode": "w"}
    if variant == "torch:load":  # a chain: the named callable unpickles a second file
        torch.save(evil(ctx), ctx.out / "second.pt")
        return variant, {"f": str(ctx.out / "second.pt"), "weights_only": False}
    source = evil_factory_source(marker)
    if variant == "cwd-module:build":
        (ctx.out / "evil_arch_mod.py").write_text(source)
        return "evil_arch_mod:build", {}
    (ctx.out / "evil_arch.py").write_text(source)
    if variant == "rel-file.py:build":
        return "evil_arch.py:build", {}
    return f"{(ctx.out / 'evil_arch.py').resolve()}:build", {}  # "abs-file.py:build"


def mutate_code_arch(ctx: Ctx, variant: str) -> Path:
    """Metadata naming a callable (or a .py file) that would create a marker if imported."""
    arch, kwargs = code_arch(ctx, variant)

    def edit(p):
        p["sparsebench"]["arch"], p["sparsebench"]["arch_kwargs"] = arch, kwargs

    return save_payload(ctx, edit)


# --------------------------------------------------------------------------- files that run code


def code_exec_variants(seed: Seed) -> list[str]:
    """Crafted files that run code when loaded without weights_only (per kind)."""
    return {
        "checkpoint": ["reduce-in-extra", "reduce-in-state_dict", "reduce-top-level",
                       "reduce-legacy-format", "reduce-raw-pickle"],
        "state_dict": ["reduce-in-state_dict", "reduce-legacy-format", "reduce-raw-pickle"],
        "artifact-dense": ["reduce-in-tensors", "reduce-in-payload"],
        "artifact-csr": ["reduce-in-tensors", "reduce-in-state_dict"],
        "artifact-channels": ["reduce-in-payload", "reduce-legacy-format"],
        "pickled-module": ["module-evil-attr", "module-evil-attr-legacy", "reduce-top-level"],
        "torchscript": ["forward-victim", "setstate-marker", "forward-victim-as-.pth",
                        "setstate-marker-as-.pt2"],
        "export-pt2": ["sample-inputs-pickle", "pickled-weight", "pickled-weight-as-.pt"],
    }.get(seed.kind, [])  # fmt: skip


def mutate_pickle_exec(ctx: Ctx, variant: str) -> Path:
    """A torch.save / pickle file holding a `__reduce__` that creates a marker."""
    bad = evil(ctx)
    if variant == "reduce-raw-pickle":
        ctx.dst().write_bytes(pickle.dumps({"state_dict": {"fc1.weight": bad}}))
        return ctx.dst()
    if variant.startswith("module-evil-attr"):
        model = pruned_model()
        model.payload = bad
        legacy = {"_use_new_zipfile_serialization": False} if variant.endswith("legacy") else {}
        torch.save(model, ctx.dst(), **legacy)
        return ctx.dst()
    places = {
        "reduce-in-extra": lambda p: p["sparsebench"]["extra"].__setitem__("x", bad),
        "reduce-in-state_dict": lambda p: sd_of(p).__setitem__("fc1.bias", bad),
        "reduce-in-tensors": lambda p: p["tensors"].__setitem__("reference_outputs", bad),
        "reduce-in-payload": lambda p: p["sparsebench"]["export"].__setitem__("payload", bad),
        "reduce-legacy-format": lambda p: sd_of(p).__setitem__("fc1.bias", bad),
    }
    if variant == "reduce-top-level":
        torch.save(bad, ctx.dst())
        return ctx.dst()
    legacy = {"_use_new_zipfile_serialization": False} if "legacy" in variant else {}
    return save_payload(ctx, places[variant], **legacy)


def mutate_torchscript_exec(ctx: Ctx, variant: str) -> Path:
    """A scripted module that overwrites a victim (forward) or creates a marker (on load)."""
    suffix = variant.split("-as-")[1] if "-as-" in variant else ".pt"
    module = VictimWriter(str(ctx.victim()), str(ctx.marker()))
    torch.jit.save(torch.jit.script(module), ctx.dst(suffix))
    return ctx.dst(suffix)


def mutate_pt2_exec(ctx: Ctx, variant: str) -> Path:
    """A .pt2 whose sample inputs or a weight are a pickle (loaded with weights_only=False)."""
    entries = read_entries(ctx.seed.path)
    payload = io.BytesIO()
    torch.save(evil(ctx), payload)
    if variant == "sample-inputs-pickle":
        find(entries, "/sample_inputs/model.pt").data = payload.getvalue()
    else:
        config_entry = find(entries, "model_weights_config.json")
        config = json.loads(config_entry.data)
        name = next(iter(config["config"]))
        config["config"][name]["use_pickle"] = True
        config_entry.data = json.dumps(config).encode()
        find(entries, "/weights/" + config["config"][name]["path_name"]).data = payload.getvalue()
    suffix = ".pt" if variant.endswith(".pt") else ".pt2"
    return write_entries(ctx.dst(suffix), entries)


def mutate_code_exec(ctx: Ctx, variant: str) -> Path:
    """Dispatch to the crafted file of the seed's kind."""
    if ctx.seed.kind == "torchscript":
        return mutate_torchscript_exec(ctx, variant)
    if ctx.seed.kind == "export-pt2":
        return mutate_pt2_exec(ctx, variant)
    return mutate_pickle_exec(ctx, variant)


# --------------------------------------------------------------------------- ONNX edits


def onnx_meta(model) -> dict:
    """The sparsebench metadata of an ONNX model proto."""
    return json.loads(next(p.value for p in model.metadata_props if p.key == "sparsebench"))


def set_onnx_meta(model, value: Any, raw: str | None = None) -> None:
    """Replace the sparsebench metadata by `value` as JSON (or the raw string)."""
    prop = next(p for p in model.metadata_props if p.key == "sparsebench")
    prop.value = raw if raw is not None else json.dumps(value)


def _onnx_meta_edit(fn: Callable[[dict], Any]) -> Callable[[Any, Ctx], None]:
    """An ONNX edit applying `fn` to the parsed sparsebench metadata."""

    def edit(model, ctx):
        meta = onnx_meta(model)
        fn(meta)
        set_onnx_meta(model, meta)

    return edit


def _external(location: Callable[[Ctx], str], length: int | None = None) -> Callable:
    """Make fc1.weight an external-data tensor at `location(ctx)`."""

    def edit(model, ctx):
        from onnx import TensorProto

        tensor = next(t for t in model.graph.initializer if t.name == "fc1.weight")
        size = len(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        fields = {"location": location(ctx), "offset": "0", "length": str(length or size)}
        for key, value in fields.items():
            tensor.external_data.add(key=key, value=value)
        ctx.tampered = True

    return edit


def _negate_initializers(model, ctx: Ctx, tolerance: float | None = None) -> None:
    """Negate every weight; optionally claim a tolerance of `tolerance` in the metadata."""
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), tensor.name))
    if tolerance is not None:
        meta = onnx_meta(model)
        meta["verification"] = {"tolerance": tolerance, "passed": True}
        meta["tolerance"] = tolerance
        set_onnx_meta(model, meta)
    ctx.tampered = True


def _symlink_passwd(ctx: Ctx) -> str:
    """A relative external-data location that is a symlink to /etc/passwd."""
    (ctx.out / "weights.bin").symlink_to("/etc/passwd")
    return "weights.bin"


def _onnx_code_arch(model, ctx: Ctx) -> None:
    """Metadata naming `subprocess:run` with arguments that create a marker."""
    meta = onnx_meta(model)
    meta["arch"], meta["arch_kwargs"] = "subprocess:run", {"args": ["touch", str(ctx.marker())]}
    set_onnx_meta(model, meta)


def _duplicate_meta(model, ctx: Ctx) -> None:
    """A second, garbage `sparsebench` metadata entry before the real one."""
    props = [(p.key, p.value) for p in model.metadata_props]
    model.ClearField("metadata_props")
    model.metadata_props.add(key="sparsebench", value="[1, 2]")
    for key, value in props:
        model.metadata_props.add(key=key, value=value)


def _meta_key(key: str, value: Any) -> Callable[[Any, Ctx], None]:
    """An ONNX edit setting one metadata field."""
    return _onnx_meta_edit(lambda d: d.__setitem__(key, value))


def _ref_key(key: str, value: Any) -> Callable[[Any, Ctx], None]:
    """An ONNX edit setting one field of the stored reference outputs."""
    return _onnx_meta_edit(lambda d: d["reference_outputs"].__setitem__(key, value))


def _weight(model):
    """The fc1.weight initializer."""
    return next(t for t in model.graph.initializer if t.name == "fc1.weight")


def _input_type(model):
    """The tensor type of the graph's first input."""
    return model.graph.input[0].type.tensor_type


ONNX_EDITS: dict[str, Callable[[Any, Ctx], None]] = {
    "meta-invalid-json": lambda m, c: set_onnx_meta(m, None, raw='{"input_shape": [1, 40'),
    "meta-not-object": lambda m, c: set_onnx_meta(m, [1, 2]),
    "meta-removed": lambda m, c: m.ClearField("metadata_props"),
    "meta-duplicate-key": _duplicate_meta,
    "meta-shape-str": _meta_key("input_shape", "1,40"),
    "meta-shape-negative": _meta_key("input_shape", [1, -40]),
    "meta-shape-huge": _meta_key("input_shape", [1, 10**12]),
    "meta-shape-huge-batch": _meta_key("input_shape", [10**9, 40]),
    "meta-shape-nested": _meta_key("input_shape", [[1, 40]]),
    "meta-shape-empty": _meta_key("input_shape", []),
    "meta-layers-garbled": _meta_key("layers", "x"),
    "meta-classes-int": _meta_key("classes", 7),
    "ref-removed": _onnx_meta_edit(lambda d: d.pop("reference_outputs")),
    "ref-nan": _ref_key("values", [float("nan")] * 80),
    "ref-wrong-shape": _ref_key("shape", [3, 3]),
    "ref-values-str": _ref_key("values", "x"),
    "ref-shape-huge": _ref_key("shape", [10**6, 10**6]),
    "ref-not-dict": _meta_key("reference_outputs", [1, 2]),
    "negated-initializers": _negate_initializers,
    "tolerance-1e9-negated": lambda m, c: _negate_initializers(m, c, 1e9),
    "code-arch": _onnx_code_arch,
    "external-etc-passwd": _external(lambda c: "/etc/passwd"),
    "external-traversal": _external(lambda c: "../../../../../../../../etc/passwd"),
    "external-symlink": _external(_symlink_passwd),
    "external-missing": _external(lambda c: "nope.bin"),
    "external-huge-length": _external(lambda c: "/etc/passwd", 10**12),
    "init-dims-wrong": lambda m, c: _weight(m).dims.__setitem__(1, 41),
    "init-raw-truncated": lambda m, c: setattr(_weight(m), "raw_data", b"\x00" * 10),
    "init-dtype-double": lambda m, c: setattr(_weight(m), "data_type", 11),
    "opset-999": lambda m, c: setattr(m.opset_import[0], "version", 999),
    "op-unknown": lambda m, c: setattr(m.graph.node[0], "op_type", "EvilOp"),
    "op-custom-domain": lambda m, c: setattr(m.graph.node[0], "domain", "com.evil"),
    "input-dims-huge": lambda m, c: setattr(_input_type(m).shape.dim[1], "dim_value", 10**12),
    "input-elem-string": lambda m, c: setattr(_input_type(m), "elem_type", 8),
    "graph-no-nodes": lambda m, c: m.graph.ClearField("node"),
    "output-removed": lambda m, c: m.graph.ClearField("output"),
}
ONNX_TAMPERED = {"negated-initializers", "tolerance-1e9-negated", "ref-nan", "ref-wrong-shape"}


def mutate_onnx(ctx: Ctx, variant: str) -> Path:
    """Edit the ONNX proto: metadata JSON, reference, external data, initializers, graph."""
    import onnx

    model = onnx.load(str(ctx.seed.path))
    ONNX_EDITS[variant](model, ctx)
    ctx.tampered |= variant in ONNX_TAMPERED
    ctx.dst().write_bytes(model.SerializeToString())
    return ctx.dst()


# --------------------------------------------------------------------------- the families


@dataclass(frozen=True)
class Family:
    """A mutator family: which variants it has for a seed, and how to make one."""

    variants: Callable[[Seed], list[str]]
    apply: Callable[[Ctx, str], Path]


TRUNCATIONS = ["random", "half", "empty", "minus-22", "1-byte", "minus-1"]
RANDOM_BYTES = ["splice", "whole", "overwrite", "append", "zip-magic", "onnx-like"]
RECOMPRESSIONS = ["deflate", "bzip2", "lzma", "stored-unaligned", "deflate-first-entry"]
DUPLICATES = ["evil-copy-last", "evil-copy-first", "first-entry-twice", "all-twice"]


def _zip_only(variants: Callable[[Seed], list[str]]) -> Callable[[Seed], list[str]]:
    """`variants`, for zip-based seeds only."""
    return lambda seed: variants(seed) if seed.is_zip else []


def bitflip_variants(seed: Seed) -> list[str]:
    """How many bits to flip, and where."""
    return ["1", "8", "pickle-8" if seed.is_zip else "64", "header-8", "64"]


def families(bomb_bytes: int) -> dict[str, Family]:
    """Every mutator family, in the order a short run samples them."""
    return {
        "control": Family(lambda s: ["unmodified"], mutate_control),
        "truncate": Family(lambda s: TRUNCATIONS, mutate_truncate),
        "bitflip": Family(bitflip_variants, mutate_bitflip),
        "random-bytes": Family(lambda s: RANDOM_BYTES, mutate_random_bytes),
        "zip-entry": Family(_zip_only(zip_entry_variants), mutate_zip_entry),
        "zip-recompress": Family(_zip_only(lambda s: RECOMPRESSIONS), mutate_zip_recompress),
        "zip-duplicate": Family(_zip_only(lambda s: DUPLICATES), mutate_zip_duplicate),
        "zip-bomb": Family(_zip_only(zip_bomb_variants), partial(mutate_zip_bomb, bomb=bomb_bytes)),
        "semantic": Family(semantic_variants, mutate_semantic),
        "sparse-indices": Family(sparse_variants, mutate_sparse),
        "onnx-edit": Family(lambda s: list(ONNX_EDITS) if s.kind == "onnx" else [], mutate_onnx),
        "code-arch": Family(code_arch_variants, mutate_code_arch),
        "code-exec": Family(code_exec_variants, mutate_code_exec),
        "renamed": Family(renamed_variants, mutate_renamed),
    }


# --------------------------------------------------------------------------- planning


EXHAUSTIVE = {"control", "code-arch", "code-exec"}  # every variant of every kind, always


@dataclass
class Slot:
    """One (family, seed) pair and its variants; `offset` spreads variants across kinds."""

    family: str
    seed: Seed
    variants: list[str]
    offset: int = 0


def plan_slots(seeds: list[Seed], table: dict[str, Family], only: set[str]) -> list[Slot]:
    """Every applicable (family, seed) pair, interleaved so that families alternate.

    `only` restricts to the families and/or kinds it names."""
    kinds = only & {s.kind for s in seeds} or {s.kind for s in seeds}
    names = only & set(table) or set(table)
    per_family = []
    for name, family in table.items():
        chosen = [s for s in seeds if s.kind in kinds] if name in names else []
        slots = [Slot(name, s, vs) for s in chosen if (vs := family.variants(s))]
        for position, slot in enumerate(slots):  # kinds start at different variants
            slot.offset = position * max(len(slot.variants) // len(slots), 1)
        per_family.append(slots)
    return [s for group in itertools.zip_longest(*per_family) for s in group if s is not None]


def quotas(slots: list[Slot], count: int) -> list[int]:
    """Cases per slot: one each (the code families: every variant), the rest of `count` shared
    among families in proportion to their variants, and within a family among its kinds."""
    per_family = Counter(s.family for s in slots)
    weight = [len(s.variants) / per_family[s.family] for s in slots]
    full = [len(s.variants) if s.family in EXHAUSTIVE else 1 for s in slots]
    total = sum(w for s, w in zip(slots, weight, strict=True) if s.family not in EXHAUSTIVE)
    spare = max(count - sum(full), 0)
    return [f if s.family in EXHAUSTIVE else 1 + int(spare * w / (total or 1))
            for s, w, f in zip(slots, weight, full, strict=True)]  # fmt: skip


def plan_picks(slots: list[Slot], count: int) -> list[tuple[Slot, str]]:
    """`count` (slot, variant) picks (0: every variant of every slot once): round r gives each
    slot still under its quota its r-th variant, so a short run samples every family; past
    the quotas, rounds go on over all slots but the controls."""
    quota = quotas(slots, count) if count > 0 else [len(s.variants) for s in slots]
    count = count if count > 0 else sum(quota)
    again = [s for s in slots if s.family != "control"] or slots
    picks: list[tuple[Slot, str]] = []
    for round_ in itertools.count():
        if not slots or len(picks) >= count:
            return picks[:count]
        active = [s for s, q in zip(slots, quota, strict=True) if round_ < q] or again
        for slot in active:
            picks.append((slot, slot.variants[(round_ + slot.offset) % len(slot.variants)]))


def command_for(ctx: Ctx, path: Path, export: bool) -> list[str]:
    """The sparsebench command line of a case (never --trust-checkpoint)."""
    extra = ctx.seed.args
    cli = [sys.executable, "-m", "sparsebench"]
    if export:
        return [*cli, "export", str(path), "-f", "dense", "-o", str(ctx.out / "out.pt"), *extra]
    return [*cli, "profile", str(path), *FAST, *extra]


def build_case(number: int, pick: tuple[Slot, str], table: dict, workdir: Path, seed: int) -> Case:
    """Make the mutated file of one pick and the command that runs it."""
    slot, variant = pick
    case_id = f"{number:04d}"
    out = workdir / "cases" / case_id
    out.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(slot.seed, out, random.Random(f"{seed}:{case_id}:{variant}"), case_id)
    path = table[slot.family].apply(ctx, variant)
    export = ctx.rng.random() < 0.25
    return Case(
        id=case_id,
        kind=slot.seed.kind,
        family=slot.family,
        variant=variant,
        command=command_for(ctx, path, export),
        verb="export" if export else "profile",
        cwd=out,
        markers=ctx.markers,
        victims=ctx.victims,
        tampered=ctx.tampered,
    )


def build_cases(picks, table, workdir: Path, seed: int) -> tuple[list[Case], list[str]]:
    """All cases, plus a line for every mutation that could not be built."""
    cases, skipped = [], []
    for number, (slot, variant) in enumerate(picks):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cases.append(build_case(number, (slot, variant), table, workdir, seed))
        except Exception as exc:  # a mutation torch/onnx refuses to write: report, go on
            where = f"{slot.seed.kind} / {slot.family} / {variant}"
            skipped.append(f"{where}: {type(exc).__name__}: {exc}"[:300])
    return cases, skipped


# --------------------------------------------------------------------------- running


def child_env() -> dict[str, str]:
    """The environment of a case: this checkout first, no debug tracebacks."""
    env = dict(os.environ)
    env.pop("SPARSEBENCH_DEBUG", None)  # the CLI must catch everything by itself
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


def limited(command: list[str], memory_gib: float) -> list[str]:
    """`command` under an address-space limit (a zip bomb must not take the machine down)."""
    if memory_gib <= 0:
        return command
    kib = int(memory_gib * 2**20)
    return ["/bin/sh", "-c", 'ulimit -v "$0" && exec "$@"', str(kib), *command]


def execute(command: list[str], cwd: Path, timeout: float) -> tuple[int | None, str, bool]:
    """Run `command` in its own session; kill the whole group on timeout (and after)."""
    pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    proc = subprocess.Popen(command, cwd=cwd, env=child_env(), start_new_session=True, **pipes)
    hung = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything a payload left running
    except ProcessLookupError:
        pass
    return (None if hung else proc.returncode), output.decode(errors="replace"), hung


def classify(returncode: int | None, output: str, hung: bool) -> str:
    """ok / clean error / traceback / signal / hang / other exit."""
    if hung:
        return "hang"
    if returncode is not None and returncode < 0:
        return "signal"
    if "Traceback" in output or "error: unexpected" in output:
        return "traceback"
    if returncode == 0:
        return "ok"
    errors = [line for line in output.splitlines() if line.lstrip().startswith("error:")]
    if returncode == 2 and len(errors) == 1 and "error: unexpected" not in output:
        return "clean error"
    return "other exit"


def first_error_line(output: str) -> str:
    """The `error:` line, else the last line of a traceback, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[0][:300]
    return (lines[-1] if lines else "(no output)")[:300]


def code_ran(case: Case, workdir: Path) -> bool:
    """Whether a marker of the case appeared or one of its victims changed."""
    stray = list(case.cwd.glob(f"{MARKER}*")) + list(workdir.glob(f"**/{MARKER}-{case.id}-*"))
    changed = any(not p.exists() or p.read_bytes() != data for p, data in case.victims.items())
    return bool(stray) or any(m.exists() for m in case.markers) or changed


def run_case(case: Case, workdir: Path, timeout: float, memory_gib: float) -> Result:
    """Run one case and classify how it ended."""
    start = time.monotonic()
    returncode, output, hung = execute(limited(case.command, memory_gib), case.cwd, timeout)
    (case.cwd / "output.txt").write_text(" ".join(case.command) + "\n\n" + output)
    return Result(
        case=case,
        outcome=classify(returncode, output, hung),
        returncode=returncode,
        first_line=first_error_line(output),
        code_executed=code_ran(case, workdir),
        seconds=time.monotonic() - start,
    )


def run_cases(cases: list[Case], workdir: Path, timeout: float, jobs: int, memory_gib: float,
              log=print) -> list[Result]:  # fmt: skip
    """Run every case, `jobs` at a time, logging one line per finished case."""
    results: list[Result] = []

    def one(case: Case) -> Result:
        result = run_case(case, workdir, timeout, memory_gib)
        results.append(result)
        flag = " CODE EXECUTED" if result.code_executed else ""
        log(f"[{len(results)}/{len(cases)}] {case.id} {case.kind} / {case.family} / "
            f"{case.variant}: {result.outcome}{flag} ({result.seconds:.1f} s)")  # fmt: skip
        return result

    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        ordered = list(pool.map(one, cases))
    return ordered


# --------------------------------------------------------------------------- report


def is_clean(result: Result) -> bool:
    """ok or a clean error, and no code executed."""
    return result.outcome in ("ok", "clean error") and not result.code_executed


def failed(results: list[Result]) -> list[Result]:
    """Cases that fail the run: traceback, signal, hang or code executed."""
    return [r for r in results if r.outcome in BAD or r.code_executed]


def render_table(results: list[Result]) -> str:
    """Markdown table by file kind x mutator family, with totals."""
    columns = ["cases", *OUTCOMES, "code executed"]
    rows: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in results:
        for key in [(r.case.kind, r.case.family), ("**total**", "")]:
            rows[key]["cases"] += 1
            rows[key][r.outcome] += 1
            rows[key]["code executed"] += r.code_executed
    lines = ["| kind | mutator | " + " | ".join(columns) + " |"]
    lines.append("|---|---|" + "---:|" * len(columns))
    for (kind, family), counts in sorted(rows.items(), key=lambda kv: (kv[0][0][0] == "*", kv[0])):
        lines.append(f"| {kind} | {family} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    return "\n".join(lines)


def label(case: Case) -> str:
    """'kind / family / variant [verb]'."""
    return f"{case.kind} / {case.family} / {case.variant} [{case.verb}]"


def render_cases(results: list[Result]) -> str:
    """Every non-clean case, and every tampered file that was accepted."""
    lines = []
    dirty = [r for r in results if not is_clean(r)]
    if dirty:
        lines += ["", f"Non-clean cases ({len(dirty)}):", ""]
        for r in sorted(dirty, key=lambda r: (r.case.kind, r.case.family, r.case.variant)):
            flag = " **CODE EXECUTED**" if r.code_executed else ""
            where = f"{r.case.id} {label(r.case)}"
            lines.append(f"- {where} {r.outcome} rc={r.returncode}{flag}: `{r.first_line}`")
    accepted = [r for r in results if r.case.tampered and r.outcome == "ok"]
    if accepted:
        lines += ["", f"Tampered files accepted with exit 0 ({len(accepted)}):", ""]
        lines += [f"- {r.case.id} {label(r.case)}" for r in accepted]
    return "\n".join(lines)


def render(results: list[Result], skipped: list[str], workdir: Path) -> str:
    """The whole report."""
    parts = [render_table(results), render_cases(results)]
    if skipped:
        parts += ["", f"Mutations that could not be built ({len(skipped)}):", ""]
        parts += [f"- {line}" for line in skipped]
    parts += ["", f"Case files and outputs: {workdir / 'cases'} (each has output.txt)"]
    return "\n".join(parts)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cases_help = "number of cases (default 240; 0: every variant once, about 1100)"
    parser.add_argument("--cases", type=int, default=240, help=cases_help)
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--workdir", type=Path, help="keep seeds and cases here (default: temp)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--only", default="", help="comma-separated families and/or kinds")
    parser.add_argument("--bomb-mib", type=int, default=1024, help="zip bomb size (MiB)")
    parser.add_argument("--memory-limit-gib", type=float, default=8.0,
                        help="address-space limit per case, 0 for none (default 8)")  # fmt: skip
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[list[Case], list[str], Path]:
    """Seeds, the plan and the mutated files."""
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="sparsebench-fuzz-"))).resolve()
    if (workdir / "cases").exists():
        shutil.rmtree(workdir / "cases")
    seeds = build_seeds(workdir / "seeds")
    table = families(args.bomb_mib * 2**20)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    picks = plan_picks(plan_slots(seeds, table, only), args.cases)
    cases, skipped = build_cases(picks, table, workdir, args.seed)
    return cases, skipped, workdir


def main(argv: list[str] | None = None) -> int:
    """Build, run and report; 1 if any case had a traceback, signal, hang or ran code."""
    args = parse_args(argv)
    started = time.monotonic()
    cases, skipped, workdir = prepare(args)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    log(f"{len(cases)} cases in {workdir} ({len(skipped)} mutations not built)")
    results = run_cases(cases, workdir, args.timeout, args.jobs, args.memory_limit_gib, log)
    print(render(results, skipped, workdir))
    print(f"\n{len(results)} cases in {time.monotonic() - started:.0f} s; "
          f"{len(failed(results))} failing (traceback, signal, hang or code executed)")  # fmt: skip
    return 1 if failed(results) else 0


if __name__ == "__main__":
    sys.exit(main())

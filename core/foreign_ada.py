"""NVIDIA's stylegan2-ada-pytorch network pickles as gansweep sources (``gansweep import
stylegan2-ada NETWORK.pkl``): read by core.nvidia_pickle without running their code, their
``G_ema`` (or ``G``) and ``D`` mapped onto our ``stylegan2`` (core.stylegan2), every key and
shape checked.

The configuration is read off the networks themselves (the attributes their constructors
set, and the tensors' shapes), not off NVIDIA's defaults: channels per resolution (NVIDIA's
min(channel_base // res, channel_max), ours with width = channel_max), the mapping depth,
``conv_clamp``, the minibatch-stddev group size and channels, whether W's mean is tracked.
What our architecture cannot compute is refused in one line naming it: class-conditional
networks (c_dim > 0), G architectures other than 'skip' and D architectures other than
'resnet', other activations, resample filters or learning-rate multipliers, z_dim != w_dim,
a mapping width other than w_dim. Layers NVIDIA computes in float16 (``num_fp16_res``, its
training configs' 4 highest resolutions, on a GPU) compute in float32 here, as NVIDIA's own
code does on the CPU.

Key mapping, NVIDIA's -> ours (k = log2(r) - 3 for G's block of resolution r; j = log2(size)
- log2(r) + 1 for D's); tensors gain or lose singleton axes only:

- ``mapping.fc{i}.*``, ``mapping.w_avg`` -> ``style.{i+1}.*``, ``style.w_avg``;
  ``synthesis.b4.const`` [C,4,4] -> ``input.input`` [1,C,4,4];
- ``synthesis.b4.conv1``, ``b{r}.conv0``, ``b{r}.conv1`` -> ``conv1``, ``convs.{2k}``,
  ``convs.{2k+1}``: ``weight`` [O,I,3,3] -> ``conv.weight`` [1,O,I,3,3], ``affine.*`` ->
  ``conv.modulation.*``, ``noise_strength`` [] -> ``noise.weight`` [1], ``bias`` ->
  ``activate.bias``, ``noise_const`` [R,R] -> ``noises.noise_{0, 2k+1, 2k+2}`` [1,1,R,R];
- ``synthesis.b4.torgb``, ``b{r}.torgb`` -> ``to_rgb1``, ``to_rgbs.{k}``: ``weight``
  [3,C,1,1] -> ``conv.weight`` [1,3,C,1,1], ``bias`` [3] -> ``bias`` [1,3,1,1], ``affine.*``
  -> ``conv.modulation.*``;
- D: ``b{size}.fromrgb`` -> ``convs.0.0.weight``, ``convs.0.1.bias``; ``b{r}.conv0``,
  ``.conv1``, ``.skip`` -> ``convs.{j}.conv1.0/1``, ``.conv2.1/2``, ``.skip.1``; ``b4.conv``,
  ``.fc``, ``.out`` -> ``final_conv.0/1``, ``final_linear.0``, ``final_linear.1``.

``resample_filter`` buffers must be the [1, 3, 3, 1] filter (ours are that constant).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from gansweep.core.errors import GansweepError
from gansweep.core.foreign import IMPORTERS, Importer, build_exact, meta_models
from gansweep.core.models import MAX_MAPPING, MAX_WIDTH, ArchConfig, TransferNet
from gansweep.core.nvidia_pickle import Persistent, read_network_pickle
from gansweep.core.pickle_parts import first_line, quote
from gansweep.core.stylegan2 import W_AVG_BETA
from gansweep.core.stylegan2_layers import fir_kernel

GENERATORS = ("G_ema", "G")  # the first is the default: the generator NVIDIA samples with
MAPPING_LR = 0.01
# beyond what any published network has: a file's claim past them is refused before
# anything is sized by it (widths and mapping depth: core.models's bounds)
MAX_RESOLUTION = 4096
RES = "(4|8|16|32|64|128|256|512|1024|2048|4096)"  # a block's resolution, as its name has it


def read_ada(path: Path, d_path: Path | None, trust_pickle: bool, generator: str | None
             ) -> tuple[Persistent, Persistent]:
    """The chosen generator and D of a network pickle, as inert records."""
    del d_path, trust_pickle  # one file; never unpickled with arbitrary objects
    data = read_network_pickle(path)
    for name in (generator, "D"):
        if name not in data:
            have = ", ".join(quote(k) for k in list(data)[:8]) + (", …" if len(data) > 8 else "")
            raise GansweepError(f"{path.name}: holds no network {name!r} (it has {have}); not "
                                f"a stylegan2-ada-pytorch snapshot of G, D and G_ema")
        if not isinstance(data[name], Persistent):
            raise GansweepError(f"{path.name}: its {name!r} is a {type(data[name]).__name__}, "
                                f"not one of NVIDIA's persistent networks")
    return data[generator], data["D"]


PLAIN = (type(None), bool, int, float, str)


def _sub(net: Persistent, path: str) -> Persistent:
    """A sub-module by dotted path (``synthesis.b8``); a missing one is one line."""
    for m in path.split("."):
        sub = net.module(m)
        if sub is None:
            raise GansweepError(f"{net.class_name} has no {m!r} (in {path})")
        net = sub
    return net


def _attr(net: Persistent, path: str) -> Any:
    """A plain attribute of a sub-module, by dotted path (``synthesis.b8.architecture``)."""
    modules, _, name = path.rpartition(".")
    value = (_sub(net, modules) if modules else net).field(name)
    if not isinstance(value, PLAIN):
        raise GansweepError(f"{net.class_name}.{path}: a {type(value).__name__}, not a "
                            f"number, flag or name")
    return value


def _require(net: str, path: str, have: Any, want: Any, why: str) -> None:
    if type(have) is not type(want) and not (isinstance(have, (int, float)) and
                                             isinstance(want, (int, float))) or have != want:
        raise GansweepError(f"{net}.{path} = {quote(have)}: {why}")


def _count(rec: Persistent, path: str, lo: int, hi: int, net: str) -> int:
    """An integer attribute within the bounds an architecture can have (checked before
    anything is sized by it)."""
    value = _attr(rec, path)
    if type(value) is not int or not lo <= value <= hi:
        raise GansweepError(f"{net}.{path} = {quote(value)}: not an integer in [{lo}, {hi}]")
    return value


def _one(values: dict[str, Any], what: str) -> Any:
    """The one value every listed layer has for a setting our architecture holds once."""
    distinct = {repr(v) for v in values.values()}
    if len(distinct) > 1:
        shown = ", ".join(f"{k}: {quote(v)}" for k, v in list(values.items())[:4]) + \
            (", …" if len(values) > 4 else "")
        raise GansweepError(f"{what} differs between layers ({shown}); ours has one value for "
                            f"all of G's and D's layers")
    return next(iter(values.values()))


def _channel_base(table: dict[int, int], width: int) -> int | None:
    """NVIDIA's channel_base for a table of channels per resolution with channel_max =
    ``width``: None where the table is rosinality's (64 * width), the smallest base that
    gives it otherwise (the tensors' shapes are checked against it afterwards)."""
    below = sorted(r for r, c in table.items() if c < width)
    if not below:
        return None
    base = table[below[0]] * below[0]
    return None if base == 64 * width else base


def ada_arch(g: Persistent, d: Persistent, generator: str) -> tuple[ArchConfig, dict]:
    """Our ``stylegan2`` configuration of an NVIDIA G/D pair, and what the import records
    about it (``num_fp16_res``); refuses in one line what our architecture cannot compute."""
    for net, rec, cls in ((generator, g, "Generator"), ("D", d, "Discriminator")):
        _require(net, "class", rec.class_name, cls, f"not stylegan2-ada-pytorch's {cls}")
        _require(net, "c_dim", _attr(rec, "c_dim"), 0, "class-conditional networks cannot be "
                 "represented (our stylegan2 is unconditional)")
        _require(net, "img_channels", _attr(rec, "img_channels"), 3, "ours makes RGB images")
    resolution = _count(g, "img_resolution", 4, MAX_RESOLUTION, generator)
    if resolution & (resolution - 1):
        raise GansweepError(f"{generator}.img_resolution = {resolution}: not a power of two")
    z_dim, w_dim = (_count(g, k, 1, MAX_WIDTH, generator) for k in ("z_dim", "w_dim"))
    _require("D", "img_resolution", _attr(d, "img_resolution"), resolution, f"G makes "
             f"{resolution} px images")
    _require(generator, "z_dim", z_dim, w_dim, f"ours maps Z to W of the same size (w_dim "
             f"{w_dim})")
    log = int(math.log2(resolution))
    g_blocks = [f"synthesis.b{2 ** i}" for i in range(2, log + 1)]
    d_blocks = [f"b{2 ** i}" for i in range(log, 2, -1)]
    for b in g_blocks:
        _require(generator, f"{b}.architecture", _attr(g, f"{b}.architecture"), "skip",
                 "our stylegan2 builds G's 'skip' architecture only")
    for b in d_blocks + ["b4"]:
        _require("D", f"{b}.architecture", _attr(d, f"{b}.architecture"), "resnet",
                 "our stylegan2 builds D's 'resnet' architecture only")
    mapping = _sub(g, "mapping")
    layers = _count(g, "mapping.num_layers", 1, MAX_MAPPING, generator)
    for i in range(layers):
        fc = f"mapping.fc{i}"
        _require(generator, f"{fc}.activation", _attr(g, f"{fc}.activation"), "lrelu",
                 "ours is leaky ReLU")
        _require(generator, f"{fc}.bias_gain", _attr(g, f"{fc}.bias_gain"), MAPPING_LR,
                 f"ours learns the mapping at lr x {MAPPING_LR}")
    beta = _attr(mapping, "w_avg_beta")
    if beta is not None:
        _require(generator, "mapping.w_avg_beta", beta, W_AVG_BETA, "ours tracks W's mean "
                 f"with decay {W_AVG_BETA}")
    convs = [f"{b}.conv{i}" for b in g_blocks for i in (0, 1) if b != "synthesis.b4" or i]
    for c in convs:
        _require(generator, f"{c}.activation", _attr(g, f"{c}.activation"), "lrelu",
                 "ours is leaky ReLU")
        _require(generator, f"{c}.use_noise", _attr(g, f"{c}.use_noise"), True,
                 "ours has noise inputs")
    d_convs = [f"b{resolution}.fromrgb"] + [f"{b}.conv{i}" for b in d_blocks for i in (0, 1)]
    for c in d_convs + ["b4.conv"]:
        _require("D", f"{c}.activation", _attr(d, f"{c}.activation"), "lrelu",
                 "ours is leaky ReLU")
    for c in ("b4.fc", "b4.out"):
        _require("D", f"{c}.bias_gain", _attr(d, f"{c}.bias_gain"), 1, "ours learns D's "
                 "linear layers at the base lr")
    clamps = {f"{generator}.{c}": _attr(g, f"{c}.conv_clamp") for c in convs}
    clamps.update({f"{generator}.{b}.torgb": _attr(g, f"{b}.torgb.conv_clamp")
                   for b in g_blocks})
    clamps.update({f"D.{c}": _attr(d, f"{c}.conv_clamp") for c in d_convs + ["b4.conv"]})
    clamp = _one(clamps, "conv_clamp")
    mbstd = _sub(d, "b4").module("mbstd")
    if mbstd is None:
        raise GansweepError("D.b4.mbstd is None (mbstd_num_channels 0): our D always appends "
                            "minibatch-stddev channels")
    if _attr(mbstd, "group_size") is None:
        raise GansweepError("D.b4.mbstd.group_size = None (the whole minibatch): ours needs a "
                            "fixed group size")
    group = _count(d, "b4.mbstd.group_size", 1, 1024, "D")
    mbstd_channels = _count(d, "b4.mbstd.num_channels", 1, 64, "D")
    if clamp is not None and (isinstance(clamp, bool) or not isinstance(clamp, (int, float))
                              or not 0 < clamp < 1e6):
        raise GansweepError(f"conv_clamp = {quote(clamp)}: not a positive number")
    g_tensors = dict(g.tensors())
    g_ch = {}
    for i in range(2, log + 1):
        bias = g_tensors.get(key := f"synthesis.b{2 ** i}.conv1.bias")
        if bias is None or bias.dim() != 1 or not 0 < bias.shape[0] <= MAX_WIDTH:
            raise GansweepError(f"{generator}.{key}: missing, or not a vector of 1 to "
                                f"{MAX_WIDTH} channels")
        g_ch[2 ** i] = bias.shape[0]
    width = max(g_ch.values())
    fp16 = {net: sum(bool(_attr(rec, f"{b}.use_fp16")) for b in blocks)
            for net, rec, blocks in ((generator, g, g_blocks), ("D", d, d_blocks))}
    arch = ArchConfig("stylegan2", resolution, width=width, z_dim=z_dim, mapping_layers=layers,
                      channel_base=_channel_base(g_ch, width),
                      conv_clamp=None if clamp is None else float(clamp),
                      mbstd_group=group, mbstd_channels=mbstd_channels,
                      w_avg=beta is not None)
    return arch, {"num_fp16_res": fp16, "channels": g_ch}


D_RULES = {"conv0.weight": "conv1.0.weight", "conv0.bias": "conv1.1.bias",
           "conv1.weight": "conv2.1.weight", "conv1.bias": "conv2.2.bias",
           "skip.weight": "skip.1.weight"}
D_HEAD = {"b4.conv.weight": "final_conv.0.weight", "b4.conv.bias": "final_conv.1.bias",
          "b4.fc.weight": "final_linear.0.weight", "b4.fc.bias": "final_linear.0.bias",
          "b4.out.weight": "final_linear.1.weight", "b4.out.bias": "final_linear.1.bias"}
STYLED = {"weight": "conv.weight", "affine.weight": "conv.modulation.weight",
          "affine.bias": "conv.modulation.bias", "noise_strength": "noise.weight",
          "bias": "activate.bias"}
TORGB = {"weight": "conv.weight", "bias": "bias", "affine.weight": "conv.modulation.weight",
         "affine.bias": "conv.modulation.bias"}


def ada_g_key(key: str) -> str | None:
    """Our key for NVIDIA's G ``key`` (None: a resample filter, not stored by us)."""
    if key.endswith("resample_filter"):
        return None
    m = re.fullmatch(r"mapping\.fc(0|[1-9][0-9]?)\.(weight|bias)", key)
    if m:
        return f"style.{int(m[1]) + 1}.{m[2]}"
    if key == "mapping.w_avg":
        return "style.w_avg"
    if key == "synthesis.b4.const":
        return "input.input"
    m = re.fullmatch(rf"synthesis\.b{RES}\.(conv[01]|torgb)\.(.+)", key)
    if m:
        k = int(m[1]).bit_length() - 4  # log2(r) - 3
        if m[2] == "torgb" and m[3] in TORGB:
            return f"{'to_rgb1' if k < 0 else f'to_rgbs.{k}'}.{TORGB[m[3]]}"
        conv = "conv1" if k < 0 else f"convs.{2 * k + (m[2] == 'conv1')}"
        if m[3] == "noise_const":
            return f"noises.noise_{0 if k < 0 else 2 * k + 1 + (m[2] == 'conv1')}"
        if m[3] in STYLED:
            return f"{conv}.{STYLED[m[3]]}"
    raise GansweepError(f"G key {quote(key)} has no place in our network")


def ada_d_key(key: str, resolution: int) -> str | None:
    """Our key for NVIDIA's D ``key`` (None: a resample filter)."""
    if key.endswith("resample_filter"):
        return None
    if key in D_HEAD:
        return D_HEAD[key]
    m = re.fullmatch(rf"b{RES}\.(fromrgb|conv[01]|skip)\.(weight|bias)", key)
    if m and m[2] == "fromrgb" and int(m[1]) == resolution:
        return f"convs.0.{0 if m[3] == 'weight' else 1}.{m[3]}"
    if m and f"{m[2]}.{m[3]}" in D_RULES:
        j = resolution.bit_length() - int(m[1]).bit_length() + 1
        return f"convs.{j}.{D_RULES[f'{m[2]}.{m[3]}']}"
    raise GansweepError(f"D key {quote(key)} has no place in our network")


def _squeezed(t: torch.Tensor) -> list[int]:
    return [n for n in t.shape if n != 1]


def load_ada(g_rec: Persistent, d_rec: Persistent, where: str, generator: str | None = None
             ) -> tuple[TransferNet, TransferNet, ArchConfig, dict]:
    """(G, D, arch, notes) holding an NVIDIA network pair's weights exactly."""
    generator = generator or GENERATORS[0]
    try:
        arch, notes = ada_arch(g_rec, d_rec, generator)
    except GansweepError as e:
        raise GansweepError(f"{where}: {e}") from None
    try:
        metas = meta_models(arch)  # an arch our networks cannot be built in is refused too
    except GansweepError as e:
        raise GansweepError(f"{where}: {e}") from None
    except (RuntimeError, ValueError) as e:  # a layer torch cannot make of its sizes
        raise GansweepError(f"{where}: our stylegan2 cannot be built as {arch} "
                            f"({type(e).__name__}: {first_line(e)})") from None
    blur = fir_kernel()
    states = {}
    for net, meta, rec in ((generator, metas[0], g_rec), ("D", metas[1], d_rec)):
        ours = meta.state_dict()
        mapped, names = {}, {}
        for key, value in rec.tensors():
            try:
                mine = ada_g_key(key) if rec is g_rec else ada_d_key(key, arch.resolution)
            except GansweepError as e:
                raise GansweepError(f"{where}: {net} {str(e)[2:]}") from None
            if mine is None:
                if not torch.equal(value, blur):
                    raise GansweepError(f"{where}: {net} key {quote(key)} is not the [1, 3, 3, 1]"
                                        f" resample filter ours uses")
                continue
            if mine in names:
                raise GansweepError(f"{where}: {net} keys {quote(names[mine])} and {quote(key)} "
                                    f"are one tensor of ours")
            if mine in ours and _squeezed(ours[mine]) == _squeezed(value):
                value = value.reshape(ours[mine].shape)  # singleton axes only: [O,I,k,k] ->
                # [1,O,I,k,k] (rosinality's layout), [3] -> [1,3,1,1], [] -> [1], ...
            mapped[mine], names[mine] = value.contiguous(), key
        for key in ours:  # our FIR kernels: the constants checked above
            if key.endswith(".kernel"):
                mapped[key], names[key] = None, "(the resample filter)"
        states[net] = mapped, names
    return (*build_exact(arch, states, where, metas), arch, notes)


# stylegan2-ada-pytorch trains with the non-saturating logistic loss and R1: ours is stylegan2.
IMPORTERS.register("stylegan2-ada")(Importer(load_ada, "stylegan2", read_ada, one_file=True,
                                             generators=GENERATORS))

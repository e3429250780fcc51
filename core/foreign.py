"""Checkpoints of other codebases turned into gansweep sources (``gansweep import``): their
state-dict keys mapped onto our transfer units, every key and shape checked, the origin
recorded. Formats (``IMPORTERS``):

- ``pytorch-examples-dcgan``: ``netG_epoch_N.pth`` / ``netD_epoch_N.pth`` of pytorch/examples'
  DCGAN (64 px): our ``dcgan`` at 64 px, width ngf (= ndf), z_dim nz; D's final 4 x 4 conv
  is our linear ``fc`` unit (its weight flattened, a zero bias), D's sigmoid becomes the
  ``bce`` loss's logit.
- ``mimicry``: torch-mimicry's SNGAN 32/48/64 (``SNGANGenerator32`` ...): our ``sngan``, spectral-
  norm buffers included; a training checkpoint (``model_state_dict``) or a bare state dict.
- ``rosinality``: one training checkpoint of rosinality/stylegan2-pytorch's ``train.py``
  (``g``, ``d``, ``g_ema``, optimisers, ``args``): our ``stylegan2`` (core.stylegan2 has its
  layout, so keys map one to one); G is ``g_ema``, the generator rosinality samples and
  evaluates with, D is ``d``; the configuration is read off the shapes.
- ``stylegan2-ada``: a network pickle of NVIDIA's stylegan2-ada-pytorch (core.foreign_ada),
  read without running its code (core.nvidia_pickle); G is ``G_ema`` (or ``G`` on request).

Files are read by core.torch_files (every size checked against what the file holds, then
``torch.load(weights_only=True)``); one that needs arbitrary Python objects unpickled is
refused unless the caller trusts it (``trust_pickle``): unpickling runs code from the file.
The one exception made without it: a rosinality checkpoint's ``args`` is an
``argparse.Namespace``, built from a dict of names (core.torch_files.NAMESPACE): a bag of
attributes whose values must themselves be plain; constructing one runs no code of the
file's choosing, unlike ``weights_only=False``. Every network is built on the meta device
and checked key by key before any memory is given to it (``build_exact``).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gansweep.core.checkpoint import CHECKPOINT_FORMAT
from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write, file_sha256
from gansweep.core.models import ArchConfig, TransferNet, build_models
from gansweep.core.pickle_parts import quote
from gansweep.core.registry import Registry
from gansweep.core.sngan import LAYOUT
from gansweep.core.torch_files import NAMESPACE, load_torch_file

_MIMICRY_SNGAN = {  # net -> [(their key pattern, our key template)]
    "G": [(r"l1\.(.+)", r"units.fc.l1.\1"), (r"(block\d)\.(.+)", r"units.\1.\2"),
          (r"b[56]\.(.+)", r"units.out.norm.\1"), (r"c[56]\.(.+)", r"units.out.conv.\1")],
    "D": [(r"(block\d)\.(.+)", r"units.\1.\2"), (r"l[56]\.(.+)", r"units.fc.linear.\1")],
}


def mimicry_sngan_key(net: str, key: str, where: str = "mimicry") -> str:
    """Our state-dict key for torch-mimicry's SNGAN ``key`` of ``net`` (G or D)."""
    for pattern, template in _MIMICRY_SNGAN[net]:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, template, key)
    raise GansweepError(f"{where}: {net} key {quote(key)} has no place in our network")


def _shape(state: dict[str, torch.Tensor], key: str, dims: int, what: str) -> torch.Size:
    """The shape of ``state[key]``, which must be a tensor of ``dims`` dimensions."""
    value = state.get(key)
    if not isinstance(value, torch.Tensor) or value.dim() != dims:
        raise GansweepError(f"{what}: its {key!r} is missing or not a {dims}-d tensor")
    return value.shape


def tensors(obj: Any, what: str) -> dict[str, torch.Tensor]:
    """``obj`` as a state dict: a dict of tensors by text keys, or one line saying not."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v)
                                            for k, v in obj.items()):
        raise GansweepError(f"{what}: not a state dict of tensors")
    return obj


def meta_models(arch: ArchConfig) -> tuple[TransferNet, TransferNet]:
    """G and D of ``arch`` on the meta device: their keys and shapes, no memory."""
    with torch.device("meta"):
        return build_models(arch)


def build_exact(arch: ArchConfig, states: dict[str, tuple[dict[str, Any], dict[str, str]]],
                where: str, metas: tuple[TransferNet, TransferNet] | None = None
                ) -> tuple[TransferNet, TransferNet]:
    """G and D of ``arch`` holding ``states`` ({"G": (state, their name of each key), "D":
    ...}) exactly. Every key and shape is checked against the nets built on the meta
    device first, so an architecture a file claims is allocated only once its tensors fill
    it; any missing, extra or misshapen key is one error naming it (in their naming) and
    both shapes. A value of None keeps our own (a constant buffer the file need not hold)."""
    for (net, (state, theirs)), meta in zip(states.items(), metas or meta_models(arch)):
        ours = meta.state_dict()
        for key, value in state.items():
            if key not in ours:
                raise GansweepError(f"{where}: {net} key {quote(theirs[key])} has no place in "
                                    f"our network")
            if value is not None and ours[key].shape != value.shape:
                raise GansweepError(f"{where}: {net} key {quote(theirs[key])} has shape "
                                    f"{list(value.shape)}, ours {list(ours[key].shape)}")
        missing = sorted(set(ours) - set(state))
        if missing:
            raise GansweepError(f"{where}: {net} lacks {missing[0]!r} (shape "
                                f"{list(ours[missing[0]].shape)}) and {len(missing) - 1} more")
    _distinct_bytes(states, where)
    nets = build_models(arch)
    for (state, _), module in zip(states.values(), nets):
        own = module.state_dict()
        module.load_state_dict({k: own[k] if v is None else v for k, v in state.items()})
    return nets


def _distinct_bytes(states: dict[str, tuple[dict[str, Any], dict[str, str]]],
                    where: str) -> None:
    """Refuse tensors that share their bytes: a file's storage standing for many keys
    would make a network far larger than the file (each key is copied into it)."""
    seen: dict[tuple[int, int], str] = {}
    for net, (state, theirs) in states.items():
        for key, value in state.items():
            if value is None or value.numel() == 0:
                continue
            at = (value.untyped_storage().data_ptr(), value.storage_offset())
            if at in seen:
                raise GansweepError(f"{where}: {net} key {quote(theirs[key])} shares its "
                                    f"bytes with {quote(seen[at])}")
            seen[at] = theirs[key]


def mimicry_sngan_arch(g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor],
                       where: str) -> ArchConfig:
    """The ``sngan`` configuration of a torch-mimicry SNGAN pair, read off its keys and
    shapes: D's final linear is ``l6`` at 64 px, ``l5`` at 32 and 48 px, where D has a
    ``block5`` at 48 px only."""
    finals = [k for k in d_state if re.fullmatch(r"l[56]\.weight_orig", k)]
    if "l1.weight" not in g_state or not finals:
        raise GansweepError(f"{where}: not a torch-mimicry SNGAN (no l1.weight in G or "
                            f"l5/l6.weight_orig in D)")
    l1, final = _shape(g_state, "l1.weight", 2, where), _shape(d_state, finals[0], 2, where)
    resolution = 64 if "l6.weight_orig" in d_state else \
        48 if any(k.startswith("block5.") for k in d_state) else 32
    return ArchConfig("sngan", resolution, l1[0] // LAYOUT[resolution][0] ** 2, l1[1],
                      d_width=final[1])


def load_mimicry_sngan(g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor],
                       where: str) -> tuple[TransferNet, TransferNet, ArchConfig]:
    """(G, D, arch) holding a torch-mimicry SNGAN's weights exactly."""
    arch = mimicry_sngan_arch(g_state, d_state, where)
    states = {}
    for net, state in (("G", g_state), ("D", d_state)):
        names = {mimicry_sngan_key(net, k, where): k for k in state}
        if len(names) < len(state):
            raise GansweepError(f"{where}: {net} has two keys for one of our tensors")
        states[net] = {ours: state[k] for ours, k in names.items()}, names
    return (*build_exact(arch, states, where), arch)


_EXAMPLES_DCGAN = {
    "G": {"main.0": "b4.layer", "main.1": "b4.norm", "main.3": "b8.layer", "main.4": "b8.norm",
          "main.6": "b16.layer", "main.7": "b16.norm", "main.9": "b32.layer",
          "main.10": "b32.norm", "main.12": "b64.layer"},
    "D": {"main.0": "b64.layer", "main.2": "b32.layer", "main.3": "b32.norm",
          "main.5": "b16.layer", "main.6": "b16.norm", "main.8": "b8.layer",
          "main.9": "b8.norm", "main.11": "fc.layer"},
}


def examples_dcgan_key(net: str, key: str, where: str = "pytorch-examples") -> str:
    """Our state-dict key for pytorch/examples' DCGAN ``key`` of ``net`` (G or D)."""
    prefix, _, rest = key.rpartition(".")
    if prefix not in _EXAMPLES_DCGAN[net]:
        raise GansweepError(f"{where}: {net} key {quote(key)} has no place in our network")
    return f"units.{_EXAMPLES_DCGAN[net][prefix]}.{rest}"


def load_examples_dcgan(g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor],
                        where: str) -> tuple[TransferNet, TransferNet, ArchConfig]:
    """(G, D, arch) holding a pytorch/examples DCGAN's weights exactly."""
    what = f"{where}: not a pytorch/examples DCGAN"
    nz, ngf8 = _shape(g_state, "main.0.weight", 4, what)[:2]
    ndf = _shape(d_state, "main.0.weight", 4, what)[0]
    if ngf8 != 8 * ndf:
        raise GansweepError(f"{where}: ngf = {ngf8 // 8} and ndf = {ndf} differ; our dcgan has "
                            f"one width for G and D")
    arch = ArchConfig("dcgan", 64, ndf, nz, "batch")
    states = {}
    for net, state in (("G", g_state), ("D", d_state)):
        mapped, names = {}, {}
        for key, value in state.items():
            ours = examples_dcgan_key(net, key, where)
            if ours == "units.fc.layer.weight":  # the final 4 x 4 conv as a linear map
                value = value.flatten(1) if value.dim() > 1 else value
                mapped["units.fc.layer.bias"] = torch.zeros(value.shape[:1])
                names["units.fc.layer.bias"] = "(none: a zero bias)"
            mapped[ours], names[ours] = value, key
        states[net] = mapped, names
    return (*build_exact(arch, states, where), arch)


def rosinality_arch(g_state: dict[str, torch.Tensor], where: str) -> ArchConfig:
    """The ``stylegan2`` configuration of a rosinality generator, read off its shapes."""
    what = f"{where}: not a rosinality StyleGAN2 generator"
    width = _shape(g_state, "input.input", 4, what)[1]
    z_dim = _shape(g_state, "style.1.weight", 2, what)[1]
    mapping = len([k for k in g_state if re.fullmatch(r"style\.\d+\.weight", k)])
    blocks = len([k for k in g_state if re.fullmatch(r"to_rgbs\.\d+\.bias", k)])
    return ArchConfig("stylegan2", 4 * 2 ** blocks, width=width, z_dim=z_dim,
                      mapping_layers=mapping)


def load_rosinality(g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor],
                    where: str) -> tuple[TransferNet, TransferNet, ArchConfig]:
    """(G, D, arch) holding a rosinality StyleGAN2's weights exactly."""
    arch = rosinality_arch(g_state, where)
    states = {net: (dict(state), {k: k for k in state})
              for net, state in (("G", g_state), ("D", d_state))}
    return (*build_exact(arch, states, where), arch)


def _read_rosinality(path: Path, _: Path | None, trust_pickle: bool, generator: None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """G (``g_ema``, else ``g``) and D (``d``) of a rosinality training checkpoint."""
    ckpt = _load(path, trust_pickle, NAMESPACE)
    if not isinstance(ckpt, dict) or not ({"g_ema", "g"} & set(ckpt)):
        raise GansweepError(f"{path}: not a rosinality checkpoint (no 'g_ema' or 'g')")
    if "d" not in ckpt:
        raise GansweepError(f"{path}: holds no discriminator 'd' (convert_weight.py writes it "
                            f"only with --disc); a transfer needs both networks")
    g = ckpt["g_ema"] if "g_ema" in ckpt else ckpt["g"]
    return tensors(g, f"{path.name}: its G"), tensors(ckpt["d"], f"{path.name}: its 'd'")


def _load(path: Path, trust_pickle: bool, *allow: dict) -> object:
    """A checkpoint from outside: core.torch_files' checked load, or with ``trust_pickle``
    torch's full unpickler (which runs the file's code: the user's explicit choice)."""
    if not path.is_file():
        raise GansweepError(f"{path}: no such file")
    if not trust_pickle:
        try:
            return load_torch_file(path, "checkpoint", allow)
        except GansweepError as e:
            if "refuses the global" not in str(e):
                raise
            raise GansweepError(f"{e}; if you trust the file, pass --trust-pickle (which "
                                f"runs its code)") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 -- truncated, not a torch file, ...
        raise GansweepError(f"{path}: not a readable PyTorch file ({type(e).__name__})") from None


def _state_dict(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """A file's state dict (a mimicry training checkpoint's ``model_state_dict`` too)."""
    obj = _load(path, trust_pickle)
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    return tensors(obj, str(path))


# (G's and D's states as read, where, the generator chosen) -> G, D, arch and what the
# import records about the networks besides
Loader = Callable[[Any, Any, str, "str | None"], tuple[TransferNet, TransferNet, ArchConfig, dict]]
# (G's file or the one file, D's file, trust_pickle, the generator chosen) -> the states
Reader = Callable[[Path, "Path | None", bool, "str | None"], tuple[Any, Any]]


def _plain(load: Callable[[dict, dict, str], tuple[TransferNet, TransferNet, ArchConfig]]
           ) -> Loader:
    """A loader of a format with one generator and nothing more to record."""
    return lambda g, d, where, generator: (*load(g, d, where), {})


def _read_pair(g_path: Path, d_path: Path | None, trust_pickle: bool, generator: None
               ) -> tuple[dict, dict]:
    if d_path is None:
        raise GansweepError(f"{g_path.name}: this format keeps G and D in two files; give "
                            f"the D file too")
    return _state_dict(g_path, trust_pickle), _state_dict(d_path, trust_pickle)


@dataclass(frozen=True)
class Importer:
    """A checkpoint format: how its file(s) are read, loaded into our nets, and its loss."""

    load: Loader
    loss: str
    read: Reader = _read_pair
    one_file: bool = False  # G and D in one file
    generators: tuple[str, ...] = ()  # the generators a file holds, the default first


IMPORTERS: Registry[Importer] = Registry("import format")
IMPORTERS.register("pytorch-examples-dcgan")(Importer(_plain(load_examples_dcgan), "bce"))
IMPORTERS.register("mimicry")(Importer(_plain(load_mimicry_sngan), "hinge"))
# rosinality's train.py trains with StyleGAN2's loss (non-saturating logistic, lazy R1):
# ours is stylegan2, not bce (same logistic terms, no R1).
IMPORTERS.register("rosinality")(Importer(_plain(load_rosinality), "stylegan2",
                                          _read_rosinality, True))


def import_checkpoint(fmt: str, g_path: str | Path, d_path: str | Path | None, out: str | Path,
                      trust_pickle: bool = False, generator: str | None = None) -> dict:
    """Write a gansweep source checkpoint at ``out`` from another codebase's G and D files
    (one file holding both for formats that have one: ``d_path`` None); returns what was
    made. ``generator``: which of the file's generators becomes G, for formats that hold
    several (stylegan2-ada: G_ema, the default, or G). Its G and D are plain (every unit
    fine-tuned), its loss the codebase's, its training data unknown (None), its origin
    recorded."""
    importer = IMPORTERS.get(fmt)
    g_path = Path(g_path)
    d_path = None if d_path is None else Path(d_path)
    if importer.one_file and d_path is not None:
        raise GansweepError(f"{fmt}: G and D are in one file ({g_path.name}); give no D file")
    if generator is not None and generator not in importer.generators:
        raise GansweepError(f"--generator: {generator!r} is not one of the generators a {fmt} "
                            f"file holds {list(importer.generators) or '(only one)'}")
    if generator is None and importer.generators:
        generator = importer.generators[0]
    g_state, d_state = importer.read(g_path, d_path, trust_pickle, generator)
    where = g_path.name if d_path is None else f"{g_path.name}/{d_path.name}"
    g, d, arch, notes = importer.load(g_state, d_state, where, generator)
    files = {net: {"path": str(p.resolve()), "sha256": file_sha256(p)}
             for net, p in (("G", g_path), ("D", d_path or g_path))}
    origin = {"format": fmt, "files": files,
              **({"generator": generator} if generator else {}), **notes}
    ckpt = {"format": CHECKPOINT_FORMAT, "arch": arch.to_dict(),
            "plans": {"g": ["finetune"] * g.num_units, "d": ["finetune"] * d.num_units},
            "config": {"label": f"imported ({fmt})", "loss": importer.loss, "data": None,
                       "arch": arch.to_dict()},
            "origin": origin, "G": g.state_dict(), "D": d.state_dict(), "G_ema": None,
            "iteration": 0, "history": []}
    atomic_write(Path(out), lambda f: torch.save(ckpt, f))
    return {"checkpoint": str(out), "arch": arch.to_dict(), "loss": importer.loss, **origin}


# Registered by its own module, which builds on this one.
from gansweep.core import foreign_ada  # noqa: E402,F401

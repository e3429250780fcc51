"""Networks of other codebases loaded into ours: their state-dict keys mapped onto our
transfer units, every key and shape checked.

- ``mimicry-sngan``: torch-mimicry's SNGANGenerator32/64 and SNGANDiscriminator32/64
  (``core.sngan``); its spectral-norm buffers included.
"""
from __future__ import annotations

import re

import torch

from gansweep.core.errors import GansweepError
from gansweep.core.models import ArchConfig, TransferNet, build_models

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
    raise GansweepError(f"{where}: {net} key {key!r} has no place in our network")


def _load_exact(module: TransferNet, state: dict[str, torch.Tensor], net: str,
                where: str, theirs: dict[str, str]) -> None:
    """Load every tensor of ``state`` into ``module``; any missing, extra or misshapen key is
    one error naming it (in their naming) and both shapes."""
    ours = module.state_dict()
    for key, value in state.items():
        if key not in ours:
            raise GansweepError(f"{where}: {net} key {theirs[key]!r} has no place in our network")
        if ours[key].shape != value.shape:
            raise GansweepError(f"{where}: {net} key {theirs[key]!r} has shape "
                                f"{list(value.shape)}, ours {list(ours[key].shape)}")
    missing = sorted(set(ours) - set(state))
    if missing:
        raise GansweepError(f"{where}: {net} lacks {missing[0]!r} (shape "
                            f"{list(ours[missing[0]].shape)}) and {len(missing) - 1} more")
    module.load_state_dict(state)


def mimicry_sngan_arch(g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor],
                       where: str) -> ArchConfig:
    """The ``sngan`` configuration of a torch-mimicry SNGAN pair, read off its shapes."""
    try:
        l1 = g_state["l1.weight"]
        final = next(v for k, v in d_state.items() if re.fullmatch(r"l[56]\.weight_orig", k))
    except (KeyError, StopIteration):
        raise GansweepError(f"{where}: not a torch-mimicry SNGAN (no l1.weight in G or "
                            f"l5/l6.weight_orig in D)") from None
    resolution = 64 if "b6.weight" in g_state else 32
    return ArchConfig("sngan", resolution, l1.shape[0] // 16, l1.shape[1],
                      d_width=final.shape[1])


def load_mimicry_sngan(g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor],
                       where: str) -> tuple[TransferNet, TransferNet, ArchConfig]:
    """(G, D, arch) holding a torch-mimicry SNGAN's weights exactly."""
    arch = mimicry_sngan_arch(g_state, d_state, where)
    g, d = build_models(arch)
    for net, module, state in (("G", g, g_state), ("D", d, d_state)):
        mapped = {mimicry_sngan_key(net, k, where): v for k, v in state.items()}
        _load_exact(module, mapped, net, where, dict(zip(mapped, state)))
    return g, d, arch

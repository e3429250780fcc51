"""The review's pass over the loaders (after tests/test_attacks_more.py): what a call makes
costs memory whether or not it reports any, a refused global is quoted (no newline or
terminal code from the file reaches the line), and resuming an imported source is refused
before any of the run fields it does not have is read."""
from __future__ import annotations

import io

import pytest
import torch

from gansweep.core.pickle_parts import Refused
from gansweep.core.safe_pickle import unpickle
from gansweep.core.torch_files import BEHAVIOURS, _storage_id, limits_for
from tests.attacks import glob, proto, text
from tests.helpers import cli_in_process


def test_objects_a_call_makes_count_against_the_budget():
    """100,000 empty tensors from one storage (5 bytes of stream each) would be ~45 MB of
    objects from a 500 kB file: each call's result is charged, so the budget stops it."""
    storage = b"(" + text("storage") + glob("torch", "FloatStorage") + text("0") + \
        text("cpu") + b"K\x04tQ"
    rebuild = glob("torch._utils", "_rebuild_tensor_v2") + b"q\x000"
    args = b"(" + storage + b"K\x00K\x00\x85K\x01\x85\x89Ntq\x010"
    data = proto(rebuild + args + b"](" + b"h\x00h\x01R" * 100_000 + b"e")
    with pytest.raises(Refused, match="REDUCE takes the data past"):
        unpickle(io.BytesIO(data), BEHAVIOURS, limits_for(len(data)),
                 lambda pid: _storage_id(pid, 5))


def test_a_refused_global_is_quoted():
    data = proto(text("os\n\x1b[31mFAKE!") + text("system") + b"\x93")
    with pytest.raises(Refused) as e:
        unpickle(io.BytesIO(data), BEHAVIOURS, limits_for(len(data)))
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value), repr(str(e.value))
    assert "refuses the global 'os\\n\\x1b[31mFAKE!.system'" in str(e.value)


def test_resuming_an_imported_source_is_refused(sources, blobs, tmp_path):
    """A file whose config says it is no run (no ``out``) has no run fields checked: its
    made-up optimiser state must not reach ``restore``."""
    ckpt = torch.load(sources["dcgan"], weights_only=True)
    ckpt["config"].pop("out")
    ckpt["opt_g"] = {}
    torch.save(ckpt, tmp_path / "source.pt")
    out = cli_in_process("pretrain", "--data", blobs, "--out", tmp_path / "o.pt",
                         "--resume", tmp_path / "source.pt", "--iters", "1",
                         "--metrics", "none", "--device", "cpu", "--quiet")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert "an imported source, not a run gansweep trained" in lines[0], lines[0]
    assert not (tmp_path / "o.pt").exists()

"""`gr-explorer cuts`: a model's cuts as a table, with what each cut supports (kind, width, readouts, norm)."""

from __future__ import annotations

import sys

from ..errors import CutError
from .model import Model


def print_cuts(model: Model, detail: str = "block") -> None:
    """One line per cut in forward order; at `sub-block` detail also each cut's kind, channel width and whether
    the final norm acts on it, after the model's token layout, readouts and final norm."""
    cuts = model.cut_list(detail)
    if detail == "block":
        try:
            extra = len(model.cut_list("sub-block")) - len(cuts)
        except CutError:
            extra = 0
        print(f"{'depth':>5}  {'cut':20s} {'part':10s} {'dim':>6}")
        for c in cuts:
            print(f"{c.depth:>5}  {c.name:20s} {c.part:10s} {c.dim:>6}")
        if extra:
            print(f"(+{extra} sub-block cuts inside the transformer blocks: --detail)", file=sys.stderr)
        return
    bb = model.backbone
    norm = bb.norm
    kinds = {model.cut_kind(c.name) for c in cuts}
    if "tokens" in kinds:
        print(f"tokens: {bb.layout.describe()}; readouts: {', '.join(bb.layout.readouts())}; own readout: {model.own_readout()}")
    if "map" in kinds:
        print("feature maps: readouts avg, max")
    print("final norm: " + (f"{type(norm.module).__name__}({norm.width}) as `{'norm' if norm.where == 'tokens' else 'fc_norm'}`, "
                            f"{'on every token before the readout' if norm.where == 'tokens' else 'on the pooled vector'}"
                            if norm is not None else "none (readout_norm=on is refused)"))
    print(f"{'depth':>5}  {'cut':24s} {'part':10s} {'kind':7s} {'width':>6} {'dim':>6}  norm")
    for c in cuts:
        print(f"{c.depth:>5}  {c.name:24s} {c.part:10s} {model.cut_kind(c.name):7s} {model.width(c.name):>6} {c.dim:>6}  "
              f"{'applies' if model.norm_applies(c) else '-'}")

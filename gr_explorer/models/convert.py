"""`gr-explorer convert`: an official SSL release -> the zoo format (`<name>.safetensors` + card).

The converted model is then a `file:` (or, copied into pretrained/, a `zoo:`)
model like any other; the card records where it came from (file name and
sha256, detected layout, branch, the release's args), its preprocessing and
where those numbers come from, and the projector block by block.
"""

from __future__ import annotations

import argparse

from ..errors import GRExplorerError
from ..files import check_writable, expand_user
from .adapters import FORMATS, LAYOUTS, convert_release
from .checkpoint import save_checkpoint


def _floats3(s: str) -> list[float]:
    try:
        vals = [float(x) for x in s.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers (R,G,B), got {s!r}")
    return vals


def add_convert_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert", help="convert an official SSL checkpoint (DINO, VICReg, Barlow Twins, lightly, solo-learn, MoCo v3, "
                        "SimCLR) with its projector head to the zoo format",
        description="Map a release's backbone onto timm and its projector onto gr-explorer blocks (one cut per block), "
                    "with the release's preprocessing; see `gr-explorer zoo --formats`.")
    p.add_argument("checkpoint", help="the release file (.pth, .pth.tar, .ckpt); loaded with weights_only=True")
    p.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="checkpoint layout (default: auto-detect)")
    p.add_argument("--arch", help="timm model name for the backbone when it is not recognised from its weights")
    branch = p.add_mutually_exclusive_group()
    branch.add_argument("--teacher", dest="branch", action="store_const", const="teacher",
                        help="the momentum/EMA copy (DINO's default; MoCo v3's momentum encoder)")
    branch.add_argument("--student", dest="branch", action="store_const", const="student",
                        help="the online copy (DINO's student; MoCo v3's base encoder, its default)")
    p.add_argument("--input-size", type=int, help="override the release's input size (px)")
    p.add_argument("--mean", type=_floats3, help="override the normalisation mean, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", type=_floats3, help="override the normalisation std")
    p.add_argument("--interpolation", choices=["bilinear", "bicubic", "nearest"], help="override the resize interpolation")
    p.add_argument("--readout", choices=["cls", "mean", "cls+mean"], help="ViT token readout per cut (default cls)")
    p.add_argument("--out", required=True, help="output <name>.safetensors (the card <name>.json is written next to it)")
    return p


def cmd_convert(a) -> int:
    out = expand_user(a.out, "output checkpoint (--out)")
    if out.suffix != ".safetensors" or out.is_dir():
        raise GRExplorerError(f"--out must name a .safetensors file, got {a.out!r}"
                              f"{' (a folder)' if out.is_dir() else ''}. Valid: e.g. converted/dino_vits16.safetensors.")
    check_writable(out.parent, f"folder of the output checkpoint (--out) {a.out!r}, i.e.")  # before converting
    overrides = {k: v for k, v in (("input_size", a.input_size), ("mean", a.mean), ("std", a.std),
                                   ("interpolation", a.interpolation)) if v is not None}
    model, card = convert_release(a.checkpoint, format=a.format, arch=a.arch, branch=a.branch,
                                  preprocessing=overrides or None, readout=a.readout, name=out.stem)
    card = {k: v for k, v in card.items() if k not in ("format", "name", "preprocessing", "readout")}
    path = save_checkpoint(model, out, card)
    src = card["source"]
    print(f"layout {src['layout']}{' (' + src['branch'] + ')' if src['branch'] else ''}; "
          f"backbone timm:{card['architecture']['backbone']['name']}; "
          f"projector {(card['architecture']['projector'] or {}).get('summary', 'none')}")
    pre = model.preprocessing
    print(f"preprocessing {pre.input_size} px, mean {pre.mean}, std {pre.std}, {pre.interpolation} ({src['preprocessing']})")
    print(f"{'depth':>5}  {'cut':20s} {'part':10s} {'dim':>6}")
    for c in model.cuts:
        print(f"{c.depth:>5}  {c.name:20s} {c.part:10s} {c.dim:>6}")
    print(f"wrote {path} and {path.with_suffix('.json')}; use it as --model file:{path}")
    return 0


def print_formats() -> int:
    """`gr-explorer zoo --formats`: the checkpoint layouts `convert` and `file:` read."""

    for m in LAYOUTS:
        branches = f" [--{' | --'.join(m.BRANCHES)}; default {m.DEFAULT_BRANCH or 'the plain copy'}]" if m.BRANCHES else ""
        print(f"{m.NAME:8s} {m.TITLE}{branches}")
        print(f"{'':8s}   e.g. {m.EXAMPLE}")
    return 0

"""Geometry of the cut a SimCLR loss sees when there is no projector: a sparse, non-negative code.

    python pretrained/output_geometry.py pretrained/simclr_proj_none.safetensors pretrained/simclr.safetensors

Without a projector, NT-Xent compares the backbone's pooled output, an average of ReLU outputs: every
coordinate is >= 0, so two images' cosine similarity is >= 0 and reaches 0 only when their active channels
do not overlap. Why measure it: it was the first suspect for the no-projector design's slow learning of
`shape` (pretrained/ABLATIONS.md says what held). This prints, per model, for `pool` and the last projector cut
(if any) on held-out `shapes` (seed 1, 1,000 test images): the share of exactly-zero coordinates, the channels
that are zero on every image, the mean and 10th/90th percentiles of the cosine between different images, the
share of image pairs at cosine exactly 0 (disjoint active channels), and RankMe (the diagnostics' effective
rank, `gr_explorer.diagnostics.spectral`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gr_explorer.data import load_dataset  # noqa: E402
from gr_explorer.diagnostics.spectral import spectral_metrics  # noqa: E402
from gr_explorer.errors import GRExplorerError  # noqa: E402
from gr_explorer.features import extract_features  # noqa: E402
from gr_explorer.models import load_model  # noqa: E402


def geometry(x: torch.Tensor) -> dict:
    """Sparsity, cosine spread and RankMe of features [N, D]."""
    rankme = spectral_metrics(x, torch.device("cpu"), wanted=("rankme",))["rankme"]
    x = x.double()
    z = torch.nn.functional.normalize(x, dim=1)
    cos = (z @ z.T)[~torch.eye(len(z), dtype=torch.bool)]
    return {"zeros": float((x == 0).double().mean()), "dead": int((x == 0).all(0).sum()),
            "cos_mean": float(cos.mean()), "cos_p10": float(cos.quantile(0.1)), "cos_p90": float(cos.quantile(0.9)),
            "cos_zero": float((cos == 0).double().mean()), "rankme": rankme}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+", help="safetensors files with their cards")
    args = ap.parse_args(argv)
    data = load_dataset("shapes", tasks=["shape"], n_train=10, n_test=1000, seed=1)
    print(f"{'model':48s} {'cut':6s} {'dim':>4s} {'zeros':>6s} {'dead':>4s} {'cos mean':>8s} {'p10':>6s} {'p90':>6s} {'cos=0':>6s} {'RankMe':>6s}")
    for path in args.weights:
        try:
            model = load_model(f"file:{path}")
            cuts = ["pool"] + model.projector_names[-1:]
            feats = extract_features(model, data, cuts, cache=False)
        except GRExplorerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for cut in cuts:
            g = geometry(torch.as_tensor(feats.test[cut]))
            print(f"{path:48s} {cut:6s} {feats.test[cut].shape[1]:4d} {g['zeros']:6.2f} {g['dead']:4d} {g['cos_mean']:8.3f} "
                  f"{g['cos_p10']:6.3f} {g['cos_p90']:6.3f} {g['cos_zero']:6.2f} {g['rankme']:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Instrumented training steps for the label-aligned collapse study (run by hand; see README.md here).

Copies the training loop's pieces (same model build, optimiser, lr schedule, augmentations, seeds) and
logs, every `--log-every` steps, on the training batch itself:

* loss, and the gradient norm of every block (stem, layer1.., proj1..);
* per cut: effective rank, mean pairwise cosine, total variance, and eta2 = between-class share of the
  variance for the label task (chance floor about (K - 1) / (2B - 1));
* for two-view losses, the mean cosine of positive pairs, of same-class and of other-class pairs.

Losses (`--loss`): `objective` (whatever --objective builds: simclr, supervised, label_aligned ...),
`one_sampled` (the first label-aligned form: each anchor's second view is a fresh view of ONE random
classmate, other classmates left out of its negatives), `k<N>` (N random in-batch classmates per row),
`all` (every classmate: label_aligned_nt_xent at p=1), `supcon` / `supcon_noown` (SupCon L_out with /
without the own view among the positives), `all_own` (every classmate plus the own view).
`--standardize` batch-standardises the output before the loss; `--shuffle-labels` permutes the labels;
`--sep-forward` runs the two views in separate forward passes (BatchNorm sees each view batch alone).

    PYTHONPATH=. python benchmarks/label_aligned/collapse_diag.py --out p1.jsonl --loss one_sampled \\
        --set label_task=shape temperature=1.0 --steps 300
    python benchmarks/label_aligned/collapse_diag.py --show p1.jsonl     # the log as a table
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from gr_explorer.augment import augment
from gr_explorer.settings import parse_flag
from gr_explorer.training import TrainConfig
from gr_explorer.training.loop import (
    build_train_model,
    data_preprocessing,
    load_train_dataset,
    lr_at,
    make_optimizer,
    plan,
    set_lr,
)
from gr_explorer.training.objectives import (
    label_aligned_nt_xent,
    make_objective,
    nt_xent,
)

ZOO = dict(objective="label_aligned", p=1.0, batch_size=128, epochs=10, crop_scale=(0.5, 1.0), projector="512-512-128",
           out="/tmp/collapse_diag.safetensors")


# ----------------------------------------------------------------------------------------------
# losses


def one_sampled_pairs(labels, g):
    """Each anchor's partner: a random OTHER image of its class (itself when it has no classmate)."""
    b = labels.shape[0]
    cand = (labels[:, None] == labels[None, :]) & ~torch.eye(b, dtype=torch.bool)
    score = torch.rand(b, b, generator=g).masked_fill(~cand, -1.0)
    best, j = score.max(1)
    return torch.where(best >= 0, j, torch.arange(b))


def one_sampled_loss(z1, z2, labels, pairs, t):
    """The first label-aligned form at p=1: positive = the partner's view; same-class rows out of the negatives."""
    b = labels.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    aligned = (pairs != torch.arange(b)).repeat(2)
    lab = labels.repeat(2)
    mask = (lab[:, None] == lab[None, :]) & aligned[:, None]
    pos = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    mask[torch.arange(2 * b), pos] = False
    return F.cross_entropy(sim.masked_fill(mask, float("-inf")), pos)


def multi_positive_loss(z1, z2, labels, t, mode: str, k: int | None = None, g=None):
    """Rows [z1; z2] = two views of the same images. See the module docstring for the modes."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z.shape[0]
    b = n // 2
    s = z @ z.T / t
    lab = labels.repeat(2)
    eye = torch.eye(n, dtype=torch.bool)
    own = torch.zeros(n, n, dtype=torch.bool)
    own[torch.arange(n), (torch.arange(n) + b) % n] = True
    same = lab[:, None] == lab[None, :]
    mates = same & ~eye & ~own
    if mode in ("supcon", "supcon_noown"):
        pos = mates | own if mode == "supcon" else mates
        keep = ~eye if mode == "supcon" else ~eye & ~own
        logp = s.masked_fill(~keep, float("-inf"))
        logp = logp - torch.logsumexp(logp, 1, keepdim=True)
        return -(logp.masked_fill(~pos, 0).sum(1) / pos.sum(1).clamp_min(1)).mean()
    if mode == "k":
        score = torch.rand(n, n, generator=g).masked_fill(~mates, -1.0)
        mates = mates & (score >= score.topk(k, dim=1).values[:, -1:])
    pos = mates | own if mode == "all_own" else mates
    lse_neg = torch.logsumexp(s.masked_fill(same, float("-inf")), 1, keepdim=True)
    per = torch.logaddexp(s, lse_neg) - s
    return (per.masked_fill(~pos, 0).sum(1) / pos.sum(1).clamp_min(1)).mean()


# ----------------------------------------------------------------------------------------------
# measures


def eff_rank(x):
    s = torch.linalg.svdvals(x - x.mean(0))
    p = s / s.sum()
    return float(torch.exp(-(p * (p + 1e-12).log()).sum()))


def eta2(x, y):
    """Between-class variance / total variance of the features (1: a function of the class)."""
    mu = x.mean(0)
    tot = float(((x - mu) ** 2).sum())
    bet = sum(float((y == c).sum()) * float(((x[y == c].mean(0) - mu) ** 2).sum()) for c in y.unique())
    return bet / max(tot, 1e-12)


def mean_cos(x):
    z = F.normalize(x, dim=1)
    s = z @ z.T
    n = s.shape[0]
    return float((s.sum() - s.diagonal().sum()) / (n * (n - 1)))


# ----------------------------------------------------------------------------------------------


def show(path: str, every: int = 30) -> None:
    """step, loss, last cut's mean cosine / eff. rank / eta2, pool eta2, layer4 gradient norm."""
    print(f"== {path}\n step   loss  out_cos out_rank out_eta2 pool_eta2 grad_layer4")
    for line in open(path):
        r = json.loads(line)
        if r["step"] % every:
            continue
        c = r["cuts"]
        last = list(c)[-1]
        print(f"{r['step']:5d} {r['loss']:6.3f} {c[last]['cos']:8.3f} {c[last]['rank']:8.1f} {c[last]['eta2']:8.3f} "
              f"{c['pool']['eta2']:9.3f} {r['grad']['layer4']:11.4f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--show", nargs="+", help="print these logs as tables and exit")
    ap.add_argument("--out", help="JSON-lines log; the final state_dict goes next to it (.pt)")
    ap.add_argument("--loss", default="objective")
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig fields, name=value (zoo recipe otherwise)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--standardize", action="store_true")
    ap.add_argument("--shuffle-labels", action="store_true")
    ap.add_argument("--sep-forward", action="store_true")
    args = ap.parse_args(argv)
    if args.show:
        for path in args.show:
            show(path)
        return
    if not args.out:
        ap.error("--out is required (or --show LOG ...)")
    torch.set_num_threads(1)
    overrides = {}
    for item in args.set:
        k, v = item.split("=", 1)
        spec = TrainConfig.spec(k)
        overrides[k] = None if v == "None" else parse_flag(spec.kind, v, spec.flag_name)
    config = TrainConfig(**{**ZOO, **overrides})
    ds = load_train_dataset(config)
    labels = ds.train_labels[config.label_task]
    if args.shuffle_labels:
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(123))]
    pre = data_preprocessing(ds.train_images, config.image_size or int(ds.train_images.shape[-1]))
    model = build_train_model(config, pre).train()
    objective = make_objective(config.objective, **config.objective_options())
    objective.setup(model, int(labels.max()) + 1)
    opt = make_optimizer(config, list(model.parameters()) + list(objective.parameters()))
    aug = config.augmentations()
    bs, per_epoch, total = plan(config, ds.train_images.shape[0])
    warmup = int(round(config.warmup_epochs * per_epoch))
    order_gen, aug_gen = torch.Generator().manual_seed(config.seed), torch.Generator().manual_seed(config.seed + 1)
    cuts = model.cut_names
    bb = model.backbone.module
    blocks = {"stem": bb.stem, **{f"layer{i + 1}": s for i, s in enumerate(bb.stages)}}
    blocks.update({f"proj{i + 1}": b for i, b in enumerate(model.projector or [])})
    t = config.temperature

    def loss_of(z, y, pairs):
        if args.standardize:
            z = (z - z.mean(0)) / (z.std(0) + 1e-5)
        if args.loss == "objective" and config.objective == "supervised":
            return F.cross_entropy(objective.classifier(z).float(), y)
        if args.loss == "objective":
            return _objective_loss(objective, z, y)
        z1, z2 = z.chunk(2)
        if args.loss == "one_sampled":
            return one_sampled_loss(z1, z2, y, pairs, t)
        if args.loss == "all":
            return label_aligned_nt_xent(z1, z2, y, 1.0, t)
        if args.loss.startswith("k"):
            return multi_positive_loss(z1, z2, y, t, "k", int(args.loss[1:]), aug_gen)
        return multi_positive_loss(z1, z2, y, t, args.loss)

    log = open(args.out, "w")
    step, t0 = 0, time.time()
    n_steps = min(args.steps, total)
    while step < n_steps:
        perm = torch.randperm(ds.train_images.shape[0], generator=order_gen)
        for i in range(per_epoch):
            if step >= n_steps:
                break
            set_lr(opt, lr_at(step, total, warmup, config.lr))
            idx = perm[i * bs:(i + 1) * bs]
            x, y = pre.to_unit(ds.train_images[idx]), labels[idx]
            pairs = one_sampled_pairs(y, aug_gen) if args.loss == "one_sampled" else None
            views = [pre.normalize(augment(x, aug, aug_gen))]
            if objective.n_views == 2:
                views.append(pre.normalize(augment(x if pairs is None else x[pairs], aug, aug_gen)))
            if args.sep_forward:
                parts = [model.forward_cuts(v, cuts) for v in views]
                feats = {c: torch.cat([p[c] for p in parts]) for c in cuts}
            else:
                feats = model.forward_cuts(torch.cat(views), cuts)
            loss = loss_of(feats[cuts[-1]], y, pairs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step % args.log_every == 0:
                yy = y.repeat(len(views))
                rec = {"step": step, "loss": float(loss.detach()), "lr": opt.param_groups[0]["lr"],
                       "grad": {k: float(sum(p.grad.norm() ** 2 for p in m.parameters() if p.grad is not None) ** 0.5)
                                for k, m in blocks.items()},
                       "cuts": {c: {"rank": eff_rank(f), "cos": mean_cos(f), "var": float(f.var(0).sum()), "eta2": eta2(f, yy)}
                                for c, f in ((c, feats[c].detach().float()) for c in cuts)}}
                if len(views) == 2:
                    z1, z2 = F.normalize(feats[cuts[-1]].detach().float(), dim=1).chunk(2)
                    s = z1 @ z1.T
                    same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool)
                    rec["sim"] = {"pos": float((z1 * z2).sum(1).mean()), "same_cls": float(s[same].mean()),
                                  "diff_cls": float(s[y[:, None] != y[None, :]].mean())}
                rec["t"] = round(time.time() - t0, 1)
                log.write(json.dumps(rec) + "\n")
                log.flush()
            opt.step()
            step += 1
    torch.save(model.state_dict(), args.out.rsplit(".", 1)[0] + ".pt")


def _objective_loss(objective, z, y):
    """simclr / label_aligned loss on outputs already computed for all cuts ([z1; z2])."""
    z1, z2 = z.chunk(2)
    if objective.name == "label_aligned" and objective.p > 0:
        return label_aligned_nt_xent(z1, z2, y, objective.p, objective.temperature)
    return nt_xent(z1, z2, objective.temperature)


if __name__ == "__main__":
    main()

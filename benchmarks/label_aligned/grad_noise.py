"""Gradient of the label-aligned loss at one network state: how much of it the labels explain, and how noisy it is.

For K batches of the zoo recipe (shapes, batch 128) at STATE (`init`, or a state_dict saved by
collapse_diag.py), the gradient over all parameters of

* `one`: the one-sampled-classmate loss (the first label-aligned form, p=1) with the true labels,
* `shuffled`: the same loss with permuted labels (no class signal at all),
* `all`: the every-classmate loss (label_aligned_nt_xent, p=1) with the true labels.

Prints the mean losses, |mean gradient| and per-batch noise sqrt(mean |g_k - mean|^2) of each, the
cosine between the mean gradients, and a split-half floor (cosine of the `one` means over even vs odd
batches: what two estimates of the SAME expected gradient reach at this K).

    PYTHONPATH=. python benchmarks/label_aligned/grad_noise.py --state init --batches 48 --temperature 0.5
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from collapse_diag import ZOO, one_sampled_loss, one_sampled_pairs

from gr_explorer.augment import augment
from gr_explorer.training import TrainConfig
from gr_explorer.training.loop import (
    build_train_model,
    data_preprocessing,
    load_train_dataset,
)
from gr_explorer.training.objectives import label_aligned_nt_xent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state", default="init")
    ap.add_argument("--batches", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t = args.temperature
    cfg = TrainConfig(**{**ZOO, "label_task": "shape", "temperature": t})
    ds = load_train_dataset(cfg)
    pre = data_preprocessing(ds.train_images, 32)
    model = build_train_model(cfg, pre).train()
    if args.state != "init":
        model.load_state_dict(torch.load(args.state, weights_only=True))
    params = list(model.parameters())
    aug = cfg.augmentations()
    g = torch.Generator().manual_seed(11)
    y_all = ds.train_labels["shape"]
    y_shuf = y_all[torch.randperm(len(y_all), generator=torch.Generator().manual_seed(123))]

    def grad(loss):
        gs = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(gs, params)])

    grads = {"one": [], "shuffled": [], "all": []}
    losses = {k: [] for k in grads}
    for _ in range(args.batches):
        idx = torch.randperm(len(y_all), generator=g)[:cfg.batch_size]
        x = pre.to_unit(ds.train_images[idx])
        for name, y in (("one", y_all[idx]), ("shuffled", y_shuf[idx])):
            pairs = one_sampled_pairs(y, g)
            z1, z2 = model(torch.cat([pre.normalize(augment(x, aug, g)), pre.normalize(augment(x[pairs], aug, g))])).chunk(2)
            loss = one_sampled_loss(z1, z2, y, pairs, t)
            losses[name].append(float(loss.detach()))
            grads[name].append(grad(loss))
        z1, z2 = model(torch.cat([pre.normalize(augment(x, aug, g)), pre.normalize(augment(x, aug, g))])).chunk(2)
        loss = label_aligned_nt_xent(z1, z2, y_all[idx], 1.0, t)
        losses["all"].append(float(loss.detach()))
        grads["all"].append(grad(loss))
    means = {}
    for name, gs in grads.items():
        s = torch.stack(gs)
        means[name] = s.mean(0)
        noise = ((s - means[name]) ** 2).sum(1).mean().sqrt()
        print(f"{args.state} T={t} {name:8s}: loss {sum(losses[name]) / len(losses[name]):.4f}  |mean grad| {means[name].norm():.5f}  "
              f"per-batch noise {noise:.5f}")
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=0))  # noqa: E731
    one = torch.stack(grads["one"])
    print(f"cos(one, shuffled) {cos(means['one'], means['shuffled']):.3f}   cos(one, all) {cos(means['one'], means['all']):.3f}   "
          f"split-half floor cos(one even, one odd) {cos(one[0::2].mean(0), one[1::2].mean(0)):.3f}")


if __name__ == "__main__":
    main()

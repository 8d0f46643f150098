"""Training: losses against reference formulas, pairing, batched deterministic augmentations, loop, checkpoint, CLI."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from gr_explorer.augment import gaussian_blur, hsv_to_rgb, rgb_to_hsv
from gr_explorer.cli import build_parser, main
from gr_explorer.data import load_dataset
from gr_explorer.models import load_model
from gr_explorer.training import (
    OBJECTIVES,
    AugmentConfig,
    TrainConfig,
    TrainingError,
    augment,
    make_objective,
    train,
)
from gr_explorer.training.cli import config_from_args
from gr_explorer.training.loop import lr_at, make_optimizer, set_lr
from gr_explorer.training.objectives import (
    barlow_twins_loss,
    byol_loss,
    label_aligned_nt_xent,
    nt_xent,
    vicreg_loss,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is as fast, and immune to OpenMP spin-waiting when other jobs share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _z(b=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# losses vs straightforward references


def test_nt_xent_matches_explicit_formula():
    z1, z2 = _z()
    tau = 0.3
    z = [v / v.norm() for v in torch.cat([z1, z2])]
    n, b = len(z), z1.shape[0]
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        num = math.exp(float(z[i] @ z[pos]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n) if k != i)
        total += -math.log(num / den)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(total / n, rel=1e-5)


def test_barlow_twins_matches_explicit_formula():
    z1, z2 = _z(8, 4, seed=1)
    lambd = 0.01
    n, d = z1.shape

    def standardize(z):
        out = torch.empty_like(z)
        for j in range(d):
            col = z[:, j]
            m = sum(col) / n
            s = math.sqrt(sum((c - m) ** 2 for c in col) / n + 1e-5)
            out[:, j] = (col - m) / s
        return out

    a, b = standardize(z1), standardize(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(float(a[k, i] * b[k, j]) for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c**2
    assert barlow_twins_loss(z1, z2, lambd).item() == pytest.approx(loss, rel=1e-5)


def test_vicreg_terms_match_explicit_formulas():
    z1, z2 = _z(7, 3, seed=2)
    z1 = z1 * 0.5  # some dimensions below unit std so the hinge is active
    n, d = z1.shape
    inv = sum(float((z1[k, j] - z2[k, j]) ** 2) for k in range(n) for j in range(d)) / (n * d)

    def var_cov(z):
        mean = [sum(float(z[k, j]) for k in range(n)) / n for j in range(d)]
        cov = [[sum((float(z[k, i]) - mean[i]) * (float(z[k, j]) - mean[j]) for k in range(n)) / (n - 1) for j in range(d)] for i in range(d)]
        var = sum(max(0.0, 1 - math.sqrt(cov[j][j] + 1e-4)) for j in range(d)) / d
        off = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return var, off

    v1, c1 = var_cov(z1)
    v2, c2 = var_cov(z2)
    loss, terms = vicreg_loss(z1, z2, 25.0, 25.0, 1.0)
    assert terms["invariance"].item() == pytest.approx(inv, rel=1e-6)
    assert terms["variance"].item() == pytest.approx((v1 + v2) / 2, rel=1e-6)
    assert terms["covariance"].item() == pytest.approx(c1 + c2, rel=1e-6)
    assert loss.item() == pytest.approx(25 * inv + 25 * (v1 + v2) / 2 + (c1 + c2), rel=1e-6)


def test_byol_loss_is_two_minus_two_cosine():
    p, z = _z(5, 4, seed=3)
    ref = sum(2 - 2 * float(p[i] @ z[i]) / (p[i].norm() * z[i].norm()).item() for i in range(5)) / 5
    assert byol_loss(p, z).item() == pytest.approx(ref, rel=1e-6)


def test_supervised_objective_is_cross_entropy_of_a_linear_head_on_the_model_output():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4)
    model.cuts = [type("C", (), {"dim": 4})()]  # the objective reads the output width from the last cut
    obj = make_objective("supervised")
    obj.setup(model, n_classes=3)
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    ref = F.cross_entropy(model(x) @ obj.classifier.weight.T + obj.classifier.bias, y)
    assert obj(model, [x], y).item() == pytest.approx(ref.item(), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# label-aligned positives


def _label_aligned_reference(z1, z2, labels, p, tau):
    """Row by row, with explicit sets: (1 - p) SimCLR + p * mean over classmates of the classmate-vs-other-classes loss."""
    b = z1.shape[0]
    z = [v / v.norm() for v in torch.cat([z1, z2])]
    lab = [int(labels[i % b]) for i in range(2 * b)]
    e = lambda i, k: math.exp(float(z[i] @ z[k]) / tau)  # noqa: E731
    total = 0.0
    for i in range(2 * b):
        own = (i + b) % (2 * b)
        simclr = -math.log(e(i, own) / sum(e(i, k) for k in range(2 * b) if k != i))
        mates = [c for c in range(2 * b) if c not in (i, own) and lab[c] == lab[i]]
        negs = [k for k in range(2 * b) if lab[k] != lab[i]]
        if not mates:
            total += simclr
            continue
        aligned = sum(-math.log(e(i, c) / (e(i, c) + sum(e(i, k) for k in negs))) for c in mates) / len(mates)
        total += (1 - p) * simclr + p * aligned
    return total / (2 * b)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_label_aligned_loss_matches_a_loop_reference(p):
    z1, z2 = _z(7, 4, seed=5)
    labels = torch.tensor([0, 0, 1, 1, 0, 2, 1])  # class 2 has a single image: SimCLR row
    tau = 0.7
    got = label_aligned_nt_xent(z1, z2, labels, p, tau)
    assert got.item() == pytest.approx(_label_aligned_reference(z1, z2, labels, p, tau), rel=1e-6)
    if p == 0:
        assert got.item() == pytest.approx(nt_xent(z1, z2, tau).item(), rel=1e-6)


def test_label_aligned_loss_at_p1_is_the_average_of_every_one_classmate_pairing():
    """p = 1 is the exact expectation of the sampled form (one random classmate per anchor, scored against the other classes)."""
    z1, z2 = _z(6, 3, seed=2)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    tau, b = 0.5, 6
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.T / tau
    lab = labels.repeat(2)
    rows = []
    for i in range(2 * b):
        negs = s[i][lab != lab[i]]
        mates = [c for c in range(2 * b) if lab[c] == lab[i] and c not in (i, (i + b) % (2 * b))]
        one = [-F.log_softmax(torch.cat([s[i, c:c + 1], negs]), 0)[0] for c in mates]  # each possible draw
        rows.append(torch.stack(one).mean())
    assert label_aligned_nt_xent(z1, z2, labels, 1.0, tau).item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-6)


def test_label_aligned_loss_rewards_class_clusters_and_needs_one_label_per_image():
    torch.manual_seed(0)
    labels = torch.arange(8) % 2
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clustered = centres[labels] + 0.01 * torch.randn(8, 2)
    scattered = torch.randn(8, 2)
    assert label_aligned_nt_xent(clustered, clustered, labels, 1.0, 0.5) < label_aligned_nt_xent(scattered, scattered, labels, 1.0, 0.5)
    with pytest.raises(TrainingError, match="one label per image"):
        label_aligned_nt_xent(clustered, clustered, labels[:5], 1.0, 0.5)


def test_label_aligned_p0_trains_exactly_like_simclr(tmp_path, tiny_data):
    a = train(_tiny(tmp_path / "a", objective="simclr", label_task="shape"), dataset=tiny_data)
    b = train(_tiny(tmp_path / "b", objective="label_aligned", label_task="shape", p=0.0), dataset=tiny_data)
    _assert_same_weights(a.model, b.model)
    c = train(_tiny(tmp_path / "c", objective="label_aligned", label_task="shape", p=1.0), dataset=tiny_data)
    assert a.losses != c.losses


@pytest.mark.slow
def test_label_aligned_p1_leaves_the_collapsed_start_and_learns_shape(tmp_path):
    """Regression: with one sampled classmate per anchor the zoo's p=1 run stayed at chance (5.32) on shapes v1.

    5 epochs of the zoo recipe at temperature 0.5 (a few minutes on one CPU core): the loss must fall well
    below its first epoch and the output must not stay collapsed, with classmates closer than other classes.
    """
    data = load_dataset("shapes", tasks=["shape"], n_train=8000, n_test=16, seed=0)
    cfg = TrainConfig(objective="label_aligned", label_task="shape", p=1.0, temperature=0.5, batch_size=128, epochs=5,
                      crop_scale=(0.5, 1.0), out=str(tmp_path / "p1.safetensors"), device="cpu")
    res = train(cfg, dataset=data)
    per_epoch = res.card["training"]["loss_per_epoch"]
    assert per_epoch[-1] < 0.9 * per_epoch[0], per_epoch
    with torch.no_grad():
        x, y = data.train_images[:512], data.train_labels["shape"][:512]
        z = F.normalize(res.model(res.model.preprocessing(x)), dim=1)
    sim = z @ z.T
    same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool)
    mean_cos, same_cos, other_cos = float(sim.mean()), float(sim[same].mean()), float(sim[y[:, None] != y[None, :]].mean())
    assert mean_cos < 0.9 and same_cos > other_cos + 0.2, (mean_cos, same_cos, other_cos)


# ----------------------------------------------------------------------------------------------
# augmentations


def _imgs(b=16, seed=0):
    return torch.rand(b, 3, 20, 20, generator=torch.Generator().manual_seed(seed))


def test_augment_is_deterministic_for_a_seed_and_random_per_image():
    x = _imgs()
    cfg = AugmentConfig(blur_p=0.5)
    a = augment(x, cfg, torch.Generator().manual_seed(3))
    b = augment(x, cfg, torch.Generator().manual_seed(3))
    c = augment(x, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    # one batch call treats images independently: the same image repeated gets different views
    same = augment(x[:1].repeat(8, 1, 1, 1), cfg, torch.Generator().manual_seed(0))
    assert len({tuple(v.flatten()[:50].tolist()) for v in same}) == 8


def test_grayscale_p1_gives_equal_channels():
    y = augment(_imgs(), AugmentConfig(gray_p=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])


def test_flip_p1_equals_torch_flip_and_full_crop_is_identity():
    x = _imgs()
    plain = dict(crop_scale=(1.0, 1.0), color_jitter=0.0, gray_p=0.0, blur_p=0.0)
    ident = augment(x, AugmentConfig(flip_p=0.0, **plain), torch.Generator().manual_seed(0))
    torch.testing.assert_close(ident, x, atol=1e-5, rtol=0)
    flipped = augment(x, AugmentConfig(flip_p=1.0, **plain), torch.Generator().manual_seed(0))
    torch.testing.assert_close(flipped, torch.flip(x, dims=[-1]), atol=1e-5, rtol=0)


def test_crop_zooms_in_and_stays_in_the_image():
    x = torch.zeros(64, 3, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0  # a centre square
    y = augment(x, AugmentConfig(crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), flip_p=0, color_jitter=0, gray_p=0),
                torch.Generator().manual_seed(0))
    # a quarter-area crop magnifies by 2: the square covers 4x its area wherever it is still fully inside the crop
    assert y.mean() > x.mean()
    assert y.min() >= 0 and y.max() <= 1


def test_color_jitter_changes_colour_and_hsv_roundtrip():
    x = _imgs()
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    y = augment(x, AugmentConfig(crop_scale=(1, 1), flip_p=0, color_jitter=1.0, color_jitter_p=1.0, gray_p=0), torch.Generator().manual_seed(0))
    hue_x, hue_y = rgb_to_hsv(x)[:, 0].mean((1, 2)), rgb_to_hsv(y)[:, 0].mean((1, 2))
    assert (hue_x - hue_y).abs().mean() > 0.02
    assert torch.equal(augment(x, AugmentConfig(crop_scale=(1, 1), flip_p=0, color_jitter=0.0, gray_p=0), torch.Generator()), augment(x, AugmentConfig(crop_scale=(1, 1), flip_p=0, color_jitter=0.0, gray_p=0), torch.Generator()))


def test_blur_keeps_constant_images_and_smooths_noise():
    const = torch.full((4, 3, 12, 12), 0.3)
    torch.testing.assert_close(gaussian_blur(const, torch.full((4,), 1.2)), const)
    noise = _imgs(4)
    assert gaussian_blur(noise, torch.full((4,), 1.5)).std() < 0.6 * noise.std()


@pytest.mark.parametrize("kw", [dict(gray_p=1.5), dict(crop_scale=(0.5, 0.2)), dict(color_jitter=-1.0)])
def test_bad_augmentation_settings_are_named(kw):
    with pytest.raises(TrainingError, match=next(iter(kw))):
        AugmentConfig(**kw)


# ----------------------------------------------------------------------------------------------
# loop, checkpoint, determinism


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("shapes", n_train=64, n_test=16, seed=0)


def _tiny(out, **kw) -> TrainConfig:
    base = dict(width=4, depths=(1, 1), projector="16-8", batch_size=32, epochs=1, max_steps=2, n_train=64,
                out=str(out) + ".safetensors", device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _assert_same_weights(a, b):
    sa, sb = a.export_state_dict(), b.export_state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_training_is_deterministic_on_cpu(tmp_path, tiny_data):
    a = train(_tiny(tmp_path / "a", max_steps=3, epochs=2), dataset=tiny_data)
    b = train(_tiny(tmp_path / "b", max_steps=3, epochs=2), dataset=tiny_data)
    _assert_same_weights(a.model, b.model)
    assert a.losses == b.losses and a.steps == 3
    c = train(_tiny(tmp_path / "c", max_steps=3, epochs=2, seed=1), dataset=tiny_data)
    assert not torch.equal(a.model.export_state_dict()["backbone.stem.0.weight"], c.model.export_state_dict()["backbone.stem.0.weight"])


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_trains_and_saves_a_loadable_checkpoint(tmp_path, tiny_data, objective):
    cfg = _tiny(tmp_path / objective, objective=objective, label_task="shape", max_steps=2)
    res = train(cfg, dataset=tiny_data)
    assert res.steps == 2 and all(math.isfinite(v) for v in res.losses)
    loaded = load_model(f"file:{res.path}")
    assert loaded.cut_names == ["stem", "layer1", "layer2", "pool", "proj1", "proj2"]
    _assert_same_weights(loaded, res.model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.forward_cuts(x)["proj2"], res.model.forward_cuts(x)["proj2"])


def test_byol_target_follows_the_online_network_by_ema(tmp_path, tiny_data):
    obj = make_objective("byol", byol_tau=0.9)
    torch.manual_seed(0)
    model = train(_tiny(tmp_path / "m", max_steps=1), dataset=tiny_data).model
    obj.setup(model)
    before = [p.clone() for p in obj.target.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    obj.step_end(model, 0, 10)  # tau = tau_base at step 0
    for b, t, o in zip(before, obj.target.parameters(), model.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    assert not any(p.requires_grad for p in obj.target.parameters())


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_byol_predictor_learning_rate_multiple_matches_a_plain_optimiser_at_that_rate(tmp_path, tiny_data, optimizer):
    """--byol-predictor-lr 10: one step moves the predictor as torch's optimiser at 10x the rate would, and the
    network as at 1x; the default keeps the two groups (decayed weights, then norms and biases) of before."""
    cfg = _tiny(tmp_path / "m", objective="byol", optimizer=optimizer, weight_decay=0.01, byol_predictor_lr=10.0)
    torch.manual_seed(0)
    model = train(_tiny(tmp_path / "init", max_steps=1), dataset=tiny_data).model
    obj = make_objective("byol", **cfg.objective_options())
    obj.setup(model)
    params = [p for p in list(model.parameters()) + list(obj.parameters()) if p.requires_grad]  # not the target
    plain = make_optimizer(cfg, params)
    assert [list(map(id, g["params"])) for g in plain.param_groups] == [[id(p) for p in params if p.ndim >= 2],
                                                                        [id(p) for p in params if p.ndim < 2]]
    opt = make_optimizer(cfg, params, obj.lr_scales())
    pred = set(obj.predictor.parameters())
    assert sorted(map(id, (p for g in opt.param_groups for p in g["params"]))) == sorted(map(id, params))
    torch.manual_seed(1)
    for p in params:
        p.grad = torch.randn_like(p)
    reference = []
    for p in params:
        q = p.detach().clone().requires_grad_(True)
        q.grad = p.grad.clone()
        lr, wd = 1e-3 * (10 if p in pred else 1), (0.01 if p.ndim >= 2 else 0.0)
        ref = (torch.optim.AdamW([q], lr=lr, weight_decay=wd) if optimizer == "adamw"
               else torch.optim.SGD([q], lr=lr, weight_decay=wd, momentum=0.9, nesterov=True))
        ref.step()
        reference.append(q.detach())
    set_lr(opt, 1e-3)
    opt.step()
    for p, q in zip(params, reference):
        torch.testing.assert_close(p.detach(), q)
    with pytest.raises(TrainingError, match="byol_predictor_lr"):
        _tiny(tmp_path / "bad", objective="byol", byol_predictor_lr=0.0).validate()


def test_should_stop_saves_a_usable_checkpoint_with_config_and_command(tmp_path, tiny_data):
    calls = []
    cfg = _tiny(tmp_path / "stopped", max_steps=None, epochs=5)
    res = train(cfg, progress=lambda s, e, l: calls.append((s, e, l)), should_stop=lambda: len(calls) >= 2, dataset=tiny_data)
    assert res.steps == 2 and res.stopped_early and [c[0] for c in calls] == [1, 2]
    card = json.loads(res.path.with_suffix(".json").read_text())
    assert card["training"]["stopped_early"] is True and card["training"]["steps"] == 2
    assert card["config"] == cfg.as_dict()
    assert card["command"].startswith("gr-explorer train --objective simclr")
    for key in ("description", "architecture", "objective", "augmentations", "dataset"):
        assert card[key]
    assert card["training"]["wall_time_s"] > 0 and math.isfinite(card["training"]["final_loss"])
    assert load_model(f"file:{res.path}").cut_names[-1] == "proj2"


def test_card_command_rebuilds_the_same_config(tmp_path):
    cfg = _tiny(tmp_path / "x", objective="label_aligned", label_task="shape", p=0.25, crop_scale=(0.5, 1.0),
                backbone_kwargs={}, eval_tasks=["shape", "color"], description="a b 'c'")
    import shlex

    argv = shlex.split(cfg.to_command())
    assert argv[:2] == ["gr-explorer", "train"]
    a = build_parser().parse_args(argv[1:])
    assert config_from_args(a).as_dict() == cfg.as_dict()


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert max(lrs) == pytest.approx(1.0) and lrs[-1] < 0.01
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


# ----------------------------------------------------------------------------------------------
# errors and CLI


def test_bad_settings_get_clear_errors(tmp_path):
    with pytest.raises(TrainingError, match="Unknown objective 'simclear'.*simclr"):
        make_objective("simclear")
    with pytest.raises(TrainingError, match="--label-task"):
        _tiny(tmp_path / "x", objective="supervised").validate()
    with pytest.raises(TrainingError, match="optimizer"):
        _tiny(tmp_path / "x", optimizer="lamb").validate()
    with pytest.raises(TrainingError, match="not a task of dataset"):
        train(_tiny(tmp_path / "x", objective="supervised", label_task="colour"))
    with pytest.raises(TrainingError, match="Unknown backbone"):
        train(_tiny(tmp_path / "x", backbone="resnet_smal"))


def test_cli_reports_bad_input_without_traceback(capsys, tmp_path):
    assert main(["train", "--objective", "dino", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "objective='dino' is invalid. Valid: simclr, vicreg" in capsys.readouterr().err
    assert main(["train", "--depths", "1,x", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "--depths" in capsys.readouterr().err


def test_cli_train_end_to_end_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "cli_model.safetensors"
    rc = main(["train", "--objective", "vicreg", "--n-train", "64", "--batch-size", "32", "--max-steps", "2", "--width", "4",
               "--depths", "1,1,1", "--projector", "32-16", "--device", "cpu", "--out", str(out), "--quiet"])
    assert rc == 0
    assert f"wrote {out}" in capsys.readouterr().out
    model = load_model(f"file:{out}")
    assert model.cut_names == ["stem", "layer1", "layer2", "layer3", "pool", "proj1", "proj2"]
    assert [c.dim for c in model.cuts] == [4, 4, 8, 16, 16, 32, 16]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["objective"] == "vicreg" and "--objective vicreg" in card["command"] and card["training"]["steps"] == 2


def test_eval_stores_held_out_sweep_results_in_the_card(tmp_path):
    out = tmp_path / "evald.safetensors"
    rc = main(["train", "--n-train", "64", "--batch-size", "32", "--max-steps", "2", "--width", "4", "--depths", "1,1",
               "--projector", "16-8", "--device", "cpu", "--out", str(out), "--quiet", "--eval", "--eval-n-train", "60",
               "--eval-n-test", "40", "--eval-tasks", "shape,color"])
    assert rc == 0
    res = json.loads(out.with_suffix(".json").read_text())["results"]
    assert {r["task"] for r in res["summary"]} == {"shape", "color"}
    mine = [r for r in res["table"] if not r["baseline"]]
    assert {r["cut"] for r in mine} == {"stem", "layer1", "layer2", "pool", "proj1", "proj2"}
    assert {r["baseline"] for r in res["table"]} == {"", "random-init", "pixels"}  # measured next to its baselines
    row = next(r for r in res["summary"] if not r["baseline"] and r["task"] == "shape")
    assert row["gain_ci_low"] <= row["gain"] <= row["gain_ci_high"] and row["random_init_accuracy"] is not None
    assert all(r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"] for r in res["table"])
    assert res["sweep"]["seed"] == 1 and res["sweep"]["n_test"] == 40 and res["sweep"]["baselines"] == ["random-init", "pixels"]


def test_cli_ctrl_c_stops_early_and_still_saves(tmp_path, monkeypatch):
    import os
    import signal

    from gr_explorer.training import cli as train_cli

    class Bar:  # the CLI's progress bar; the first update presses Ctrl-C
        n = 0

        def __init__(self, *a, **k):
            pass

        def update(self, k):
            self.n += k
            os.kill(os.getpid(), signal.SIGINT)

        def set_postfix(self, **k):
            pass

        def close(self):
            pass

    monkeypatch.setattr(train_cli, "tqdm", Bar)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when pytest runs in the background
    out = tmp_path / "interrupted.safetensors"
    rc = main(["train", "--n-train", "64", "--batch-size", "32", "--epochs", "3", "--width", "4", "--depths", "1,1",
               "--projector", "16-8", "--device", "cpu", "--out", str(out), "--eval"])
    assert rc == 130
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 1 and card["training"]["stopped_early"] is True and "results" not in card
    assert load_model(f"file:{out}").cut_names[-1] == "proj2"
    assert signal.getsignal(signal.SIGINT) == before  # handler restored


def test_time_budget_fits_whole_epochs_and_the_card_records_them(tmp_path):
    from gr_explorer.training import TrainConfig, train

    cfg = TrainConfig(n_train=64, batch_size=4, epochs=50, width=4, depths=(1,), projector="8", device="cpu",
                      time_budget=1e-3, warmup_epochs=1.0, out=str(tmp_path / "tb.safetensors"))
    res = train(cfg)
    card = res.card
    assert card["config"]["epochs"] == 1 and card["config"]["time_budget"] is None  # nothing more fits
    assert res.steps == 16 and card["training"]["planned_steps"] == 16
    assert "--epochs 1" in card["command"] and "--time-budget" not in card["command"]

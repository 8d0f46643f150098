"""Tests for gr_explorer.data: loaders, splits, subsampling, derived tasks and their error messages."""

from __future__ import annotations

import colorsys
import itertools
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from gr_explorer.data import (
    DERIVED_TASKS,
    Dataset,
    dataset_tasks,
    digits,
    imagefolder,
    invariance,
    list_datasets,
    load_dataset,
    shapes,
    torchvision_sets,
)
from gr_explorer.data.loading import read_batches
from gr_explorer.errors import DatasetError, OfflineError

SHARED_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------- registry

def test_list_datasets_and_base_tasks():
    assert list_datasets() == ["shapes", "cifar10_mini", "digits", "cifar10", "cifar100", "stl10", "fashion_mnist", "imagefolder:<path>"]
    assert dataset_tasks("shapes") == ["shape", "texture", "size", "color", "light"]
    assert dataset_tasks("digits") == ["digit"]
    assert dataset_tasks("cifar10") == ["label"]
    assert dataset_tasks("CIFAR-100") == ["label", "coarse"]
    assert dataset_tasks("imagefolder:/does/not/matter") == ["label"]
    assert tuple(DERIVED_TASKS) == ("hflip", "rot90", "grayscale", "hue")


def test_unknown_spec_names_it_and_lists_valid():
    with pytest.raises(DatasetError, match=r"Unknown dataset 'cifar11'.*Valid: shapes, cifar10_mini, digits, cifar10.*Did you mean 'cifar10'"):
        load_dataset("cifar11")
    with pytest.raises(DatasetError, match=r"imagefolder:<path>"):
        load_dataset("imagefolder:")
    with pytest.raises(DatasetError, match="Unknown dataset 'imagenet'"):
        dataset_tasks("imagenet")


def test_unknown_task_names_it_and_lists_valid():
    with pytest.raises(DatasetError, match=r"Unknown task 'colour' for dataset 'shapes'.*shape, texture, size, color.*hflip.*Did you mean 'color'"):
        load_dataset("shapes", tasks=["shape", "colour"], n_train=20, n_test=20)
    with pytest.raises(DatasetError, match=r"Unknown task 'label' for dataset 'digits'.*Valid: digit"):
        load_dataset("digits", tasks=["label"])


def test_bad_counts_are_rejected():
    with pytest.raises(DatasetError, match="n_train must be an integer >= 1"):
        load_dataset("shapes", n_train=0)
    with pytest.raises(DatasetError, match="seed must be an integer >= 0"):
        load_dataset("shapes", seed=-1, n_train=10, n_test=10)


# ---------------------------------------------------------------- shapes

@pytest.fixture(scope="module")
def small_shapes() -> Dataset:
    return load_dataset("shapes", n_train=601, n_test=300, seed=3)


def test_shapes_deterministic_per_seed(small_shapes):
    again = load_dataset("shapes", n_train=601, n_test=300, seed=3)
    assert torch.equal(again.train_images, small_shapes.train_images)
    assert torch.equal(again.test_images, small_shapes.test_images)
    for t in small_shapes.tasks:
        assert torch.equal(again.train_labels[t], small_shapes.train_labels[t])
    assert again.fingerprint() == small_shapes.fingerprint()
    other = load_dataset("shapes", n_train=601, n_test=300, seed=4)
    assert not torch.equal(other.train_images, small_shapes.train_images)
    assert not torch.equal(other.train_labels["shape"], small_shapes.train_labels["shape"])
    assert other.fingerprint() != small_shapes.fingerprint()
    # train and test are different streams
    assert not torch.equal(small_shapes.train_images[:300], small_shapes.test_images)


def test_loading_on_threads_gives_the_one_thread_result(monkeypatch):
    """Rendering chunks, resizing chunks and hashing blocks on threads must not change a pixel or a digest."""
    import hashlib

    from torchvision.transforms.v2 import functional as F

    from gr_explorer import threads
    from gr_explorer.data import resize
    from gr_explorer.hashing import large_tensor_digest

    def render(workers):
        monkeypatch.setattr(torch, "get_num_threads", lambda: workers)
        monkeypatch.setattr(resize, "_CHUNK", 100)
        ds = load_dataset("shapes", n_train=2100, n_test=10, seed=5, image_size=48)
        return ds.train_images, large_tensor_digest(ds.train_images, block=1000)

    (one, d1), (four, d4) = render(1), render(4)
    assert torch.equal(one, four) and d1 == d4
    raw = shapes.generate(2100, 5, 0)[0]  # the reference resize: one call on the whole batch
    assert torch.equal(one, F.center_crop(F.resize(raw, 48, antialias=True), [48, 48]))
    data = one.numpy().tobytes()  # the digest: sha256 over the blocks' sha256s, after dtype and shape
    ref = hashlib.sha256(f"{one.dtype}{tuple(one.shape)}".encode())
    for s in range(0, len(data), 1000):
        ref.update(hashlib.sha256(data[s:s + 1000]).digest())
    assert d1 == ref.hexdigest()
    assert list(threads.map_ordered(lambda a: a * a, ((i,) for i in range(50)), workers=3)) == [i * i for i in range(50)]


def test_shapes_sizes_dtype_and_balance(small_shapes):
    ds = small_shapes
    assert ds.train_images.shape == (601, 3, 32, 32) and ds.test_images.shape == (300, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8
    assert ds.tasks == shapes.TASKS
    for t in ds.tasks:
        assert ds.train_labels[t].dtype == torch.long
        for y in (ds.train_labels[t], ds.test_labels[t]):
            counts = torch.bincount(y, minlength=len(ds.classes[t]))
            assert counts.max() - counts.min() <= 1, (t, counts)
    assert ds.classes["color"] == ["red", "yellow", "green", "cyan", "blue", "magenta"]


def test_shapes_default_sizes():
    ds = load_dataset("shapes", tasks=["shape"])
    assert (ds.n_train, ds.n_test) == (8000, 2000)
    assert ds.tasks == ["shape"] and ds.params["n_train"] == 8000


def test_shapes_fingerprint_tracks_params(small_shapes):
    fps = {
        small_shapes.fingerprint(),
        load_dataset("shapes", n_train=600, n_test=300, seed=3).fingerprint(),
        load_dataset("shapes", n_train=601, n_test=300, seed=4).fingerprint(),
        load_dataset("shapes", n_train=601, n_test=300, seed=3, image_size=40).fingerprint(),
        load_dataset("shapes", n_train=601, n_test=300, seed=3, tasks=["shape", "hflip"]).fingerprint("hflip"),
        load_dataset("shapes", n_train=601, n_test=300, seed=3, tasks=["shape", "hflip", "hue"]).fingerprint("hue"),
    }
    assert len(fps) == 6
    # Derived tasks never touch the base images, so the base view's key is unchanged by them.
    assert load_dataset("shapes", n_train=601, n_test=300, seed=3, tasks=["shape", "hue"]).fingerprint() == small_shapes.fingerprint()
    # The fingerprint keys the pixels: keeping other base tasks changes no pixel, so it is the same.
    a = load_dataset("shapes", n_train=601, n_test=300, seed=3, tasks=["color", "size"])
    b = load_dataset("shapes", n_train=601, n_test=300, seed=3, tasks=["shape"])
    assert a.fingerprint() == b.fingerprint() and torch.equal(a.train_images, b.train_images)


def test_shapes_attributes_independent():
    _, y, _ = shapes.generate(3000, seed=0, stream=0)
    for a, b in itertools.combinations(shapes.TASKS, 2):
        ka, kb = len(shapes.CLASSES[a]), len(shapes.CLASSES[b])
        table = torch.zeros(ka, kb)
        table.index_put_((y[a], y[b]), torch.ones(3000), accumulate=True)
        expected = 3000 / (ka * kb)
        assert (table - expected).abs().max() < 5 * expected**0.5, (a, b, table)


_SS = 4  # supersampling of the PIL reference drawings


def _reference_mask(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """The shape drawn by PIL's polygon rasteriser from its parameters (not the generator's signed distances).

    Shapes as documented in the generator: circle radius 0.8 r; square, triangle with circumradius 0.95 r,
    1.1 r; star with tips at 1.05 r and inner corners at 0.45 r; plus with arms 0.95 r long and 0.3 r
    half-wide; `angle` points a corner/tip (y up).
    """
    def ring(radii):
        t = angle + np.arange(len(radii)) * 2 * np.pi / len(radii)
        return [(_SS * (cx + q * r * np.cos(a)), _SS * (cy - q * r * np.sin(a))) for q, a in zip(radii, t)]

    img = Image.new("L", (32 * _SS, 32 * _SS), 0)
    draw = ImageDraw.Draw(img)
    if kind == "circle":
        draw.ellipse([_SS * (cx - 0.8 * r), _SS * (cy - 0.8 * r), _SS * (cx + 0.8 * r), _SS * (cy + 0.8 * r)], fill=255)
    elif kind == "plus":
        arm = [(0.95, 0.3), (0.3, 0.3), (0.3, 0.95), (-0.3, 0.95), (-0.3, 0.3), (-0.95, 0.3),
               (-0.95, -0.3), (-0.3, -0.3), (-0.3, -0.95), (0.3, -0.95), (0.3, -0.3), (0.95, -0.3)]
        c, s = np.cos(angle), np.sin(angle)
        draw.polygon([(_SS * (cx + r * (u * c - v * s)), _SS * (cy - r * (u * s + v * c))) for u, v in arm], fill=255)
    else:
        draw.polygon(ring({"square": [0.95] * 4, "triangle": [1.1] * 3, "star": [1.05, 0.45] * 5}[kind]), fill=255)
    return np.asarray(img, dtype=np.float32).reshape(32, _SS, 32, _SS).mean((1, 3)) > 127.5


@pytest.fixture(scope="module")
def rendered():
    n = 1000
    x, y, p = shapes.generate(n, seed=1, stream=0)
    img = x.numpy().astype(np.float64) / 255
    luma = np.einsum("nchw,c->nhw", img, [0.299, 0.587, 0.114])
    return img, luma, {k: v.numpy() for k, v in y.items()}, p


def test_shapes_labels_match_the_continuous_parameters(rendered):
    _, _, y, p = rendered
    lo, hi = np.array(shapes.SIZE_BINS).T
    assert ((p["radius"] >= lo[y["size"]]) & (p["radius"] <= hi[y["size"]])).all()
    assert (np.abs((p["hue"] * 360 - y["color"] * 60 + 180) % 360 - 180) <= 8).all()
    towards = np.where(y["light"] == 0, np.pi, 0.0)  # left / right
    assert (np.abs((p["light_angle"] - towards + np.pi) % (2 * np.pi) - np.pi) <= np.pi / 4).all()
    assert (np.abs(p["cx"] - 16) <= shapes.CENTRE_JITTER).all() and (np.abs(p["cy"] - 16) <= shapes.CENTRE_JITTER).all()
    assert 0.2 * 32 <= p["radius"].min() and p["radius"].max() <= 0.45 * 32  # large: survives the training crops
    upright = np.array([shapes._UPRIGHT[k] for k in shapes.CLASSES["shape"]])[y["shape"]]
    assert (np.abs(p["angle"] - upright) <= np.deg2rad(shapes.ROTATION_JITTER)).all()


def test_shapes_attributes_are_visible(rendered):
    """Each attribute is read back from the pixels by a trivial rule that uses the continuous parameters."""
    img, luma, y, p = rendered
    n = len(luma)
    kinds, g = shapes.CLASSES["shape"], np.arange(32) + 0.5
    # Object mask: luma on the object's side of the midpoint between background and object luma (the generator
    # keeps them LUMA_GAP apart), with the background luma scaled by the lighting gradient.
    strength, direction = p["gradient"][:, 0, None, None], p["gradient"][:, 1, None, None]
    ramp = 1 + strength * ((g[None, None, :] - 16) * np.cos(direction) + (16 - g[None, :, None]) * np.sin(direction)) / 16
    obj = (p["fg"] @ [0.299, 0.587, 0.114]) * (1 - shapes.TEXTURE_AMPLITUDE / 2)
    mid = ((p["bg_luma"] + obj) / 2)[:, None, None] * ramp
    mask = np.where((obj > p["bg_luma"])[:, None, None], luma > mid, luma < mid)

    # shape: the PIL drawing of the labelled kind at the drawn pose overlaps the mask best
    iou = np.array([[(m & (ref := _reference_mask(k, p["cx"][i], p["cy"][i], p["radius"][i], p["angle"][i]))).sum() / (m | ref).sum()
                     for k in kinds] for i, m in enumerate(mask)])
    assert (iou.argmax(1) == y["shape"]).mean() > 0.97
    assert np.median(iou[np.arange(n), y["shape"]]) > 0.7

    # size: mask area near the object grows with the size bin, for every shape
    dist = np.hypot(g[None, None, :] - p["cx"][:, None, None], g[None, :, None] - p["cy"][:, None, None])
    area = (mask & (dist < 1.3 * p["radius"][:, None, None])).sum((1, 2))
    for s in range(len(kinds)):
        means = [area[(y["shape"] == s) & (y["size"] == z)].mean() for z in range(3)]
        assert means[0] * 1.3 < means[1] and means[1] * 1.25 < means[2], (kinds[s], means)

    # colour: hue of the mean colour of the object's core (a disc every shape contains)
    core = dist < 0.25 * p["radius"][:, None, None]
    mean_rgb = (img * core[:, None]).sum((2, 3)) / core.sum((1, 2))[:, None]
    hue = np.array([colorsys.rgb_to_hsv(*c)[0] for c in mean_rgb]) * 360
    assert (np.abs((hue[:, None] - np.arange(6) * 60 + 180) % 360 - 180).argmin(1) == y["color"]).mean() > 0.97

    # texture and light, on circles and squares (room inside for the pattern): inside the shape shrunk to 70%,
    # solid is flat; stripes vary only across their own axis; dots are mostly bright (negative skew); else checks.
    # The light side is the sign of the horizontal brightness slope.
    texture, light, keep = [], [], np.flatnonzero(y["shape"] <= 1)
    for i in keep:
        inner = _reference_mask(kinds[y["shape"][i]], p["cx"][i], p["cy"][i], 0.7 * p["radius"][i], p["angle"][i])
        v = luma[i][inner]
        dy, dx = np.gradient(luma[i])
        a = p["texture_angle"][i]  # the pattern's axis, y up
        along, across = dx * np.cos(a) - dy * np.sin(a), dx * np.sin(a) + dy * np.cos(a)
        skew = ((v - v.mean()) ** 3).mean() / v.std() ** 3
        if v.std() / v.mean() < 0.3:
            texture.append(0)
        elif (across[inner] ** 2).mean() < 0.4 * (along[inner] ** 2).mean():
            texture.append(1)
        else:
            texture.append(2 if skew < -0.1 else 3)
        light.append(int(np.polyfit(np.broadcast_to(g, (32, 32))[inner], v, 1)[0] > 0))
    assert (np.array(texture) == y["texture"][keep]).mean() > 0.95
    solid = y["texture"][keep] == 0
    assert (np.array(light) == y["light"][keep])[solid].mean() > 0.97


# ---------------------------------------------------------------- digits

def test_digits_fixed_split_independent_of_seed():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=7)
    assert (a.n_train, a.n_test) == (1438, 359)  # round(20% of 1797)
    assert torch.equal(a.test_images, b.test_images) and torch.equal(a.train_images, b.train_images)
    assert a.classes["digit"] == [str(d) for d in range(10)]
    assert a.train_images.shape[1:] == (3, 8, 8) and a.train_images.dtype == torch.uint8
    assert int(a.train_images.max()) == 255
    assert torch.equal(a.train_images[:, 0], a.train_images[:, 2])
    # the fixed split does not leak: no test image is a train index
    tr, te = digits.fixed_split(np.repeat(np.arange(10), 50))
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 500
    assert (np.bincount(np.repeat(np.arange(10), 50)[te]) == 10).all()


def test_stratified_subsampling_counts():
    ds = load_dataset("digits", n_train=100, n_test=50, seed=1)
    assert torch.bincount(ds.train_labels["digit"], minlength=10).tolist() == [10] * 10
    assert torch.bincount(ds.test_labels["digit"], minlength=10).tolist() == [5] * 10
    full = load_dataset("digits")
    rows = {bytes(r) for r in full.test_images.reshape(full.n_test, -1).numpy()}
    assert all(bytes(r) in rows for r in ds.test_images.reshape(50, -1).numpy())
    other = load_dataset("digits", n_train=100, n_test=50, seed=2)
    assert not torch.equal(other.train_images, ds.train_images)


def test_image_size_resizes_tensor_datasets():
    ds = load_dataset("digits", n_train=20, n_test=10, image_size=16)
    assert ds.train_images.shape == (20, 3, 16, 16) and ds.train_images.dtype == torch.uint8
    assert ds.params["image_size"] == 16


# ---------------------------------------------------------------- image folders

def _save(path: Path, img: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _rgb(value, size=(12, 12)):
    return Image.new("RGB", size, value)


def _flat_folder(root: Path, classes=("cat", "dog", "emu"), per_class=10, size=(12, 12)) -> Path:
    for ci, c in enumerate(classes):
        for i in range(per_class):
            _save(root / c / f"{i:03d}.png", _rgb((ci * 60, i * 10, 100), size))
    return root


def test_imagefolder_converts_modes_and_keeps_a_fixed_split(tmp_path):
    root = _flat_folder(tmp_path / "imgs")
    _save(root / "cat" / "grey.png", Image.new("L", (12, 12), 77))
    _save(root / "dog" / "alpha.png", Image.new("RGBA", (12, 12), (10, 20, 30, 0)))
    pal = Image.new("P", (12, 12), 0)
    pal.putpalette([200, 100, 50] + [0] * 765)
    _save(root / "emu" / "palette.png", pal)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    _save(root / "emu" / "palette_t.gif", pal_t)
    _save(root / "emu" / "upper.JPG", _rgb((255, 0, 0)))
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / ".hidden.txt").write_text("ignored")
    (root / "README.md").write_text("top-level notes are ignored")

    ds = load_dataset(f"imagefolder:{root}", seed=0)
    assert ds.classes["label"] == ["cat", "dog", "emu"]
    assert ds.train_images.shape[1:] == (3, 12, 12) and ds.train_images.dtype == torch.uint8
    assert ds.n_train + ds.n_test == 35
    # 11, 11, 13 images per class -> round(20%) = 2, 2, 3 test images
    assert torch.bincount(ds.test_labels["label"]).tolist() == [2, 2, 3]
    every = torch.cat([ds.train_images, ds.test_images])
    pixels = {tuple(im[:, 0, 0].tolist()) for im in every}
    # a fully transparent pixel shows the white background, never the colour stored under it (data.decode)
    assert (77, 77, 77) in pixels and (255, 255, 255) in pixels and (200, 100, 50) in pixels
    assert (10, 20, 30) not in pixels
    # the split does not depend on the seed
    other = load_dataset(f"imagefolder:{root}", seed=5)
    assert torch.equal(other.test_images, ds.test_images)
    assert ds.params["layout"] == "fixed-hash-split" and len(ds.params["files_sha256"]) == 64


def test_imagefolder_train_test_subfolders(tmp_path):
    root = tmp_path / "split"
    for c in ("b", "a"):
        for i in range(4):
            _save(root / "train" / c / f"{i}.png", _rgb((i, 0, 0)))
    for c in ("a", "b"):
        for i in range(2):
            _save(root / "test" / c / f"{i}.bmp", _rgb((0, i, 0)))
    ds = load_dataset(f"imagefolder:{root}")
    assert ds.classes["label"] == ["a", "b"]
    assert torch.bincount(ds.train_labels["label"]).tolist() == [4, 4]
    assert torch.bincount(ds.test_labels["label"]).tolist() == [2, 2]
    assert ds.params["layout"] == "train/test"


@pytest.mark.parametrize("held_out", ["val", "valid", "validation"])
def test_imagefolder_val_folder_is_the_held_out_split_not_a_class(tmp_path, held_out):
    root = tmp_path / "tv"
    for split, n in (("train", 3), (held_out, 2)):
        for c in ("cat", "dog"):
            for i in range(n):
                _save(root / split / c / f"{i}.png", _rgb((i, 9, 9)))
    ds = load_dataset(f"imagefolder:{root}")
    assert ds.classes["label"] == ["cat", "dog"] and (ds.n_train, ds.n_test) == (6, 4)
    assert ds.params["layout"] == f"train/{held_out}"


def test_imagefolder_split_errors(tmp_path):
    only = tmp_path / "only_train"
    for c in ("a", "b"):
        _save(only / "train" / c / "0.png", _rgb((1, 1, 1)))
    with pytest.raises(DatasetError, match=r"has a train/ folder but no held-out folder beside it \(test/, val/"):
        load_dataset(f"imagefolder:{only}")
    mismatch = tmp_path / "mismatch"
    for c in ("a", "b", "only_train"):
        _save(mismatch / "train" / c / "0.png", _rgb((1, 1, 1)))
    for c in ("a", "b", "only_test"):
        _save(mismatch / "test" / c / "0.png", _rgb((1, 1, 1)))
    with pytest.raises(DatasetError, match=r"hold different classes; only in train/: only_train; only in test/: only_test"):
        load_dataset(f"imagefolder:{mismatch}")


def test_imagefolder_sizes(tmp_path):
    root = tmp_path / "mixed"
    _flat_folder(root, classes=("a",), per_class=5, size=(20, 10))
    _flat_folder(root, classes=("b",), per_class=5, size=(12, 12))
    assert load_dataset(f"imagefolder:{root}").train_images.shape[-2:] == (224, 224)
    assert load_dataset(f"imagefolder:{root}", image_size=8).train_images.shape[-2:] == (8, 8)
    same = _flat_folder(tmp_path / "same", classes=("a", "b"), per_class=5, size=(20, 10))
    assert load_dataset(f"imagefolder:{same}").train_images.shape[-2:] == (10, 20)


def test_imagefolder_decodes_only_the_subsample(tmp_path, monkeypatch):
    root = _flat_folder(tmp_path / "big", per_class=20)
    calls = []
    real = imagefolder.decode_file
    monkeypatch.setattr(imagefolder, "decode_file", lambda p, s, d: calls.append(p) or real(p, s, d))
    ds = load_dataset(f"imagefolder:{root}", n_train=6, n_test=3)
    assert len(calls) == 0  # listing and subsampling decode nothing; pixels are read when used
    ds.train_images, ds.test_images
    assert len(calls) == 9
    assert torch.bincount(ds.train_labels["label"]).tolist() == [2, 2, 2]


def test_imagefolder_fingerprint_follows_files(tmp_path):
    root = _flat_folder(tmp_path / "fp", per_class=5)
    fp = load_dataset(f"imagefolder:{root}").fingerprint()
    assert load_dataset(f"imagefolder:{root}").fingerprint() == fp
    _save(root / "cat" / "new.png", _rgb((1, 1, 1)))
    fp2 = load_dataset(f"imagefolder:{root}").fingerprint()
    assert fp2 != fp
    _save(root / "cat" / "new.png", _rgb((1, 1, 1), size=(12, 13)))
    os.utime(root / "cat" / "new.png", ns=(1, 1))
    assert load_dataset(f"imagefolder:{root}").fingerprint() not in (fp, fp2)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist.*<class>/<image>"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"no class folders.*<class>/<image>"):
        load_dataset(f"imagefolder:{empty}")
    (empty / "cats").mkdir()
    with pytest.raises(DatasetError, match=r"class folders \(cats\) but no images"), pytest.warns(UserWarning, match="cats"):
        load_dataset(f"imagefolder:{empty}")

    one = _flat_folder(tmp_path / "one", classes=("lonely_class",), per_class=3)
    with pytest.raises(DatasetError, match=r"only one class folder, 'lonely_class'.*at least two class folders"):
        load_dataset(f"imagefolder:{one}")

    bad = _flat_folder(tmp_path / "bad", per_class=3)
    (bad / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"not images: dog/notes\.txt.*Valid image extensions: .*\.jpg.*\.png"):
        load_dataset(f"imagefolder:{bad}")

    corrupt = _flat_folder(tmp_path / "corrupt", per_class=3)
    (corrupt / "emu" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DatasetError, match=r"could not be decoded.*emu/broken\.png"):
        load_dataset(f"imagefolder:{corrupt}")

    stray = _flat_folder(tmp_path / "stray", per_class=3)
    _save(stray / "loose.png", _rgb((0, 0, 0)))
    with pytest.raises(DatasetError, match=r"outside class folders: loose\.png"):
        load_dataset(f"imagefolder:{stray}")


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason=f"shared CIFAR-10 PNG folder not found at {SHARED_CIFAR10}")
def test_shared_cifar10_imagefolder():
    ds = load_dataset(f"imagefolder:{SHARED_CIFAR10}", n_train=200, n_test=100, seed=0)
    assert ds.classes["label"] == CIFAR10_CLASSES
    assert ds.train_images.shape == (200, 3, 32, 32) and ds.test_images.shape == (100, 3, 32, 32)
    assert torch.bincount(ds.train_labels["label"]).tolist() == [20] * 10
    assert torch.bincount(ds.test_labels["label"]).tolist() == [10] * 10
    assert ds.params["layout"] == "train/test"
    assert ds.train_images.float().std() > 20  # real photos, not blank


# ---------------------------------------------------------------- derived tasks

def _view(ds, split, view):
    return torch.cat([x for _, x in read_batches(ds, split, 32, view=view)])


@pytest.mark.parametrize("task", DERIVED_TASKS)
def test_derived_task_transforms_exactly_half(task):
    base = load_dataset("shapes", tasks=["shape"], n_train=101, n_test=40, seed=2)
    ds = load_dataset("shapes", tasks=["shape", task], n_train=101, n_test=40, seed=2)
    assert ds.tasks == ["shape", task] and ds.classes[task] == invariance.CLASSES[task]
    assert ds.views == ["base", task] and ds.view_tasks("base") == ["shape"] and ds.view_tasks(task) == [task]
    assert torch.equal(ds.train_images, base.train_images)  # the base images are never altered
    for split, orig, y in (("train", base.train_images, ds.train_labels[task]), ("test", base.test_images, ds.test_labels[task])):
        new = _view(ds, split, task)
        assert y.dtype == torch.long and int(y.sum()) == len(y) // 2
        on = y.bool()
        assert torch.equal(new[~on], orig[~on])
        expected = {
            "hflip": lambda t: torch.flip(t, dims=[-1]),
            "rot90": lambda t: torch.rot90(t, 1, dims=(-2, -1)),
            "grayscale": lambda t: t.float().mul(torch.tensor([0.2989, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True).expand_as(t),
            "hue": None,
        }[task]
        if task == "grayscale":
            assert torch.equal(new[on][:, 0], new[on][:, 1]) and torch.equal(new[on][:, 1], new[on][:, 2])
            assert (new[on].float() - expected(orig[on])).abs().max() <= 1.0
        elif task == "hue":
            from torchvision.transforms.v2.functional import adjust_hue

            assert torch.equal(new[on], adjust_hue(orig[on], 0.5)) and not torch.equal(new[on], orig[on])
        else:
            assert torch.equal(new[on], expected(orig[on]))
    assert torch.equal(base.train_labels["shape"], ds.train_labels["shape"])


def test_hue_shift_turns_red_into_cyan():
    ds = load_dataset("shapes", tasks=["color", "hue"], n_train=300, n_test=30, seed=0)
    on = ds.train_labels["hue"].bool() & (ds.train_labels["color"] == 0)  # red shapes, hue-shifted
    assert on.sum() > 10
    before, after = ds.train_images[on].float(), _view(ds, "train", "hue")[on].float()
    red = before[:, 0] - before[:, 1:].amax(1) > 80  # clearly red foreground pixels
    assert red.sum() > 100
    r, g, b = (after[:, c][red] for c in range(3))
    assert (torch.minimum(g, b) > r).float().mean() > 0.95  # now cyan


def test_derived_tasks_are_independent_views():
    """Each derived task's view carries its own transform only, on its own half of the images."""
    ds = load_dataset("shapes", tasks=["hflip", "rot90"], n_train=64, n_test=16, seed=9)
    f, r = ds.train_labels["hflip"].bool(), ds.train_labels["rot90"].bool()
    assert not torch.equal(f, r) and ds.views == ["hflip", "rot90"]
    flipped = ds.train_images.clone()
    flipped[f] = torch.flip(flipped[f], dims=[-1])
    rotated = ds.train_images.clone()
    rotated[r] = torch.rot90(rotated[r], 1, dims=(-2, -1))
    assert torch.equal(_view(ds, "train", "hflip"), flipped) and torch.equal(_view(ds, "train", "rot90"), rotated)
    assert ds.params["tasks"] == ["hflip", "rot90"]


def test_rot90_needs_square_images(tmp_path):
    root = _flat_folder(tmp_path / "wide", classes=("a", "b"), per_class=5, size=(16, 8))
    with pytest.raises(DatasetError, match=r"'rot90' needs square images.*8x16.*image_size"):
        load_dataset(f"imagefolder:{root}", tasks=["label", "rot90"])
    ds = load_dataset(f"imagefolder:{root}", tasks=["label", "rot90"], image_size=8)
    assert ds.train_images.shape[-2:] == (8, 8)


# ---------------------------------------------------------------- torchvision sets

def test_torchvision_offline_error_names_files_and_fix(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision_sets, "_download", offline)
    with pytest.raises(OfflineError) as e:
        load_dataset("cifar10", data_root=str(tmp_path))
    msg = str(e.value)
    for part in ("'cifar10'", str(tmp_path / "cifar-10-batches-py"), "cifar-10-python.tar.gz", "--data-root", "URLError"):
        assert part in msg, part

    monkeypatch.setattr(torchvision_sets, "_download", lambda *a, **k: (_ for _ in ()).throw(OSError("timed out")))
    with pytest.raises(OfflineError, match=r"'stl10'.*stl10_binary"):
        load_dataset("stl10", data_root=str(tmp_path))


def test_torchvision_download_has_its_own_timeout_and_leaves_the_socket_default(tmp_path, monkeypatch):
    import socket
    import urllib.request

    seen = {}

    def urlopen(url, timeout=None):
        seen["url"], seen["timeout"] = url, timeout
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    before = socket.getdefaulttimeout()
    with pytest.raises(OfflineError, match=r"could not be downloaded \(URLError"):
        load_dataset("cifar10", data_root=str(tmp_path))
    assert seen["timeout"] == torchvision_sets.DOWNLOAD_TIMEOUT_S and seen["url"].endswith("cifar-10-python.tar.gz")
    assert socket.getdefaulttimeout() == before and not list(tmp_path.rglob("*.part"))


def test_torchvision_download_false_never_downloads(tmp_path, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError("download attempted although download=False")

    monkeypatch.setattr(torchvision_sets, "_download", must_not_run)
    with pytest.raises(OfflineError, match=r"'fashion_mnist'.*download=False.*FashionMNIST/raw"):
        load_dataset("fashion_mnist", data_root=str(tmp_path), download=False)
    monkeypatch.setenv("GR_EXPLORER_DATA", str(tmp_path / "from_env"))
    with pytest.raises(OfflineError, match="from_env"):
        load_dataset("cifar100", download=False)


class _FakeTV:
    def __init__(self, data, targets, classes):
        self.data, self.targets, self.classes = data, targets, classes


def test_torchvision_arrays_become_rgb_tensors(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)

    def fake_make(src, root, train, download):
        n = 100 if train else 40
        y = list(np.arange(n) % 10)
        if src.cls_name == "CIFAR10":
            return _FakeTV(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), y, [f"c{i}" for i in range(10)])
        return _FakeTV(torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8), torch.tensor(y), [f"f{i}" for i in range(10)])

    monkeypatch.setattr(torchvision_sets, "_make", fake_make)
    ds = load_dataset("cifar10", n_train=50, n_test=20, data_root=str(tmp_path))
    assert ds.train_images.shape == (50, 3, 32, 32) and ds.classes["label"][0] == "c0"
    assert torch.bincount(ds.train_labels["label"]).tolist() == [5] * 10
    fm = load_dataset("fashion_mnist", data_root=str(tmp_path), tasks=["label", "hflip"])
    assert fm.train_images.shape == (100, 3, 28, 28)
    assert torch.equal(fm.train_images[:, 0], fm.train_images[:, 1])


# ---------------------------------------------------------------- cifar10_mini

def test_cifar10_mini_ships_real_test_images():
    ds = load_dataset("cifar10_mini")
    assert (ds.n_train, ds.n_test) == (2000, 1000) and ds.classes["label"][:2] == ["airplane", "automobile"]
    assert torch.bincount(ds.train_labels["label"]).tolist() == [200] * 10
    assert torch.bincount(ds.test_labels["label"]).tolist() == [100] * 10
    assert ds.train_images.shape[1:] == (3, 32, 32) and ds.train_images.float().std() > 30  # photos, not blank
    train = {bytes(x) for x in ds.train_images.reshape(2000, -1).numpy()}
    assert not any(bytes(x) in train for x in ds.test_images.reshape(1000, -1).numpy())  # disjoint splits
    small = load_dataset("cifar10_mini", n_train=100, n_test=50, seed=3)
    assert torch.bincount(small.train_labels["label"]).tolist() == [10] * 10


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason=f"shared CIFAR-10 PNG folder not found at {SHARED_CIFAR10}")
def test_cifar10_mini_images_are_cifar10_test_images():
    """Every shipped image is one of CIFAR-10's test images, with its label (none from the train split)."""
    ds = load_dataset("cifar10_mini", n_train=50, n_test=20, seed=0)
    full = load_dataset(f"imagefolder:{SHARED_CIFAR10}", n_train=10, n_test=10000)
    index = {bytes(x): int(y) for x, y in zip(full.test_images.reshape(10000, -1).numpy(), full.test_labels["label"])}
    for x, y in zip(torch.cat([ds.train_images, ds.test_images]), torch.cat([ds.train_labels["label"], ds.test_labels["label"]])):
        assert index[bytes(x.reshape(-1).numpy())] == int(y)

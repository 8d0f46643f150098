"""About page: the guillotine effect and how to read the plots, for a teaching demo."""

from __future__ import annotations

import streamlit as st

from ..models import list_zoo, read_card, zoo_dir
from ..seeds import card_seed_summary
from ..verdict import seeds_gain_text

#: What the walkthrough quotes, measured on the default Explore run of this version (tests/test_zoo.py re-measures
#: every number: `DEMO_RUN` with the random-init baseline, `DEMO_DRAWS` with three random-init draws, `DEMO_DERIVED`
#: with the derived tasks, and the 5-epoch training without colour jitter of step 3). Gains in points.
DEMO = dict(
    color_stem=0.894, color_last=0.228, color_random=0.954, color_gain=66.6, color_gain_low=63.4, color_gain_high=69.9,
    shape_best=0.816, shape_best_cut="layer4", shape_last=0.739, shape_last_cut="proj3", shape_gain=7.7,
    shape_gain_low=5.0, shape_gain_high=10.6, shape_random=0.380, shape_chance=0.200,
    light_best=0.719, light_best_cut="layer3", light_last=0.530, light_chance=0.500,
    gray_stem=1.000, gray_last=0.549, hue_best=0.630, hue_best_cut="layer2", hue_last=0.507, hflip_max=0.498,
    nojitter_color_last=0.476,
    # the random-init twin gains too, and how much of each gain training caused (DEMO_RUN, then DEMO_DRAWS)
    shape_random_cut="layer2", shape_random_last=0.277, shape_random_gain=10.3, shape_random_gain_low=6.4,
    shape_random_gain_high=14.4, shape_training_gain=-2.5, shape_training_gain_low=-7.5, shape_training_gain_high=2.3,
    color_random_gain=6.1, color_training_gain=60.5, color_training_gain_low=56.6, color_training_gain_high=64.6,
    draws_shape_gain=7.6, draws_shape_gain_sd=2.3, draws_shape_training_gain=0.2, draws_shape_training_gain_low=-7.0,
    draws_shape_training_gain_high=6.7,
    # how sure the choice of cut is (DEMO_RUN)
    shape_p=0.979, texture_best_cut="proj1", texture_p=0.638, texture_best_low=0.747, texture_choice_low=0.725,
)
#: Times the walkthrough quotes, measured by `benchmarks/bench_claims.py --what run,probes,train` (2 cores, load
#: average 9-10; benchmarks/README.md, "Times the app states"): the default run with a fresh cache, its k-NN probes
#: alone on the cached features, and the 5-epoch training of step 3 (5 x the measured 1-epoch run).
TIMES = dict(run_s=54.5, knn_refit_s=12.3, nojitter_min=15)
DEMO_RUN = dict(models=["zoo:simclr"], baselines=["random-init"])  # the app's default Explore run
DEMO_DRAWS = dict(models=["zoo:simclr"], baselines=["random-init:3"])
DEMO_DERIVED = dict(models=["zoo:simclr"], tasks=["shape", "texture", "size", "color", "light", "grayscale", "hue",
                                                 "hflip"])
DEMO_NOJITTER = ["--objective", "simclr", "--temperature", "0.5", "--projector", "512-512-128", "--dataset", "shapes",
                 "--n-train", "8000", "--epochs", "5", "--batch-size", "128", "--crop-scale", "0.5,1",
                 "--color-jitter", "0"]

TEXT = """
### Where do the useful features live?

Self-supervised methods such as **SimCLR**, **VICReg**, **BYOL** or **Barlow Twins** train a *backbone* (a ResNet,
a ViT) followed by a small *projector* (an MLP head), and they apply their loss to the projector's output. The
loss asks two augmented views of one image — a random crop, a flip, shifted colours — to map to nearby points.
After training, the projector is thrown away and the backbone's output is used for downstream tasks.

Why throw away the last layers? Because probes on the **backbone output** beat probes on the **last projector
layer**, often by tens of points (over 30 on ImageNet). Bordes et al. call this **Guillotine Regularization**
(*Guillotine Regularization: Why removing layers is needed to improve generalization in self-supervised
learning*, [arXiv 2206.13378](https://arxiv.org/abs/2206.13378)): the layers closest to the loss specialise in the
pretext task, so cutting them off generalises better. The best place to cut is not fixed. It moves with the
training setup (objective, projector depth and width, augmentations, optimiser), with the data, and with the
downstream task. Later work finds the best features inside the network for ViTs and language models too
(*Perception Encoder*, 2025; *Layer by Layer*, 2025), and label-free measures such as effective rank
(*RankMe*, 2023) try to predict the best layer without labels.

### What the augmentations erase

The pretext task makes the network **invariant** to whatever the augmentations change. Colour jitter and
grayscale teach it to ignore colour; flips teach it to ignore left and right. That information survives in the
early layers and **vanishes along the projector first**. The procedural `shapes` dataset makes this visible: each
image shows one large object among clutter, and its shape, texture, size, colour and the side it is lit from
(`light`: left or right) are each a task. In the default run (below) the shipped SimCLR model reads `color` at
{color_stem:.2f} at its first cut and only {color_last:.2f} at the last projector layer, while its random-init twin
keeps colour ({color_random:.2f} at its best cut): training erased it. `shape`, which the augmentations keep and a
random network cannot read ({shape_random:.2f}), is learned by the backbone ({shape_best:.2f} at {shape_best_cut}) and
partly lost again in the projector ({shape_last:.2f} at {shape_last_cut}). Aligning the pretext task with the
downstream task (the `label_aligned` objective, whose positives are other images of the same class) changes how
much cutting buys: compare `zoo:label_aligned_p1` with `zoo:simclr` (the zoo's README gives the measured numbers).

### Does training cause the gain? A random network "gains" too

The dashed random network is not flat. Each of its layers is a random projection followed by a ReLU and a
normalisation: it mixes the image further and throws part of it away (deeper random layers make different images
look more alike, and the projector narrows to 128 dimensions), so a probe reads a random network best somewhere in
the middle too. In the default run the random-init twin of zoo:simclr reads `shape` at {shape_random:.2f} at
`{shape_random_cut}` and {shape_random_last:.2f} at `proj3`: it **gains {shape_random_gain:+.1f} points
[{shape_random_gain_low:+.1f}, {shape_random_gain_high:+.1f}]** by cutting, more than the trained model's
{shape_gain:+.1f}. A gain alone therefore does not say what the self-supervised training did. The tables add **of
which training**: the model's gain minus its twin's gain (each at its own best and last cut, paired over the same
test images). For `shape` it is {shape_training_gain:+.1f} points [{shape_training_gain_low:+.1f},
{shape_training_gain_high:+.1f}]: no clear share, the trained projector loses shape no faster than a random one. For
`color` it is {color_training_gain:+.1f} [{color_training_gain_low:+.1f}, {color_training_gain_high:+.1f}]: the random
network's colour gain is only {color_random_gain:+.1f}; the training (colour jitter, grayscale) erased colour along
the projector.

One random draw is itself a sample. With the baseline `random-init:3` (three seeded draws) the tables compare the
model with the draws' mean, and the spread between the draws widens the interval (a Student-t term with two
degrees of freedom: three draws say little about the spread, so the interval grows a lot). Over three draws the
twin's `shape` gain is {draws_shape_gain:+.1f} ± {draws_shape_gain_sd:.1f} points, and the share training caused
{draws_shape_training_gain:+.1f} [{draws_shape_training_gain_low:+.1f}, {draws_shape_training_gain_high:+.1f}].

### How to read the plots

* **Accuracy vs depth** (Explore, Compare). The x axis lists the *cuts* in forward order: the backbone stages, the
  pooled backbone output `pool` (what the projector receives), then `proj1` ... `projL`, the output of each
  projector layer (`projL` is what the loss sees). The blue band is the backbone, the orange band the projector.
  Each line is one task (and probe); the y axis is test accuracy of a probe fitted on the frozen features of that
  cut, and the shaded band around a line is its **95% bootstrap interval** over the test images. The buttons above
  the chart show one task at a time, which reads best on a projector.
* **References.** The dashed line is the **same network with random weights** (seeded): what the architecture
  alone gives. The diamond at `pixels` is a probe on the **raw pixels**. The dotted line is **chance** (always
  guessing the most common class). A cut is only interesting where it beats these.
* **The star** marks the best cut of each line, chosen on **validation** images held out of the training images
  (never on the test images it is scored on). The number beside it is the **guillotine gain**: accuracy at the best
  cut minus accuracy at the last cut, in points. It is written only when it is clear: its 95% interval (paired over
  the same test images) excludes 0; otherwise the tables say **no clear gain** and give the numbers. A gain is
  **borderline** when that interval's lower bound lies within 5 test images' worth of accuracy of 0 (half a point at
  1,000 test images: another machine's rounding or another validation sample can move it across 0), or when it
  stops excluding 0 once the choice of cut is resampled too. A large clear gain means the projector threw away what
  that task needed; how much of it training caused is the next section's question.
* **The bars under the chart** say how sure the choice of cut is. Another set of validation images could choose
  another cut, so the validation and the test images are both drawn again with replacement, 1,000 times, and the cut
  re-chosen each time: a bar is the share of those draws in which its cut is chosen. In the default run `shape`
  chooses `{shape_best_cut}` in {shape_p:.0%} of them, `texture` chooses `{texture_best_cut}` in only {texture_p:.0%}.
  The table's **with the choice of cut** interval includes that: {texture_choice_low:.3f} instead of
  {texture_best_low:.3f} as the lower bound for `texture`.
* **The table under the chart** gives, per task, the best cut and its accuracy with its interval, the last cut, the
  gain and how much of it training caused, the random-init and raw-pixel accuracies (and how far the model is above
  its random twin) and chance.
  **Probe validation** shows how the probe's own setting (the L2 strength C, or k) was chosen at one cut.
* **The cut × task heatmap** shows the same numbers as a grid: read a row to follow one task through the network,
  a column to see what one cut still knows.
* **Diagnostics** (switch them on in the sidebar) are label-free: RankMe (effective rank), alpha-ReQ (how fast the
  eigenvalues decay), stable rank and NESum per cut, under the accuracy of the same cuts; the CKA between every two
  cuts (1 = the same representation up to a rotation and a scale); and how little each cut moves under each
  training augmentation (invariance). A sentence per task says which cut each metric would have picked without
  labels, and how many test points trusting it would cost, with the interval of that loss (a loss whose interval
  contains 0 is within the noise of the test sample).
* **Compare** puts several models on one chart per task. Try the zoo's projector variants (none, one layer, three,
  three wide) or objectives: how much cutting buys for `shape` depends on the projector's design. A design is a
  recipe, and each seed is one draw of it, so the zoo states a design's gain as the mean of its seeds' gains with
  the 95% Student-t interval of that mean (each seed's own gain is detail): {designs}. Several seeds of one
  recipe are drawn as their mean with a band from the lowest to the highest seed, and their gain as mean ± sd
  over seeds. The CKA at each depth says where two models' representations part.

### Probes

A **linear probe** is a multinomial logistic regression on standardised features (its L2 strength picked on a
validation split of the training images, then refitted); a **k-NN probe** votes among the nearest training
images by cosine similarity. Both are fitted for every cut and task at once on features extracted in one
forward pass per batch, and the features are cached on disk, so changing only the probes skips the forward pass;
the fits remain (on the default run and a busy 2-core CPU, load 9-10: {knn_refit_s:.0f} s for k-NN probes, about
as long as the whole run, {run_s:.0f} s, for linear ones; `benchmarks/bench_claims.py`).

### A ten-minute demo

The numbers below are those of the default run of this version (zoo:simclr on `shapes`, 2,000 / 1,000 images,
seed 0, linear probe, random-init baseline); a rerun gives the same ones.

1. **Explore** → press **Run**. Pick `color`: {color_stem:.2f} at `stem`, {color_last:.2f} at `proj3`, a gain of
   {color_gain:+.0f} points [{color_gain_low:+.0f}, {color_gain_high:+.0f}]; the dashed random network keeps colour
   ({color_random:.2f} at its best cut). Pick `shape`: the best cut is `{shape_best_cut}` ({shape_best:.2f}), the last
   cut {shape_last:.2f}, a gain of {shape_gain:+.0f} points [{shape_gain_low:+.0f}, {shape_gain_high:+.0f}], far above
   the random network ({shape_random:.2f}) and chance ({shape_chance:.2f}). `light` (removed by flips): best at
   `{light_best_cut}` ({light_best:.2f}), {light_last:.2f} at `proj3`, near its chance {light_chance:.2f}.
2. Add the derived tasks `grayscale` and `hue` and run again: was the image greyed? {gray_stem:.2f} at `stem`,
   {gray_last:.2f} at `proj3` (chance 0.50). Hue-shifted? at best {hue_best:.2f} (`{hue_best_cut}`), {hue_last:.2f} at
   `proj3`. The invariance the augmentations taught shows up as a drop to chance along the network. (`hflip`
   stays at chance everywhere on `shapes`, {hflip_max:.2f} at most: globally pooled features of these upright,
   centred objects do not see a left-right flip, so that task says nothing here.)
3. **Train** → keep the shipped recipe, set the colour jitter to 0 and the epochs to 5, and train (310 steps: the
   page estimates their time on this machine before you start; {nojitter_min:.0f} minutes on a 2-core CPU at load 10,
   `benchmarks/bench_claims.py`); probe `color`: it now reaches `proj3` at {nojitter_color_last:.2f}, twice the shipped model's
   {color_last:.2f}. It still falls along the network: grayscale (20% of the views) keeps pushing against it.
4. Download the **run config** of any run: `gr-explorer sweep --config run.json` reproduces the numbers from a
   terminal, with the same library the app uses.
"""


#: the projector designs the Compare paragraph teaches with, and how it names them
TAUGHT = {"simclr": "three layers", "simclr_proj3_wide": "three wide", "simclr_proj1": "one layer",
          "simclr_proj_none": "no projector (its last cut is the pooled backbone)"}


@st.cache_data(ttl=600, show_spinner=False)
def design_gains(task: str = "shape") -> str:
    """Each taught design's `task` gain over its shipped seeds, read from the cards (never typed here); a design is
    found by its seed-0 model among the members of the cards' seed groups (seeds.seed_groups)."""
    rows = card_seed_summary({n: read_card(zoo_dir() / f"{n}.safetensors") for n in list_zoo()}, task)
    by_member = {m: r for r in rows.itertuples() if r.probe == "linear" for m in r.models}
    texts = [f"{label}: {seeds_gain_text(r.gain_mean, r.gain_sd, r.n_seeds, r.gain_ci_low, r.gain_ci_high, r.clear_gain)}"
             for d, label in TAUGHT.items() if (r := by_member.get(d)) is not None]
    return "; ".join(texts) or "no seeded designs are shipped"


def render() -> None:
    st.title("About: the guillotine effect")
    st.markdown(TEXT.format(**DEMO, **TIMES, designs=design_gains()))
    st.caption("gr-explorer is a thin app over a Python library and a CLI (`gr-explorer --help`): every number shown "
               "here comes from `run_sweep`, and every run can be reproduced from its run config.")

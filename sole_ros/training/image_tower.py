"""Teach a randomly initialised small CLIP's image tower to see the synthetic scenes' classes.

SOLE fuses the per-pixel features of a 2D open-vocabulary segmenter (OpenSeg) into the 3D scene;
here that is the node's dense CLIP features (sole_ros.scene.dense_clip). A checkpoint trained with
a random small CLIP (the demo weights) has an image tower that says nothing, so the node fused no
image features with it and named objects from shape alone. This trains that image tower, through
the same dense (MaskCLIP) path the node runs, so that each pixel's feature lands on the text
embedding of what the pixel shows ("a mug in a scene.", "a floor in a scene.", ...): the very
vectors the synthetic training scans' stand-in point features are made of (TextOracleFeatures).
The text tower is not touched, so text queries, and the SOLE network trained in that text space,
keep their meaning.

Data: RGB frames rendered along the synthetic scenes' camera sweeps with their ground-truth class
per pixel (background: floor below 2 cm, wall above). Loss per sampled pixel: cross-entropy over
the vocabulary's embeddings plus (1 - cosine) to its own, pixels sampled evenly over the classes a
batch shows (a mug covers a hundred times fewer pixels than the floor). Optionally (region_weight) a
cross-entropy on each class region's mean feature in a frame too, since the map names an object by
pooling its voxels' features, not pixel by pixel. Bit-repeatable on one thread.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from sole_ros.synthetic import CLASS_NAMES, generate_scene, render_sequence

BACKGROUND_PHRASES = ("floor", "wall")  # TextOracleFeatures' names for the background
FLOOR_HEIGHT = 0.02  # m: background below this is floor, as in TextOracleFeatures


@dataclasses.dataclass
class ImageTowerConfig:
    # training scene seeds first_seed .. first_seed + scenes - 1 (tabletop/room alternating); 288:
    # the demo weights' tower (96 scenes named the held-out classes worse: sole_ros/weights/README.md)
    scenes: int = 288
    first_seed: int = 0
    frames_per_scene: int = 4
    eval_seeds: tuple[int, int] = (300, 316)  # held-out scenes for the figures [first, last)
    eval_frames_per_scene: int = 2
    image_size: tuple[int, int] = (320, 240)  # width, height of the rendered frames
    short_side: int = 320  # network input short side: 16 px patches -> 12 px of a 240-line frame
    epochs: int = 24  # the demo weights' tower: 12 epochs left it under-fitted (train ~ held-out)
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.05
    pixels_per_image: int = 2048
    logit_scale: float = 50.0  # the prompts' embeddings lie at cosine 0.8-0.9 of each other
    cosine_weight: float = 1.0
    # weight of the region loss: cross-entropy of each class region's mean feature in a frame, the
    # way the map names an object by pooling its voxels' features; 0: pixels only
    region_weight: float = 0.0
    zoom: tuple[float, float] = (0.7, 1.0)  # random crop side, as a share of the frame
    # A synthetic object's colour is drawn at random, whatever its class: frames with their colour
    # channels permuted, or greyed, teach the tower shape rather than the training scenes' colours.
    channel_shuffle: float = 0.5  # share of frames with their RGB channels permuted
    grey: float = 0.2  # share of frames turned grey
    # the scenes' object size ranges (synthetic.catalogue.OBJECT_SIZES): those the SOLE network was
    # trained on (the CLI reads them from the checkpoint's run)
    object_sizes: str = "compact"
    seed: int = 0


@dataclasses.dataclass
class LabelledImages:
    colors: np.ndarray  # uint8 [N,H,W,3]
    targets: np.ndarray  # int16 [N,H,W]: index into the vocabulary, -1 = nothing there


def vocabulary() -> tuple[str, ...]:
    return tuple(CLASS_NAMES) + BACKGROUND_PHRASES


def vocabulary_embeddings(clip) -> torch.Tensor:
    """[len(vocabulary()), D] text embeddings of the vocabulary with SOLE's prompt, one phrase at a
    time as the synthetic scans' stand-in point features are encoded: what the tower learns to give."""
    from sole_ros.model.text import TextEncoder
    from sole_ros.training.components import CLASS_PROMPT, encode_each

    return encode_each(TextEncoder(device=clip.device, prompt=CLASS_PROMPT, loaded=clip))(
        vocabulary()
    )


def render_labelled_images(
    seeds, frames_per_scene: int, image_size: tuple[int, int], object_sizes: str = "compact"
) -> LabelledImages:
    """Frames of synthetic scenes (even seed: tabletop, odd: room) with each pixel's phrase index."""
    colors, targets = [], []
    for seed in seeds:
        scene = generate_scene(int(seed), "room" if seed % 2 else "tabletop", sizes=object_sizes)
        for frame in render_sequence(scene, frames_per_scene, *image_size, seed=int(seed)):
            colors.append(frame.color)
            targets.append(pixel_targets(frame))
    return LabelledImages(np.stack(colors), np.stack(targets))


def pixel_targets(frame) -> np.ndarray:
    """int16 [H,W]: each pixel's index into vocabulary() (background: floor below FLOOR_HEIGHT,
    else wall), -1 where the frame sees nothing."""
    floor, wall = len(CLASS_NAMES), len(CLASS_NAMES) + 1
    target = frame.semantic.astype(np.int16)
    background = (frame.semantic < 0) & (frame.depth_ideal > 0)
    height = _world_height(frame)
    target[background] = np.where(height[background] < FLOOR_HEIGHT, floor, wall)
    target[frame.depth_ideal <= 0] = -1
    return target


def _world_height(frame) -> np.ndarray:
    height, width = frame.depth_ideal.shape
    v, u = np.mgrid[0:height, 0:width]
    K, depth = frame.K, frame.depth_ideal
    cam = np.stack(
        [(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], axis=-1
    )
    return cam @ frame.pose[2, :3] + frame.pose[2, 3]


def _augment(
    colors: np.ndarray, targets: np.ndarray, config: ImageTowerConfig, rng: np.random.Generator
):
    """Random crop-and-zoom (objects nearer or farther), mirror, brightness, channel order and
    grey, image by image."""
    n, height, width = targets.shape
    out_c = torch.empty((n, 3, height, width))
    out_t = torch.empty((n, height, width), dtype=torch.long)
    for i in range(n):
        share = rng.uniform(*config.zoom)
        ch, cw = int(round(height * share)), int(round(width * share))
        top, left = rng.integers(0, height - ch + 1), rng.integers(0, width - cw + 1)
        c = (
            torch.from_numpy(colors[i, top : top + ch, left : left + cw])
            .permute(2, 0, 1)
            .float()[None]
        )
        t = torch.from_numpy(targets[i, top : top + ch, left : left + cw].astype(np.int64))[
            None, None
        ].float()
        c = F.interpolate(c, size=(height, width), mode="bilinear", align_corners=False)[0]
        t = F.interpolate(t, size=(height, width), mode="nearest")[0, 0].long()
        if rng.random() < 0.5:
            c, t = c.flip(-1), t.flip(-1)
        c = c * rng.uniform(0.7, 1.3)
        if rng.random() < config.channel_shuffle:
            c = c[torch.from_numpy(rng.permutation(3))]
        if rng.random() < config.grey:
            c = c.mean(dim=0, keepdim=True).expand(3, -1, -1)
        out_c[i] = c.clamp(0, 255)
        out_t[i] = t
    return out_c.round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), out_t


def _balanced_pixels(targets: torch.Tensor, count: int, rng: np.random.Generator) -> torch.Tensor:
    """Flat indices of ``count`` pixels of one image, each class present equally likely."""
    flat = targets.reshape(-1).numpy()
    valid = np.flatnonzero(flat >= 0)
    if valid.size == 0:
        return torch.zeros(0, dtype=torch.long)
    classes, inverse, counts = np.unique(flat[valid], return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return torch.from_numpy(rng.choice(valid, size=count, p=weights / weights.sum()))


def region_means(
    features: torch.Tensor, labels: torch.Tensor, frame_of: torch.Tensor, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit mean feature of each (frame, class) region among sampled pixels, and the region's class."""
    regions, region_of = torch.unique(frame_of * classes + labels, return_inverse=True)
    sums = features.new_zeros(len(regions), features.shape[1]).index_add(0, region_of, features)
    return F.normalize(sums, dim=-1), regions % classes


def sample_at_pixels(
    grid: torch.Tensor, pixels: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """(h,w,D) feature grid tiling a width x height image -> features at flat pixel indices, bilinear
    with cell centres as sole_ros.scene.feature_fusion.sample_feature_grid takes them; differentiable."""
    width, height = image_size
    pixels = pixels.to(grid.device)
    u = (pixels % width).float()
    v = torch.div(pixels, width, rounding_mode="floor").float()
    # grid_sample's align_corners=False puts cell centres where the map's sampler does
    coords = torch.stack([(u + 0.5) / width * 2 - 1, (v + 0.5) / height * 2 - 1], dim=-1)
    sampled = F.grid_sample(
        grid.permute(2, 0, 1)[None],
        coords[None, None],
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return F.normalize(sampled[0, :, 0].t(), dim=-1)


@torch.no_grad()
def evaluate_image_tower(
    dense, phrase_embeddings: torch.Tensor, images: LabelledImages, batch_size: int = 8
) -> dict:
    """Pixel accuracy (nearest phrase) over every labelled pixel and per class, and region accuracy:
    the mean feature over each class region of a frame (as the map pools an object's voxels)."""
    vocabulary_embeddings = (
        phrase_embeddings.float().cpu()
    )  # scored on the CPU, whatever the device
    hits = np.zeros(len(phrase_embeddings))
    totals = np.zeros(len(phrase_embeddings))
    region_hits = region_total = 0
    for start in range(0, len(images.colors), batch_size):
        colors = images.colors[start : start + batch_size]
        grids = dense.grid_features(dense.network_input(colors))
        for grid, target in zip(
            grids, torch.from_numpy(images.targets[start : start + batch_size].astype(np.int64))
        ):
            pixels = torch.nonzero(target.reshape(-1) >= 0)[:, 0]
            labels = target.reshape(-1)[pixels]
            features = (
                sample_at_pixels(grid, pixels, (target.shape[1], target.shape[0])).float().cpu()
            )
            predicted = (features @ vocabulary_embeddings.t()).argmax(dim=1)
            np.add.at(totals, labels.numpy(), 1)
            np.add.at(hits, labels.numpy(), (predicted == labels).numpy())
            means, classes = region_means(
                features, labels, torch.zeros_like(labels), len(vocabulary_embeddings)
            )
            region_hits += int(((means @ vocabulary_embeddings.t()).argmax(dim=1) == classes).sum())
            region_total += len(classes)
    seen = totals > 0
    names = vocabulary()
    return {
        "pixel_accuracy": float(hits.sum() / max(totals.sum(), 1)),
        "mean_class_accuracy": float(np.mean(hits[seen] / totals[seen])) if seen.any() else 0.0,
        "region_accuracy": region_hits / max(region_total, 1),
        "regions": region_total,
        "per_class": {names[i]: round(float(hits[i] / totals[i]), 4) for i in np.flatnonzero(seen)},
    }


def train_image_tower(
    clip, phrase_embeddings: torch.Tensor, config: ImageTowerConfig, log=print
) -> dict:
    """Train ``clip``'s image tower in place (a sole_ros.clip.LoadedClip on the CPU or a GPU); its
    text tower and every other weight stay as they are. Returns the held-out figures."""
    first, last = config.first_seed, config.first_seed + config.scenes
    if first < config.eval_seeds[1] and config.eval_seeds[0] < last:
        raise ValueError(
            f"training scenes {first}-{last - 1} include the held-out scenes "
            f"{config.eval_seeds[0]}-{config.eval_seeds[1] - 1}: train on fewer scenes"
        )
    from sole_ros.scene.dense_clip import DenseClipFeatures

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()
    seeds = range(config.first_seed, config.first_seed + config.scenes)
    train = render_labelled_images(
        seeds, config.frames_per_scene, config.image_size, config.object_sizes
    )
    held_out = render_labelled_images(
        range(*config.eval_seeds),
        config.eval_frames_per_scene,
        config.image_size,
        config.object_sizes,
    )
    log(
        f"rendered {len(train.colors)} training and {len(held_out.colors)} held-out frames "
        f"in {time.perf_counter() - started:.0f} s"
    )

    model = clip.model
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    visual = model.visual
    trained = [p for p in visual.parameters()]
    for parameter in trained:
        parameter.requires_grad_(True)
    dense = DenseClipFeatures(clip, short_side=config.short_side, mixed_precision=False)
    targets_embedded = phrase_embeddings.to(clip.device).float()
    steps_per_epoch = len(train.colors) // config.batch_size
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    visual.train()
    try:
        for epoch in range(config.epochs):
            order = rng.permutation(len(train.colors))
            totals = []
            for step in range(steps_per_epoch):
                chosen = np.sort(order[step * config.batch_size : (step + 1) * config.batch_size])
                loss = _tower_loss(
                    dense,
                    targets_embedded,
                    train.colors[chosen],
                    train.targets[chosen],
                    config,
                    rng,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                totals.append(loss.item())
            log(
                f"image tower epoch {epoch + 1}/{config.epochs}: loss {np.mean(totals):.3f} "
                f"({time.perf_counter() - started:.0f} s)"
            )
    finally:
        visual.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    figures = evaluate_image_tower(dense, targets_embedded, held_out)
    log(
        f"held-out frames (seeds {config.eval_seeds[0]}-{config.eval_seeds[1] - 1}): pixel accuracy "
        f"{figures['pixel_accuracy']:.3f}, mean over classes {figures['mean_class_accuracy']:.3f}, "
        f"regions {figures['region_accuracy']:.3f} of {figures['regions']}"
    )
    return figures


def _tower_loss(
    dense,
    targets_embedded: torch.Tensor,
    colors: np.ndarray,
    targets: np.ndarray,
    config: ImageTowerConfig,
    rng: np.random.Generator,
) -> torch.Tensor:
    """The loss of one batch of frames: each sampled pixel's feature against its class's phrase
    (cross-entropy and cosine), plus the region loss on each frame's class means."""
    colors, targets = _augment(colors, targets, config, rng)
    grids = dense.grid_features(dense.network_input(colors))
    features, labels, frame_of = [], [], []
    for frame, (grid, target) in enumerate(zip(grids, targets)):
        pixels = _balanced_pixels(target, config.pixels_per_image, rng)
        features.append(sample_at_pixels(grid, pixels, config.image_size))
        labels.append(target.reshape(-1)[pixels])
        frame_of.append(torch.full((len(pixels),), frame, dtype=torch.long))
    device = features[0].device
    features, labels = torch.cat(features), torch.cat(labels).to(device)
    similarity = features @ targets_embedded.t()
    loss = (
        F.cross_entropy(config.logit_scale * similarity, labels)
        + config.cosine_weight * (1 - similarity.gather(1, labels[:, None])).mean()
    )
    if config.region_weight:
        means, classes = region_means(
            features, labels, torch.cat(frame_of).to(device), len(targets_embedded)
        )
        loss = loss + config.region_weight * F.cross_entropy(
            config.logit_scale * means @ targets_embedded.t(), classes
        )
    return loss


def clip_with_text_tower_of(data: dict, model_name: str, device, seed: int = 0):
    """A LoadedClip of architecture ``model_name`` holding the text tower of checkpoint ``data``'s
    random CLIP: the checkpoint's CLIP itself when the name is its own, else a new model (image
    tower drawn from ``seed``) with the text weights copied; ValueError when the towers differ."""
    import open_clip

    from sole_ros.clip import ClipSpec, load_clip, register_tiny_config

    own = data["hyper_parameters"]["clip"]["model_name"]
    if model_name == own:
        clip = load_clip(ClipSpec(own, None), device)
        clip.model.load_state_dict(data["clip_state_dict"])
        return clip
    register_tiny_config()
    configs = [open_clip.get_model_config(name) for name in (own, model_name)]
    if configs[1] is None:
        raise ValueError(f"unknown CLIP architecture {model_name!r}")
    if any(
        c is None
        or (c["text_cfg"], c["embed_dim"]) != (configs[0]["text_cfg"], configs[0]["embed_dim"])
        for c in configs
    ):
        raise ValueError(
            f"{model_name!r} does not share the text tower of the checkpoint's CLIP {own!r}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = load_clip(ClipSpec(model_name, None), device)
    state = clip.model.state_dict()
    state.update({k: v for k, v in data["clip_state_dict"].items() if not k.startswith("visual.")})
    clip.model.load_state_dict(state)
    return clip


def attach_image_tower(data: dict, clip, config: ImageTowerConfig, figures: dict, destination):
    """Write checkpoint ``data`` (as read) with ``clip``'s weights and what the node needs to use
    its image tower (the input short side), plus the settings and held-out figures, for the record.
    A tower trained further (the same architecture as ``data``'s) keeps its earlier record under
    ``continued_from``."""
    from sole_ros.training.checkpointing import _plain, save_atomic

    data = dict(data)
    data["clip_state_dict"] = {k: v.detach().cpu() for k, v in clip.model.state_dict().items()}
    hp = dict(data["hyper_parameters"])
    tower = {"short_side": config.short_side, "settings": _plain(config), "held_out": figures}
    earlier = hp["clip"].get("image_tower")
    if earlier and hp["clip"].get("model_name") == clip.spec.model_name:
        tower["continued_from"] = earlier
    hp["clip"] = {**hp["clip"], "model_name": clip.spec.model_name, "image_tower": tower}
    data["hyper_parameters"] = hp
    return save_atomic(data, destination)

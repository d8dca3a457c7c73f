"""sole_ros.clip: the shared open_clip loader (real open_clip code paths, random tiny weights)."""

import os
import subprocess
import sys

import pytest
import torch

from sole_ros.clip import ClipSpec, ClipWeightsUnavailable, load_clip, uses_quick_gelu


def test_tiny_clip_loads_and_encodes():
    clip = load_clip(ClipSpec.tiny(), "cpu")
    assert clip.embed_dim == 64
    assert clip.image_size == (64, 64)
    assert len(clip.image_mean) == 3 and len(clip.image_std) == 3
    assert not clip.model.training
    with torch.no_grad():
        text = clip.model.encode_text(clip.tokenizer(["a chair in a scene.", "a lamp in a scene."]))
        image = clip.model.encode_image(torch.randn(1, 3, *clip.image_size))
    assert text.shape == (2, 64) and image.shape == (1, 64)


def test_missing_local_weights_give_a_clear_error(tmp_path):
    with pytest.raises(ClipWeightsUnavailable, match="local weights file"):
        load_clip(ClipSpec("sole-tiny", str(tmp_path / "absent.bin")), "cpu")


def test_local_weights_file_is_loaded(tmp_path):
    source = load_clip(ClipSpec.tiny(), "cpu")
    path = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), path)
    loaded = load_clip(ClipSpec("sole-tiny", str(path)), "cpu")
    for (name, a), b in zip(source.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_unknown_architecture_is_a_value_error():
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        load_clip(ClipSpec("no-such-net", None), "cpu")


def test_openai_weights_get_quick_gelu():
    """OpenAI's CLIP was trained with QuickGELU; open_clip's plain ViT-L-14 config uses GELU."""
    from open_clip.transformer import QuickGELU

    assert uses_quick_gelu(ClipSpec("ViT-L-14", "openai"))
    assert not uses_quick_gelu(ClipSpec("ViT-L-14", "laion2b_s32b_b82k"))
    assert not uses_quick_gelu(ClipSpec.tiny())
    assert uses_quick_gelu(ClipSpec("ViT-L-14", "/some/local/file.bin", quick_gelu=True))
    clip = load_clip(ClipSpec("sole-tiny", None, quick_gelu=True), "cpu")
    assert isinstance(clip.model.transformer.resblocks[0].mlp.gelu, QuickGELU)
    plain = load_clip(ClipSpec.tiny(), "cpu")
    assert not isinstance(plain.model.transformer.resblocks[0].mlp.gelu, QuickGELU)


def test_tiny_config_registration_leaves_no_files(tmp_path):
    """Every process registers sole-tiny with open_clip; none may leave a folder in the temp dir."""
    script = (
        "import open_clip\n"
        "from sole_ros.clip import ClipSpec, load_clip\n"
        "load_clip(ClipSpec.tiny(), 'cpu')\n"
        "open_clip.add_model_config('/nonexistent')  # a later rescan keeps the config\n"
        "assert 'sole-tiny' in open_clip.list_models()\n"
        "load_clip(ClipSpec.tiny(), 'cpu')\n"
    )
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert [
        p.name for p in tmp.iterdir() if p.name.startswith("sole_ros")
    ] == []  # torch may add its own

"""LoRA loading (official / kohya / diffusers keys) and on-the-fly application on the tiny golden DiT."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_close, find_golden
from ltx2_nodes.errors import CheckpointError
from ltx2_nodes.loading.checkpoint import LTX2Checkpoint
from ltx2_nodes.loading.components import load_transformer
from ltx2_nodes.loading.family import LTX_2, LTX_2_3
from ltx2_nodes.loading.lora import (applied_loras, apply_loras, fuse_loras, load_and_apply_loras, load_lora,
                                     resolve_targets, unfuse_loras)
from ltx2_nodes.loading.quant import FP8Linear, cast_linears_to_fp8
from ltx2_nodes.model.transformer import ModalityInput
from ltx2_nodes.handles import load_ltx2

def _targets(model) -> tuple[str, ...]:
    """Layers of every kind a LoRA reaches: attention, audio FFN (in the last block), patchify, A/V attention."""
    last = len(model.transformer_blocks) - 1
    return ("transformer_blocks.0.attn1.to_q", f"transformer_blocks.{last}.audio_ff.net.2", "patchify_proj",
            "transformer_blocks.0.video_to_audio_attn.to_out.0")


@pytest.fixture(scope="module")
def base():
    return load_transformer(LTX2Checkpoint(find_golden("transformer").weights_path), dtype=torch.float32)


@pytest.fixture()
def model(base):
    return copy.deepcopy(base)


def _factors(model, rank: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in _targets(model):
        layer = model.get_submodule(name)
        out[name] = (torch.randn(rank, layer.in_features, generator=g) * 0.3,
                     torch.randn(layer.out_features, rank, generator=g) * 0.3)
    return out


def _save_official(path, factors):
    save_file({f"diffusion_model.{n}.lora_{ab}.weight": t for n, (a, b) in factors.items()
               for ab, t in (("A", a), ("B", b))}, str(path))
    return path


def _inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    golden = find_golden("transformer")
    cfg = model.config

    def modality(name, channels):
        positions = golden[f"{name}_positions"][:1]
        tokens = positions.shape[2]
        return ModalityInput(latent=torch.randn(1, tokens, channels, generator=g), sigma=torch.tensor([0.6]),
                             timesteps=torch.tensor([0.6]), positions=positions,
                             context=torch.randn(1, 5, cfg.context_width(name), generator=g))

    return modality("video", cfg.in_channels), modality("audio", cfg.audio_in_channels)


def _run(model, inputs):
    with torch.no_grad():
        return model(*inputs)


def _fused_reference(base, loras):
    """W + sum(strength * scale * B @ A), done on a copy of the weights: the mathematical definition."""
    ref = copy.deepcopy(base)
    with torch.no_grad():
        for factors, strength, scale in loras:
            for name, (a, b) in factors.items():
                ref.get_submodule(name).weight += strength * scale * (b @ a)
    return ref


def test_on_the_fly_equals_fused_definition(base, model, tmp_path):
    factors = _factors(model, 4, 0)
    handle = apply_loras(model, [(load_lora(_save_official(tmp_path / "a.safetensors", factors)), 0.8)])
    assert sorted(handle.modules) == sorted(factors)
    inputs = _inputs(model)
    ours, ref = _run(model, inputs), _run(_fused_reference(base, [(factors, 0.8, 1.0)]), inputs)
    plain = _run(base, inputs)
    for o, r, p, name in zip(ours, ref, plain, ("video", "audio")):
        assert_close(o, r, name, 1e-5)
        assert (o - p).abs().max() > 1e-3, "the LoRA had no effect"
    # weights untouched, state dict keys unchanged, factors are buffers that move with the module
    assert torch.equal(model.transformer_blocks[0].attn1.to_q.weight, base.transformer_blocks[0].attn1.to_q.weight)
    assert set(model.state_dict()) == set(base.state_dict())
    assert any(n.endswith(f"to_q.lora_down_{handle.adapter}") for n, _ in model.named_buffers())


def test_several_loras_add_and_strength_zero_is_base(base, model, tmp_path):
    f1, f2 = _factors(model, 4, 1), _factors(model, 2, 2)
    l1 = load_lora(_save_official(tmp_path / "one.safetensors", f1))
    l2 = load_lora(_save_official(tmp_path / "two.safetensors", f2))
    inputs = _inputs(model)
    apply_loras(model, [(l1, 1.0), (l2, -0.5)])
    ref = _fused_reference(base, [(f1, 1.0, 1.0), (f2, -0.5, 1.0)])
    for o, r in zip(_run(model, inputs), _run(ref, inputs)):
        assert_close(o, r, "two loras", 1e-5)

    fresh = copy.deepcopy(base)
    handle = apply_loras(fresh, [(l1, 0.0)])
    assert handle.modules == []
    for o, p in zip(_run(fresh, inputs), _run(base, inputs)):
        assert torch.equal(o, p)


def test_kohya_and_diffusers_names(base, model, tmp_path):
    factors = _factors(model, 4, 3)
    alpha = 2.0  # kohya scale = alpha / rank
    kohya = {}
    for name, (a, b) in factors.items():
        key = "lora_unet_" + name.replace(".", "_")
        kohya[f"{key}.lora_down.weight"], kohya[f"{key}.lora_up.weight"] = a, b
        kohya[f"{key}.alpha"] = torch.tensor(alpha)
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    diffusers = {}
    for name, (a, b) in factors.items():
        dname = name.replace("patchify_proj", "proj_in")
        diffusers[f"transformer.{dname}.lora_A.weight"], diffusers[f"transformer.{dname}.lora_B.weight"] = a, b
    save_file(diffusers, str(tmp_path / "diffusers.safetensors"))

    inputs = _inputs(model)
    handle = load_and_apply_loras(model, [(tmp_path / "kohya.safetensors", 1.0)])
    assert sorted(handle.modules) == sorted(factors)
    for o, r in zip(_run(model, inputs), _run(_fused_reference(base, [(factors, 1.0, alpha / 4)]), inputs)):
        assert_close(o, r, "kohya", 1e-5)
    handle.remove()
    handle = load_and_apply_loras(model, [(tmp_path / "diffusers.safetensors", 1.0)])
    assert sorted(handle.modules) == sorted(factors)
    for o, r in zip(_run(model, inputs), _run(_fused_reference(base, [(factors, 1.0, 1.0)]), inputs)):
        assert_close(o, r, "diffusers", 1e-5)


def test_fuse_unfuse_and_context_manager(base, model, tmp_path):
    factors = _factors(model, 4, 4)
    lora = load_lora(_save_official(tmp_path / "a.safetensors", factors))
    inputs = _inputs(model)
    plain = _run(base, inputs)
    with applied_loras(model, [(lora, 1.0)]):
        on_the_fly = _run(model, inputs)
        assert sorted(fuse_loras(model)) == sorted(factors)
        fused = _run(model, inputs)
        assert sorted(unfuse_loras(model)) == sorted(factors)
    for a, b in zip(fused, on_the_fly):
        assert_close(a, b, "fused vs on the fly", 1e-5)
    for a, b in zip(_run(model, inputs), plain):  # unfusing subtracts the delta again: float32 rounding only
        assert_close(a, b, "after removal", 1e-6 * max(1.0, b.abs().max().item()))
    assert not any("lora" in n for n, _ in model.named_buffers())

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with applied_loras(model, [(lora, 1.0)]):
            raise Boom
    assert not any("lora" in n for n, _ in model.named_buffers())
    assert not any(m._forward_hooks for m in model.modules())


def test_fp8_layers_take_loras_on_the_fly(base, tmp_path):
    fp8 = copy.deepcopy(base)
    cast_linears_to_fp8(fp8, include=lambda name: name.startswith("transformer_blocks."))
    factors = _factors(base, 4, 5)
    lora = load_lora(_save_official(tmp_path / "a.safetensors", factors))
    inputs = _inputs(base)
    without = _run(fp8, inputs)
    apply_loras(fp8, [(lora, 1.0)])
    assert "transformer_blocks.0.attn1.to_q" not in fuse_loras(fp8)  # fp8 weights are never written
    with_lora = _run(fp8, inputs)
    # reference: the float model holding the fp8 model's (dequantized) weights, with the LoRA fused in
    dequantized = copy.deepcopy(base)
    with torch.no_grad():
        for name, layer in fp8.named_modules():
            if isinstance(layer, FP8Linear):
                dequantized.get_submodule(name).weight.copy_(layer.dequantized_weight(torch.float32))
    expected = _run(_fused_reference(dequantized, [(factors, 1.0, 1.0)]), inputs)
    for w, wo, e in zip(with_lora, without, expected):
        assert_close(w, e, "fp8 + LoRA", 1e-5)
        assert (w - wo).abs().max() > 1e-3, "the LoRA had no effect"


def test_foreign_and_mismatched_loras_are_named(model, tmp_path):
    save_file({"lora_unet_input_blocks_1_1_proj_in.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_input_blocks_1_1_proj_in.lora_up.weight": torch.zeros(8, 4)},
              str(tmp_path / "sdxl.safetensors"))
    with pytest.raises(CheckpointError, match=r"LoRA sdxl\.safetensors does not target this model: none of its 1 "
                                              r"layers \(e\.g\. \['input_blocks_1_1_proj_in'\]\)"):
        load_and_apply_loras(model, [(tmp_path / "sdxl.safetensors", 1.0)])

    q = model.transformer_blocks[0].attn1.to_q
    save_file({"diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, q.in_features + 1),
               "diffusion_model.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(q.out_features, 4)},
              str(tmp_path / "big.safetensors"))
    with pytest.raises(CheckpointError, match=rf"'transformer_blocks\.0\.attn1\.to_q' adapts a {q.in_features + 1} -> "
                                              rf"{q.out_features} layer but 'transformer_blocks\.0\.attn1\.to_q' here "
                                              rf"is {q.in_features} -> {q.out_features}"):
        load_and_apply_loras(model, [(tmp_path / "big.safetensors", 1.0)])

    save_file({"diffusion_model.x.lora_A.weight": torch.zeros(4, 8)}, str(tmp_path / "half.safetensors"))
    with pytest.raises(CheckpointError, match=r"'diffusion_model\.x' has no up \(lora_B / lora_up\) factor"):
        load_lora(tmp_path / "half.safetensors")

    save_file({"diffusion_model.x.lokr_w1": torch.zeros(4, 8)}, str(tmp_path / "lokr.safetensors"))
    with pytest.raises(CheckpointError, match="adapter types ltx2_nodes does not apply: LoKr"):
        load_lora(tmp_path / "lokr.safetensors")

    save_file({"model.diffusion_model.patchify_proj.weight": torch.zeros(4, 8)}, str(tmp_path / "ckpt.safetensors"))
    with pytest.raises(CheckpointError, match="holds no LoRA factors"):
        load_lora(tmp_path / "ckpt.safetensors")


# -- model families --------------------------------------------------------------------------------


def _checkpoint_lora(path, flavour: str, targets: tuple[str, ...], metadata=None, rank: int = 2):
    """A LoRA whose targets take their shapes from a flavour's golden checkpoint (``model.diffusion_model.*``)."""
    ckpt = LTX2Checkpoint(find_golden("transformer", flavour).weights_path)
    tensors = {}
    for name in targets:
        out_features, in_features = ckpt.file.info(f"model.diffusion_model.{name}.weight").shape
        tensors[f"diffusion_model.{name}.lora_A.weight"] = torch.zeros(rank, in_features)
        tensors[f"diffusion_model.{name}.lora_B.weight"] = torch.zeros(out_features, rank)
    save_file(tensors, str(path), metadata=metadata)
    return load_lora(path)


def test_golden_lora_family_is_read_from_metadata_targets_and_shapes(tmp_path):
    gated = _checkpoint_lora(tmp_path / "gated.safetensors", "2.3", ("transformer_blocks.0.attn1.to_gate_logits",))
    assert gated.family.family is LTX_2_3 and "to_gate_logits" in gated.family.evidence
    caption = _checkpoint_lora(tmp_path / "caption.safetensors", "2.0", ("caption_projection.linear_1",))
    assert caption.family.family is LTX_2
    adaln = _checkpoint_lora(tmp_path / "adaln.safetensors", "2.0", ("adaln_single.linear",))
    assert adaln.family.family is LTX_2 and "6 x width" in adaln.family.evidence
    adaln23 = _checkpoint_lora(tmp_path / "adaln23.safetensors", "2.3", ("adaln_single.linear",))
    assert adaln23.family.family is LTX_2_3
    for metadata in ({"model_version": "2.3.0"}, {"modelspec.architecture": "ltx-2.3-22b/lora"},
                     {"ss_base_model_version": "LTX_2_3"}):
        named = _checkpoint_lora(tmp_path / "named.safetensors", "2.3", ("transformer_blocks.0.attn1.to_q",), metadata)
        assert named.family.family is LTX_2_3, metadata
    # attention-only LoRAs without metadata have the same shapes in both families: nothing tells
    assert _checkpoint_lora(tmp_path / "plain.safetensors", "2.3", ("transformer_blocks.0.attn1.to_q",)).family is None
    with pytest.raises(CheckpointError, match=r"LoRA lying\.safetensors contradicts itself"):
        _checkpoint_lora(tmp_path / "lying.safetensors", "2.3", ("transformer_blocks.0.attn1.to_gate_logits",),
                         {"model_version": "2.0.0"})


def test_golden_lora_made_for_23_is_refused_on_a_20_model_with_the_reason(model, tmp_path):
    for targets, metadata, why in (
            (("transformer_blocks.0.attn1.to_gate_logits",), None, r"tensor 'transformer_blocks\.0\.attn1\.to_gate"),
            (("transformer_blocks.0.attn1.to_q",), {"model_version": "2.3.0"}, r"model_version metadata 2\.3\.0")):
        lora = _checkpoint_lora(tmp_path / "for23.safetensors", "2.3", targets, metadata)
        with pytest.raises(CheckpointError, match=rf"LoRA for23\.safetensors was made for LTX-2\.3 \(22B, Mar 2026\) "
                                                  rf"\({why}.*but this transformer is LTX-2 \(19B.*Pick a LoRA "
                                                  rf"trained for LTX-2, or load the LTX-2\.3 model"):
            apply_loras(model, [(lora, 1.0)])
        with pytest.raises(CheckpointError, match=r"was made for LTX-2\.3 .* but ltx2_tiny_av_checkpoint\.safetensors "
                                                  r"is LTX-2 \(19B"):
            load_ltx2(find_golden("transformer").weights_path).dit.with_lora(lora, 1.0)


def test_golden_lora_made_for_20_is_refused_on_a_23_model_with_the_reason(tmp_path):
    dit23 = load_ltx2(find_golden("transformer", "2.3").weights_path).dit
    for targets, why in ((("caption_projection.linear_1",), "caption_projection"),
                         (("adaln_single.linear",), "has 6 x width outputs")):
        lora = _checkpoint_lora(tmp_path / "for20.safetensors", "2.0", targets)
        with pytest.raises(CheckpointError, match=rf"LoRA for20\.safetensors was made for LTX-2 \(19B, Jan 2026\) "
                                                  rf"\(.*{why}.*but ltx2_tiny_av_checkpoint\.safetensors is LTX-2\.3"):
            dit23.with_lora(lora, 1.0)
    # the module-level check the sampler goes through: a transformer with LTX-2.3 layers refuses it too
    block = torch.nn.Module()
    block.attn1 = torch.nn.Module()
    block.attn1.to_q, block.attn1.to_gate_logits = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)
    gated_model = torch.nn.Module()
    gated_model.transformer_blocks = torch.nn.ModuleList([block])
    with pytest.raises(CheckpointError, match=r"made for LTX-2 .* but this transformer is LTX-2\.3"):
        resolve_targets(lora, gated_model)
    # same-family and undecidable LoRAs are accepted
    assert dit23.with_lora(_checkpoint_lora(tmp_path / "ok.safetensors", "2.3",
                                            ("transformer_blocks.0.attn1.to_gate_logits",)), 1.0).loras
    assert dit23.with_lora(_checkpoint_lora(tmp_path / "plain.safetensors", "2.3",
                                            ("transformer_blocks.0.attn1.to_q",)), 1.0).loras

"""Multimodal guidance: text CFG, STG, modality guidance and rescale, per modality.

Per step the DiT is evaluated in up to four passes (the reference's ``MultiModalGuider``):

==========  ====================  =================================================================
pass        contexts              switched off
==========  ====================  =================================================================
cond        positive              nothing
uncond      negative              nothing                      (if either modality's cfg != 1)
perturbed   positive              video self-attn in the video params' ``stg_blocks`` (if video stg
                                  != 0) and audio self-attn in the audio params' blocks (if audio
                                  stg != 0), both in the same pass
isolated    positive              a2v and v2a cross-attention in every block (modality != 1)
==========  ====================  =================================================================

and each modality combines its predictions with its own parameters::

    pred = c + (cfg-1)(c - u) + stg (c - p) + (modality-1)(c - m)
    pred *= rescale * std(c)/std(pred) + (1 - rescale)            (if rescale != 0)

The passes either run as one forward over the concatenated batch (one perturbation set per
sample) or one after another (less memory); both give the same predictions.

Differences from the reference, both invisible with batch 1 and the default ``skip_step`` 0:
the rescale std is taken per batch item (the reference: over the whole batch), so items do not
influence each other; and when only one modality skips a step (``skip_step``), both streams still
run normally and the skipping modality's result is discarded, where the reference freezes that
stream inside the passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.connector import TextConditioning
from ..model.transformer import ModalityInput, Perturbations, SampleSkips, Skip, to_denoised
from .state import LatentState


@dataclass(frozen=True)
class GuidanceParams:
    """One modality's guidance sliders (defaults: guidance off)."""

    cfg: float = 1.0
    stg: float = 0.0
    stg_blocks: tuple[int, ...] = ()
    rescale: float = 0.0
    modality: float = 1.0
    skip_step: int = 0

    def __post_init__(self):
        object.__setattr__(self, "stg_blocks", tuple(int(b) for b in self.stg_blocks))
        for name in ("cfg", "stg", "rescale", "modality"):
            if not math.isfinite(getattr(self, name)):
                raise InputError(f"guidance {name} must be a finite number, got {getattr(self, name)}.")
        if self.skip_step < 0:
            raise InputError(f"guidance skip_step must be >= 0, got {self.skip_step}.")

    @property
    def needs_negative(self) -> bool:
        return not math.isclose(self.cfg, 1.0)

    @property
    def needs_perturbed(self) -> bool:
        return not math.isclose(self.stg, 0.0) and bool(self.stg_blocks)

    @property
    def needs_isolated(self) -> bool:
        return not math.isclose(self.modality, 1.0)

    def skips(self, step: int) -> bool:
        """Reuse the previous guided prediction at this step (only every ``skip_step + 1``-th is guided)."""
        return self.skip_step > 0 and step % (self.skip_step + 1) != 0


NO_GUIDANCE = GuidanceParams()  # the presets with guidance are in ``sampling.recipe``


def combine(cond: torch.Tensor, uncond: torch.Tensor | float, perturbed: torch.Tensor | float,
            isolated: torch.Tensor | float, params: GuidanceParams, per_sample: bool = False) -> torch.Tensor:
    """The guided prediction (float32 math, returned in ``cond``'s dtype).

    A pass that was not run is passed as ``0.0`` (its scale makes the term vanish). The reference
    takes the rescale std over the whole tensor; ``per_sample`` takes it per batch item instead,
    which is identical for batch 1 and keeps batch items independent of each other.
    """
    dtype = cond.dtype
    c = cond.float()

    def f(x):
        return x.float() if isinstance(x, torch.Tensor) else x

    pred = (c + (params.cfg - 1) * (c - f(uncond)) + params.stg * (c - f(perturbed))
            + (params.modality - 1) * (c - f(isolated)))
    if params.rescale != 0:
        if per_sample:
            dims = tuple(range(1, c.ndim))
            factor = c.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True)
        else:
            factor = c.std() / pred.std()
        pred = pred * (params.rescale * factor + (1 - params.rescale))
    return pred.to(dtype)


@dataclass(frozen=True)
class GuidancePass:
    name: str  # "cond" | "uncond" | "perturbed" | "isolated"
    negative: bool
    skips: SampleSkips


def plan_passes(video: GuidanceParams, audio: GuidanceParams, has_video: bool = True, has_audio: bool = True
                ) -> list[GuidancePass]:
    """The forward passes one guided step needs (a pass whose every scale makes it irrelevant is left out)."""
    video = video if has_video else NO_GUIDANCE
    audio = audio if has_audio else NO_GUIDANCE
    passes = [GuidancePass("cond", False, SampleSkips())]
    if video.needs_negative or audio.needs_negative:
        passes.append(GuidancePass("uncond", True, SampleSkips()))
    stg = {}
    if video.needs_perturbed:
        stg[Skip.VIDEO_SELF_ATTN] = frozenset(video.stg_blocks)
    if audio.needs_perturbed:
        stg[Skip.AUDIO_SELF_ATTN] = frozenset(audio.stg_blocks)
    if stg:
        passes.append(GuidancePass("perturbed", False, SampleSkips(stg)))
    # With one stream there is no cross-attention to switch off: the isolated pass equals cond.
    if (video.needs_isolated or audio.needs_isolated) and has_video and has_audio:
        passes.append(GuidancePass("isolated", False, SampleSkips.isolate_modalities()))
    return passes


class GuidedDenoiser:
    """``(video_state, audio_state, sigma, step) -> (x0_video, x0_audio)`` with multimodal guidance.

    ``batched=True`` runs all passes of a step as one forward over ``passes x batch`` samples;
    ``False`` (default, like the reference) runs them one after another (peak activation memory of
    a single pass).
    """

    def __init__(self, model, positive: TextConditioning, negative: TextConditioning | None = None,
                 video: GuidanceParams = NO_GUIDANCE, audio: GuidanceParams = NO_GUIDANCE, batched: bool = False):
        layers = model.config.num_layers
        for name, params in (("video", video), ("audio", audio)):
            bad = [b for b in params.stg_blocks if not 0 <= b < layers]
            if bad and params.needs_perturbed:
                raise InputError(f"{name} STG blocks {bad} do not exist; this transformer has blocks 0..{layers - 1}.")
        if (video.needs_negative or audio.needs_negative) and negative is None:
            raise InputError("CFG is on (cfg != 1) but no negative prompt conditioning was given; pass the encoded "
                             "negative prompt or set cfg to 1.")
        self.model = model
        self.positive = positive
        self.negative = negative
        self.video = video
        self.audio = audio
        self.batched = batched
        self.forwards = 0  # model forwards run so far (benchmarks, tests)
        self._last: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)

    def passes(self, has_video: bool = True, has_audio: bool = True) -> list[GuidancePass]:
        return plan_passes(self.video, self.audio, has_video, has_audio)

    def __call__(self, video: LatentState | None, audio: LatentState | None, sigma: torch.Tensor, step: int
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        skip_v = video is not None and self.video.skips(step)
        skip_a = audio is not None and self.audio.skips(step)
        if (skip_v or video is None) and (skip_a or audio is None):
            return self._last
        passes = self.passes(video is not None, audio is not None)
        results = self._run_batched(passes, video, audio, sigma) if self.batched and self._can_batch(passes) \
            else self._run_sequential(passes, video, audio, sigma)
        out = []
        for index, (state, params, skipped) in enumerate(((video, self.video, skip_v), (audio, self.audio, skip_a))):
            if state is None:
                out.append(None)
            elif skipped:
                out.append(self._last[index])
            else:
                # A pass that was not run would equal cond (or has a zero scale): cond makes its term 0.
                preds = {name: r[index] for name, r in results.items()}
                cond = preds["cond"]
                out.append(combine(cond, preds.get("uncond", cond), preds.get("perturbed", cond),
                                   preds.get("isolated", cond), params, per_sample=True))
        self._last = (out[0], out[1])
        return self._last

    # -- running passes ------------------------------------------------------------------------

    def _text(self, negative: bool, batch: int, device) -> TextConditioning:
        return text_for_batch(self.negative if negative else self.positive, batch, device)

    def _can_batch(self, passes: list[GuidancePass]) -> bool:
        texts = [self.negative if p.negative else self.positive for p in passes]
        shapes = {(t.video_context.shape[1:], t.audio_context.shape[1:]) for t in texts}
        return len(shapes) == 1

    def _inputs(self, state: LatentState | None, sigma: torch.Tensor, contexts: list[TextConditioning],
                modality: str, repeat: int) -> ModalityInput | None:
        if state is None:
            return None
        timesteps = state.timesteps(sigma)
        context = torch.cat([getattr(t, f"{modality}_context") for t in contexts], dim=0)
        mask = None
        if any(t.mask is not None for t in contexts):
            mask = torch.cat([t.mask if t.mask is not None else torch.ones(t.video_context.shape[:2], dtype=torch.int64,
                                                                           device=context.device)
                              for t in contexts], dim=0)
        return ModalityInput(latent=state.latent.repeat(repeat, 1, 1), sigma=state.sample_sigma(sigma).repeat(repeat),
                             timesteps=timesteps.repeat(repeat, 1, 1),
                             positions=state.positions.repeat(repeat, 1, 1, 1), context=context, context_mask=mask,
                             keyframes_mask=state.keyframes.repeat(repeat, 1, 1) if state.keyframes is not None
                             else None,
                             attention_mask=state.attention.repeat(repeat, 1, 1) if state.attention is not None
                             else None)

    def _forward(self, video: ModalityInput | None, audio: ModalityInput | None, skips: list[SampleSkips]
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        self.forwards += 1
        v, a = self.model(video, audio, Perturbations(skips))
        x0_v = to_denoised(video.latent, v, video.timesteps) if video is not None else None
        x0_a = to_denoised(audio.latent, a, audio.timesteps) if audio is not None else None
        return x0_v, x0_a

    def _run_batched(self, passes, video, audio, sigma) -> dict[str, tuple]:
        state = video or audio
        batch, device = state.batch, state.latent.device
        contexts = [self._text(p.negative, batch, device) for p in passes]
        n = len(passes)
        v, a = self._forward(self._inputs(video, sigma, contexts, "video", n),
                             self._inputs(audio, sigma, contexts, "audio", n),
                             [p.skips for p in passes for _ in range(batch)])
        v_parts = v.chunk(n) if v is not None else [None] * n
        a_parts = a.chunk(n) if a is not None else [None] * n
        return {p.name: (vp, ap) for p, vp, ap in zip(passes, v_parts, a_parts)}

    def _run_sequential(self, passes, video, audio, sigma) -> dict[str, tuple]:
        state = video or audio
        batch, device = state.batch, state.latent.device
        results = {}
        for p in passes:
            contexts = [self._text(p.negative, batch, device)]
            results[p.name] = self._forward(self._inputs(video, sigma, contexts, "video", 1),
                                            self._inputs(audio, sigma, contexts, "audio", 1), [p.skips] * batch)
        return results


def text_for_batch(text: TextConditioning, batch: int, device=None) -> TextConditioning:
    """``text`` on ``device`` with batch ``batch`` (a batch-1 conditioning is shared by every item).

    An all-ones mask (what the connectors return: registers fill every padded slot) is dropped, as
    the reference passes no mask to the DiT; a mask with zeros is kept (int64, 1 = attend).
    """
    lengths = {text.video_context.shape[1], text.audio_context.shape[1]}
    mask = text.mask
    if mask is not None and (len(lengths) > 1 or mask.shape[-1] not in lengths):
        raise InputError(f"text mask covers {mask.shape[-1]} tokens but the contexts have {sorted(lengths)}; the "
                         "mask must match both contexts' length.")

    def fit(t: torch.Tensor, name: str) -> torch.Tensor:
        if t.shape[0] not in (1, batch):
            raise InputError(f"text conditioning {name} has batch {t.shape[0]}, the latents have {batch}; encode "
                             "one prompt (shared) or one per item.")
        return t.to(device).expand(batch, *t.shape[1:])

    if mask is not None and bool(mask.bool().all()):
        mask = None
    return TextConditioning(fit(text.video_context, "video_context"), fit(text.audio_context, "audio_context"),
                            fit(mask.to(torch.int64), "mask") if mask is not None else None)

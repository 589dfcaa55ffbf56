"""Sampling: schedules, seeded noise, latent states and conditioning, guidance, the denoising loop.

``schedules`` sigma lists -- ``noise`` per-item seeded CPU noise -- ``state`` grids, token-level
latent states, text conditioning -- ``conditioning`` image/keyframe conditioning and images ->
latents -- ``guidance`` multimodal CFG/STG/modality guidance -- ``samplers`` Euler / res_2s step
math -- ``loop`` the denoising loop -- ``recipe`` the presets per model family and the two-stage recipe.
``ltx2_nodes.latents`` puts them together.
"""

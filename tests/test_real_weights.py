"""Real checkpoints (run with FOLEYKIT_SLOW=1 on a machine with the hub or a filled HF cache).

These cannot run here (no weights are reachable); they check what only real weights can show.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def test_audioldm_text_encoder_matches_laion_clap_text_tower():
    """AudioLDM ships its own CLAP text branch; it should equal laion/clap-htsat-unfused's."""
    from foleykit.encoders.clap import ClapEncoder
    from foleykit.generator.pipeline import AudioLDMGenerator

    gen = AudioLDMGenerator.from_pretrained("cvssp/audioldm-s-full-v2", device="cpu")
    clap = ClapEncoder.from_pretrained("laion/clap-htsat-unfused", device="cpu")
    texts = ["a dog barking", "rain on a roof", ""]
    tok = gen.tokenizer(texts, padding=True, return_tensors="pt")
    ours = torch.nn.functional.normalize(gen.text_encoder(**tok).text_embeds, dim=-1)
    theirs = clap.embed_texts(texts)
    assert float((ours * theirs).sum(-1).min()) > 0.99


def test_generated_dog_sounds_like_a_dog():
    """CLAP audio of a clip generated from the CLAP text of 'a dog barking' is closest to that text."""
    from foleykit.encoders.clap import ClapEncoder
    from foleykit.generator.pipeline import AudioLDMGenerator

    gen = AudioLDMGenerator.from_pretrained("cvssp/audioldm-s-full-v2", device="auto")
    clap = ClapEncoder.from_pretrained("laion/clap-htsat-unfused", device="auto")
    prompts = ["a dog barking", "a car engine", "birds singing", "a piano melody"]
    text = clap.embed_texts(prompts)
    out = gen(text[:1], duration_s=5.0, preset="fast", seed=0, progress=False)
    audio = clap.embed_audio([out.waveforms[0]], out.sample_rate)
    sims = (audio @ text.T)[0]
    assert int(np.argmax(sims.cpu().numpy())) == 0

"""The mapper's zero-shot bridge names the words that made the sound (sidecar ``mapper.bridge_words``), and
the condition is those words' captions through the generator's own text tower, weighted as recorded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bridge_words_recorded_and_they_make_the_condition(tiny_models_dir, tiny_cache_env, tmp_path):
    import json

    from transformers import AutoTokenizer, ClapTextModelWithProjection

    from foleykit.pipelines.mapper import MapperPipeline
    from foleykit.pipelines.zero_shot_bridge import BridgeSettings

    roles = json.loads((tiny_models_dir / "model_set.json").read_text())
    roles.pop("mapper")  # public weights only: no trained V2A-Mapper, so the bridge runs
    (tmp_path / "model_set.json").write_text(json.dumps({r: str(tiny_models_dir / d) for r, d in roles.items()}))
    pipe = MapperPipeline.from_models(str(tmp_path), device="cpu")
    img = Image.new("RGB", (96, 64), (30, 120, 200))
    words: dict = {}
    cond = pipe.image_condition(img, seed=0, record=words)
    (row,) = words["bridge_words"]
    assert len(row) == BridgeSettings().top_k
    assert abs(sum(w for _, w in row) - 1.0) < 1e-3
    assert all(word in pipe.mapper.vocabulary for word, _ in row)

    # Independent: the generator's text tower straight from its folder, the recorded words and weights.
    gen_dir = tiny_models_dir / "audioldm-s-full-v2"
    tok = AutoTokenizer.from_pretrained(gen_dir / "tokenizer")
    text = ClapTextModelWithProjection.from_pretrained(gen_dir / "text_encoder").eval()
    captions = [BridgeSettings().clap_prompt.format(word) for word, _ in row]
    with torch.no_grad():
        t = tok(captions, padding=True, return_tensors="pt")
        emb = F.normalize(text(input_ids=t.input_ids, attention_mask=t.attention_mask).text_embeds, dim=-1)
    weights = torch.tensor([w for _, w in row])
    expected = F.normalize((weights[:, None] * emb).sum(0), dim=-1)
    assert F.cosine_similarity(cond[0].float(), expected, dim=0) > 0.999

    out = pipe(img, duration_s=0.3, num_inference_steps=1, seed=1, progress=False)
    assert [w for w, _ in out.record["mapper"]["bridge_words"][0]] == [w for w, _ in row]

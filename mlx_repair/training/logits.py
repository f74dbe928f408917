"""The vocabulary logits of a batch's answer positions only.

The prompt is masked out of every training loss, so its logits are never used, and with
a 150k-250k vocabulary they are most of a step's memory and much of its time. The
projection is split off only when the model's forward is checked to be exactly
`head(backbone(x))`; otherwise the full forward runs and its logits are sliced.
"""

from __future__ import annotations


def answer_logits(model):
    """(model, batch, start) -> the logits that predict batch[:, start + 1:] from
    batch[:, :-1]: those of the input positions from `start` on."""
    split = backbone_and_head(model)
    if split is None:
        return lambda model, batch, start: model(batch[:, :-1])[:, start:]
    backbone, head = split
    return lambda model, batch, start: head(backbone(batch[:, :-1])[:, start:])


def backbone_and_head(model):
    """(backbone, vocabulary projection) if the model's output is their composition."""
    import mlx.core as mx

    language_model = getattr(model, "language_model", model)  # qwen3_5 wraps its text model
    backbone = getattr(language_model, "model", None)
    embedding = getattr(backbone, "embed_tokens", None)
    heads = [getattr(language_model, "lm_head", None), getattr(embedding, "as_linear", None)]
    probe = mx.array([[1, 2, 3, 4]])
    training = model.training
    model.eval()  # no dropout while comparing
    expected = model(probe)
    found = None
    if backbone is not None:
        candidates = (head for head in heads if head is not None)
        found = next((h for h in candidates if mx.allclose(h(backbone(probe)), expected).item()), None)
    model.train(training)
    return None if found is None else (backbone, found)


def answer_start(lengths) -> int:
    """The position before the batch's first answer token (lengths: mlx-lm's (offset,
    length) rows), rounded down to a multiple of 32 so a compiled step sees few
    distinct values."""
    first_answer = min(int(offset) for offset in lengths[:, 0].tolist())
    return max(0, (first_answer - 1) // 32 * 32)

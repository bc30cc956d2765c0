"""Tiny fixture checkpoints made runnable end to end: each gets a byte-level BPE tokenizer over
lowercase words (its vocabulary fits the fixtures' 128 ids) and a text in that alphabet."""
import pathlib

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "model"


def tiny_model_with_tokenizer(folder, fixture="tiny_mixtral"):
    """`folder` becomes the fixture's checkpoint (symlinked) plus tokenizer.json; returns it and the
    path of a calibration text of 600 words next to it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    folder.mkdir()
    for f in (FIXTURES / fixture).iterdir():
        (folder / f.name).symlink_to(f)
    chars = ["Ġ"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    chars += sorted(set(pre_tokenizers.ByteLevel.alphabet()) - set(chars))[:128 - len(chars)]
    vocab = {c: i for i, c in enumerate(chars)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(folder / "tokenizer.json"))
    words = ["expert", "router", "token", "layer", "weight", "bits", "quantize", "model", "mixture", "gate"]
    text = " ".join(words[(i * 7 + i * i) % len(words)] for i in range(600))
    (folder.parent / "calibration.txt").write_text(text)
    return folder, folder.parent / "calibration.txt"

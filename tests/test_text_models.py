import subprocess
import sys
import textwrap

import pytest
import torch
from torch.nn import functional as F
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from hf_memotion.models.heads import ProblemHeads
from hf_memotion.models.text import (
    MemotionTextConfig,
    MemotionTextForSequenceClassification,
    MemotionTextModel,
    default_pooling,
    pool_sequence,
)
from hf_memotion.models.text.preprocessing import encode_texts, prepare_text_dataset
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.tasks import PROBLEM_NAMES

CORPUS = ["when the exam is on monday", "my cat says lol", "nobody: literally nobody", "LOVE THIS MEME"]
SMALL = {"lstm_hidden_size": 8, "attention_size": 8, "ffn_size": 8}


def _model(family, problems=("sentiment", "humour_intensity"), **kwargs):
    backbone, tokenizer = build_tiny_text_backbone(family, CORPUS, hidden_size=16, num_layers=1)
    config = MemotionTextConfig(text_config=backbone, problems=list(problems), **{**SMALL, **kwargs})
    torch.manual_seed(0)
    return MemotionTextForSequenceClassification(config).eval(), tokenizer


@pytest.mark.parametrize("family", ["bert", "gpt2", "xlnet", "roberta"])
def test_save_and_auto_load_give_the_same_logits_offline(tmp_path, family):
    model, tokenizer = _model(family)
    batch = DataCollatorWithPadding(tokenizer)(
        [{"input_ids": ids} for ids in encode_texts(tokenizer, CORPUS, 32)["input_ids"]]
    )
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is MemotionTextForSequenceClassification
    assert loaded.config.text_config.model_type == family
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded_tokenizer(CORPUS[1])["input_ids"] == tokenizer(CORPUS[1])["input_ids"]
    assert reloaded_tokenizer.padding_side == tokenizer.padding_side
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, expected)
        base = AutoModel.from_pretrained(tmp_path).eval()
        assert type(base) is MemotionTextModel
        torch.testing.assert_close(base(**batch).pooler_output, model.memotion_text(**batch).pooler_output)


def test_saved_folder_holds_no_code_and_loads_in_a_fresh_process(tmp_path):
    model, tokenizer = _model("bert", problems=["humour"])
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text()
    assert '"auto_map"' not in config and not list(tmp_path.glob("*.py"))
    code = textwrap.dedent(f"""
        import hf_memotion
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path)!r})
        tokens = AutoTokenizer.from_pretrained({str(tmp_path)!r})("lol", return_tensors="pt")
        print(type(model).__name__, model.config.id2label, tuple(model(**tokens).logits.shape))
    """)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "MemotionTextForSequenceClassification {0: 'not_funny', 1: 'funny'} (1, 2)" in out


def test_default_pooling_follows_the_paper():
    assert [default_pooling(t) for t in ("bert", "roberta", "gpt2", "xlnet", "transfo-xl")] == [
        "first",
        "first",
        "last",
        "last",
        "max",
    ]
    backbone, _ = build_tiny_text_backbone("gpt2", CORPUS)
    assert MemotionTextConfig(text_config=backbone).pooling == "last"
    assert MemotionTextConfig(text_config=backbone, pooling="max").pooling == "max"
    with pytest.raises(ValueError, match="pooling must be one of"):
        MemotionTextConfig(text_config=backbone, pooling="mean")
    with pytest.raises(ValueError, match="lstm_layers must be 1 or 2"):
        MemotionTextConfig(lstm_layers=3)


def test_pooling_picks_the_right_token_under_left_and_right_padding():
    hidden = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)  # value = 5*row + position
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert pool_sequence(hidden, right, "last").flatten().tolist() == [2.0, 9.0]
    assert pool_sequence(hidden, left, "last").flatten().tolist() == [4.0, 9.0]
    assert pool_sequence(hidden, right, "first").flatten().tolist() == [0.0, 5.0]
    assert pool_sequence(hidden, left, "first").flatten().tolist() == [2.0, 5.0]
    assert pool_sequence(hidden, right, "max").flatten().tolist() == [2.0, 9.0]
    assert pool_sequence(-hidden, left, "max").flatten().tolist() == [-2.0, -5.0]  # padding never wins


def test_bilstm_ignores_padding_on_either_side():
    model, _ = _model("bert", problems=["humour"])
    states = torch.randn(1, 4, 16)
    mask = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        plain = model.memotion_text._run_lstm(states, mask)
        pad = torch.randn(1, 3, 16) * 100  # garbage in the padding must not leak into real tokens
        right = model.memotion_text._run_lstm(
            torch.cat([states, pad], 1), torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], 1)
        )
        left = model.memotion_text._run_lstm(
            torch.cat([pad, states], 1), torch.cat([torch.zeros(1, 3, dtype=torch.bool), mask], 1)
        )
    torch.testing.assert_close(right[:, :4], plain)
    torch.testing.assert_close(left[:, 3:], plain)
    assert right[:, 4:].abs().sum() == 0 and left[:, :3].abs().sum() == 0


def test_weighted_loss_is_the_sum_of_per_problem_weighted_cross_entropies():
    labels = {"sentiment": ["negative", "neutral", "positive"], "humour": ["not_funny", "funny"]}
    weights = {"sentiment": [3.0, 1.0, 0.5], "humour": [2.0, 0.7]}
    heads = ProblemHeads(4, labels, weights)
    logits = torch.randn(5, 5)
    target = torch.tensor([[0, 1], [2, 0], [1, -100], [2, 1], [0, 0]])
    expected = F.cross_entropy(logits[:, :3], target[:, 0], weight=torch.tensor(weights["sentiment"]))
    expected += F.cross_entropy(logits[:, 3:], target[:, 1], weight=torch.tensor(weights["humour"]), ignore_index=-100)
    torch.testing.assert_close(heads.loss(logits, target), expected)
    with pytest.raises(ValueError, match=r"labels must have shape"):
        heads.loss(logits, target[:, 0])
    with pytest.raises(ValueError, match="class_weights"):
        ProblemHeads(4, labels, {"humour": [1.0]})


def test_one_problem_or_several_from_one_forward():
    single, tokenizer = _model("bert", problems=["sarcasm_intensity"])
    ids = torch.tensor([tokenizer("my cat says lol")["input_ids"]])
    out = single(input_ids=ids, labels=torch.tensor([3]))
    assert out.logits.shape == (1, 4) and out.loss.ndim == 0
    assert single.config.id2label == {0: "not_sarcastic", 1: "general", 2: "twisted_meaning", 3: "very_twisted"}
    multi, _ = _model("bert", problems=PROBLEM_NAMES)
    out = multi(input_ids=ids, labels=torch.zeros(1, 9, dtype=torch.long))
    assert out.logits.shape == (1, 3 + 2 * 4 + 4 * 3 + 2)
    assert list(out.problem_logits) == list(PROBLEM_NAMES)
    assert out.problem_logits["humour_intensity"].shape == (1, 4)


def test_bad_text_input_gets_a_clear_error_or_documented_behaviour():
    model, tokenizer = _model("gpt2", problems=["humour"])
    with pytest.raises(TypeError, match=r"meme text at index 1 must be a string, got int"):
        encode_texts(tokenizer, ["ok", 42], 16)
    with pytest.raises(TypeError, match="not a single string"):
        encode_texts(tokenizer, "just one", 16)
    encoded = encode_texts(tokenizer, ["", None, "word " * 500], 16)
    assert all(len(ids) >= 1 for ids in encoded["input_ids"])  # empty text still has a token
    assert len(encoded["input_ids"][2]) == 16  # long text truncated to max_length
    batch = DataCollatorWithPadding(tokenizer)([{"input_ids": ids} for ids in encoded["input_ids"]])
    assert model(**batch).logits.shape == (3, 2)
    with pytest.raises(ValueError, match="empty token sequences"):
        model(input_ids=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="no unmasked token"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.zeros(1, 3, dtype=torch.long))


def test_prepare_text_dataset_lowercases_and_gathers_labels(demo_root):
    from hf_memotion.data import load_memotion

    train = load_memotion(demo_root)["train"]
    raw = [t.upper() for t in train["text_raw"]]
    _, tokenizer = build_tiny_text_backbone("bert", [*raw, *train["text"]], lowercase=False)  # case-sensitive vocab
    prepared = prepare_text_dataset(train, tokenizer, ["sentiment", "humour"], max_length=32, text_column="text_raw")
    assert prepared[0]["labels"] == [train[0]["sentiment"], train[0]["humour"]]
    tokens = tokenizer.convert_ids_to_tokens(prepared[0]["input_ids"])[1:-1]  # without [CLS] and [SEP]
    assert tokens and all(t == t.lower() for t in tokens)
    assert tokens == tokenizer.tokenize(train[0]["text_raw"].lower())[:30]
    single = prepare_text_dataset(train, tokenizer, ["sentiment"], max_length=32)
    assert single["labels"][:5] == train["sentiment"][:5]

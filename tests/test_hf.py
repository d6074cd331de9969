"""hf:PATH models for real: a small BERT made here with BertConfig and save_pretrained (no download, no mock)."""

import pytest
from helpers import run_cli

import edgekit
from edgekit.errors import DataError, ModelLoadError
from edgekit.models import parse_input_spec
from edgekit.program import inspect_program

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
] + "the a cat dog sat on mat ran fast slow red blue big small house tree".split()
SENTENCES = "the cat sat on the mat\na dog ran fast\n\nthe red house\nsmall blue tree\nthe big dog sat\na slow cat\n"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("hf")
    (d / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"))
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=len(WORDS),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    ).eval()
    model.save_pretrained(d / "bert")
    tok.save_pretrained(d / "bert")
    (d / "sentences.txt").write_text(SENTENCES)
    return d


@pytest.fixture(scope="module")
def int8_bert(tiny_bert, tmp_path_factory):
    return edgekit.build(
        f"hf:{tiny_bert / 'bert'}",
        "xnnpack-int8-dynamic",
        out=tmp_path_factory.mktemp("int8bert") / "o",
        inputs=[parse_input_spec("1x16")],
        calibration=tiny_bert / "sentences.txt",
        eval=tiny_bert / "sentences.txt",
    )


def test_a_local_bert_builds_with_text_data_and_embedding_metrics(int8_bert):
    res = int8_bert
    m = res.manifest
    assert [i.name for i in m.model.inputs] == ["input_ids", "attention_mask"] and m.model.inputs[0].shape == [1, 16]
    assert m.quantize.embeddings == "int8" and len(m.quantize.embedding_tables) == 3  # word, position, token type
    ops = inspect_program(res.pte_path).method().operators
    assert "quantized_decomposed::embedding_byte.out" in ops and not any("dequantize_affine" in op for op in ops)
    v = m.verify
    assert v.task == "embed" and "wrapper" in v.task_reason and v.samples == 6 and "6 sentences" in v.data
    assert v.cosine_min > 0.99 and v.nn_agreement is not None and v.top1_agreement is None
    assert edgekit.profile(res.out_dir, runs=5, warmup=1, warmup_seconds=0.0).latency_ms.count == 5


def test_the_last_hidden_state_and_the_cli(tiny_bert, tmp_path):
    r = run_cli(
        "build",
        f"hf:{tiny_bert / 'bert'}",
        "--hf-output",
        "last_hidden_state",
        "-i",
        "1x8",
        "-t",
        "xnnpack-fp32",
        "--eval",
        str(tiny_bert / "sentences.txt"),
        "-o",
        str(tmp_path / "h"),
        "-q",
    )
    assert r.exit_code == 0, r.output
    assert "nearest-neighbour agreement" in r.stdout and "top-1" not in r.stdout
    assert inspect_program(tmp_path / "h" / "model.pte").method().outputs[0].shape == (1, 8, 32)


def test_bad_hf_inputs_are_one_line(tiny_bert, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        edgekit.build(f"hf:{tmp_path / 'nope'}", out=tmp_path / "o")
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(ModelLoadError, match="not a Hugging Face model folder"):
        edgekit.build(f"hf:{tmp_path / 'empty_model'}", out=tmp_path / "o")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="holds no sentences"):
        edgekit.build(f"hf:{tiny_bert / 'bert'}", out=tmp_path / "o", eval=tmp_path / "empty.txt")
    with pytest.raises(DataError, match="needs a model with a tokenizer"):
        edgekit.build("toy_models:mlp", out=tmp_path / "o", eval=tiny_bert / "sentences.txt")
    r = run_cli("build", f"hf:{tiny_bert / 'bert'}", "-i", "16", "-o", str(tmp_path / "o"))
    assert r.exit_code == 2 and "BATCHxTOKENS" in r.stderr
    assert not (tmp_path / "o").exists()


def test_dynamic_sequence_length_builds_verifies_and_profiles_at_several_lengths(tiny_bert, tmp_path):
    import numpy as np

    from edgekit.hf import tokenize

    out = tmp_path / "dyn"
    r = run_cli(
        "build",
        f"hf:{tiny_bert / 'bert'}",
        "-i",
        "1x16",
        "-t",
        "xnnpack-int8-dynamic",
        "--dynamic-dim",
        "input_ids,attention_mask:1:4:48",
        "-c",
        str(tiny_bert / "sentences.txt"),
        "--eval",
        str(tiny_bert / "sentences.txt"),
        "-o",
        str(out),
        "-q",
        "--json",
    )
    assert r.exit_code == 0, r.output
    import json

    m = json.loads(r.stdout)
    assert m["model"]["dynamic_dims"] == [
        {"inputs": ["input_ids", "attention_mask"], "indices": [0, 1], "dim": 1, "min": 4, "max": 48, "program_max": 48}
    ]
    checked = {c["sizes"]["input_ids,attention_mask:1"]: c for c in m["verify"]["at_sizes"]}
    assert sorted(checked) == [4, 48] and all(c["cosine_min"] > 0.99 for c in checked.values())
    assert m["verify"]["cosine_min"] > 0.99  # at the traced 16 tokens
    tok = edgekit.models.load_model(f"hf:{tiny_bert / 'bert'}").tokenizer.hf
    for tokens in (4, 30, 48):  # any length inside the range, with the real tokenizer's ids and mask
        ids, mask = tokenize(tok, ["the cat sat on the mat", "a dog ran fast"], tokens)
        np.savez(tmp_path / f"t{tokens}.npz", x0=ids.numpy(), x1=mask.numpy())
        prof = edgekit.profile(out, inputs=tmp_path / f"t{tokens}.npz", runs=3, warmup=1, warmup_seconds=0.0)
        assert [i["shape"] for i in prof.subject["inputs"]] == [[1, tokens], [1, tokens]]
    ids, mask = tokenize(tok, ["the cat"], 3)
    np.savez(tmp_path / "short.npz", x0=ids.numpy(), x1=mask.numpy())
    r = run_cli("profile", str(out), "--inputs", str(tmp_path / "short.npz"))
    assert r.exit_code == 1 and "outside the program's range 4..48" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize(
    "flag, message",
    [
        ("input_ids:1:8", "expected INPUTS:DIM:MIN:MAX"),
        ("input_ids:1:64:8", "need 1 <= MIN < MAX"),
        ("tokens:1:4:32", "no input named 'tokens'"),
        ("input_ids:2:4:32", "has 2 dimension(s), so 2 does not exist"),
        ("2:1:4:32", "input 2 does not exist"),
    ],
)
def test_bad_dynamic_dims_are_usage_errors_and_write_nothing(tiny_bert, tmp_path, flag, message):
    r = run_cli("build", f"hf:{tiny_bert / 'bert'}", "-i", "1x16", "--dynamic-dim", flag, "-o", str(tmp_path / "o"))
    assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_portable_ops_carry_the_partitioners_reason_and_layer_norm_is_delegated(int8_bert, tiny_bert):
    d = int8_bert.manifest.program.delegation
    assert d.portable_ops and set(d.portable_reasons) == set(d.portable_ops) and all(d.portable_reasons.values())
    assert not any("layer_norm" in op or "expand" in op for op in d.portable_ops), d.portable_ops
    assert "layer_norm → linear-mean form" in d.passes
    assert d.portable_nodes <= 8 and d.delegated_partitions <= 8, (d.portable_nodes, d.delegated_partitions)
    assert "quantized embedding lookup" in d.portable_reasons["embedding_byte_default"][0]
    # without --eval, an hf: model is verified on random sentences of its own vocabulary (random ids and a mask of
    # 2..9 would overflow the additive mask to NaN)
    from edgekit.data import random_dataset
    from edgekit.models import load_model

    loaded = load_model(f"hf:{tiny_bert / 'bert'}", [parse_input_spec("1x16")])
    ds = random_dataset(loaded.example_inputs, 8, seed=2, source="random", tokenizer=loaded.tokenizer)
    ids, mask = ds.inputs
    assert "random sentences" in ds.source and set(mask.unique().tolist()) <= {0, 1} and int(ids.max()) < len(WORDS)

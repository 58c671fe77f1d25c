"""Students: config overrides, weights that fit, head pruning by seed, counts and memory estimates."""

from __future__ import annotations

import pytest
import torch
from bert_fixtures import minilm_path
from transformers import AutoModelForQuestionAnswering, BertConfig, DistilBertConfig

from paretune.bert.settings import MAX_DROPOUT, StudentAssignments
from paretune.bert.students import (
    build_student,
    choose_heads,
    count_parameters,
    estimate_training_memory,
    load_base,
    plan_parameter_count,
    plan_student,
    select_source_layers,
)
from paretune.failures import InvalidConfiguration


def _distilbert_base() -> DistilBertConfig:
    return DistilBertConfig(vocab_size=200, dim=48, n_layers=4, n_heads=6, hidden_dim=96, max_position_embeddings=64)


def _bert_base() -> BertConfig:
    return BertConfig(
        vocab_size=200, hidden_size=48, num_hidden_layers=4, num_attention_heads=6, intermediate_size=96,
        max_position_embeddings=64,
    )


def _base_state(config) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return AutoModelForQuestionAnswering.from_config(config).state_dict()


@pytest.mark.parametrize("base_config", [_distilbert_base(), _bert_base()], ids=["distilbert", "bert"])
@pytest.mark.parametrize("layers,heads", [(2, 6), (3, 2), (6, 12), (1, 1)])
def test_shapes_and_counts_match_transformers(base_config, layers, heads):
    plan = plan_student(base_config, StudentAssignments(n_layers=layers, n_heads=heads, pruning_seed=4))
    student = build_student(plan, _base_state(base_config))
    tokens = torch.randint(0, 200, (2, 20))
    output = student(input_ids=tokens, attention_mask=torch.ones_like(tokens))
    assert output.start_logits.shape == output.end_logits.shape == (2, 20)
    assert count_parameters(student) == student.num_parameters(only_trainable=True)
    assert plan_parameter_count(plan) == student.num_parameters(only_trainable=True)
    assert plan.heads_per_layer == heads
    assert len(plan.source_layers) == layers


def test_pruning_keeps_the_asked_heads_chosen_by_seed():
    base = _distilbert_base()
    first = plan_student(base, StudentAssignments(n_layers=3, n_heads=2, pruning_seed=11))
    again = plan_student(base, StudentAssignments(n_layers=3, n_heads=2, pruning_seed=11))
    other = plan_student(base, StudentAssignments(n_layers=3, n_heads=2, pruning_seed=12))
    assert first.kept_heads == again.kept_heads
    assert first.kept_heads != other.kept_heads
    assert all(len(heads) == 2 and len(set(heads)) == 2 for heads in first.kept_heads)
    state = _base_state(base)
    student = build_student(first, state)
    head_size = 48 // 6
    for index, (layer, kept) in enumerate(zip(student.distilbert.transformer.layer, first.kept_heads)):
        assert layer.attention.q_lin.weight.shape == (2 * head_size, 48)
        assert layer.attention.out_lin.weight.shape == (48, 2 * head_size)
        # The kept rows are the base's rows of exactly those heads.
        base_rows = state[f"distilbert.transformer.layer.{index}.attention.q_lin.weight"]
        expected = torch.cat([base_rows[h * head_size : (h + 1) * head_size] for h in kept])
        assert torch.equal(layer.attention.q_lin.weight, expected)


def test_pretrained_weights_load_where_they_fit_by_layer_strategy():
    base = _bert_base()
    state = _base_state(base)
    plan = plan_student(base, StudentAssignments(n_layers=2, layer_init="last"))
    assert plan.source_layers == (2, 3)
    student = build_student(plan, state)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, state["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(
        student.bert.encoder.layer[0].output.dense.weight, state["bert.encoder.layer.2.output.dense.weight"]
    )
    assert torch.equal(student.qa_outputs.weight, state["qa_outputs.weight"])


def test_layer_selection_strategies():
    assert select_source_layers("first", 3, 6) == (0, 1, 2)
    assert select_source_layers("last", 3, 6) == (3, 4, 5)
    assert select_source_layers("every_k", 3, 6) == (0, 2, 4)
    assert select_source_layers("every_k", 6, 12) == (0, 2, 4, 6, 8, 10)
    assert select_source_layers("first", 4, 2) == (0, 1, None, None)
    assert select_source_layers("last", 4, 2) == (None, None, 0, 1)
    assert select_source_layers("every_k", 4, 2) == (0, 0, 1, 1)


def test_more_heads_than_the_base_must_divide_the_hidden_size():
    base = _distilbert_base()
    plan = plan_student(base, StudentAssignments(n_heads=8))
    assert plan.kept_heads is None and plan.config.n_heads == 8
    with pytest.raises(InvalidConfiguration, match="n_heads=7 does not divide the hidden size 48"):
        plan_student(base, StudentAssignments(n_heads=7))


def test_trial_knobs_reach_the_config_and_extreme_bounds_are_handled():
    plan = plan_student(
        _distilbert_base(),
        StudentAssignments(dropout=1.0, attention_dropout=0.3, qa_dropout=0.0, initializer_range=0.0),
    )
    assert plan.config.dropout == MAX_DROPOUT
    assert plan.config.attention_dropout == 0.3 and plan.config.qa_dropout == 0.0
    student = build_student(plan)
    assert student.qa_outputs.weight.abs().sum() == 0  # N(0, 0), not transformers' fallback of 0.02
    bert_plan = plan_student(_bert_base(), StudentAssignments(dropout=0.2, attention_dropout=0.4))
    assert (bert_plan.config.hidden_dropout_prob, bert_plan.config.attention_probs_dropout_prob) == (0.2, 0.4)


def test_choose_heads_is_reproducible_per_seed():
    assert choose_heads(12, 4, 2, seed=3) == choose_heads(12, 4, 2, seed=3)
    assert all(list(heads) == sorted(heads) for heads in choose_heads(12, 4, 2, seed=3))


def test_memory_estimate_grows_with_the_work_and_shrinks_under_amp():
    config = _bert_base()
    small = estimate_training_memory(config, batch_size=4, seq_len=64, amp=False)
    assert small > 0
    assert estimate_training_memory(config, batch_size=8, seq_len=64, amp=False) > small
    assert estimate_training_memory(config, batch_size=4, seq_len=128, amp=False) > small
    assert estimate_training_memory(config, batch_size=4, seq_len=64, amp=True) < small
    assert estimate_training_memory(config, 4, 64, False, heads_per_layer=1) < small


def test_the_real_minilm_becomes_a_pruned_bert_student():
    config, state = load_base(minilm_path())
    assert "qa_outputs.weight" not in state  # the checkpoint has no QA head: it stays newly initialised
    plan = plan_student(config, StudentAssignments(n_layers=2, n_heads=3, pruning_seed=5, layer_init="every_k"))
    student = build_student(plan, state)
    assert student.bert.encoder.layer[1].attention.self.query.weight.shape == (3 * 32, 384)
    assert count_parameters(student) == student.num_parameters(only_trainable=True) == plan_parameter_count(plan)

"""Semi-pretrained students: a pretrained base reshaped by a trial's architecture knobs.

The student's config is the base's with the trial's depth, dropouts and initializer range;
every tensor of the base whose name and shape fit is copied in (layers renumbered by the
`layer_init` strategy), the rest is newly initialised. Asking for fewer attention heads than
the base has prunes heads (chosen by `pruning_seed`) with transformers' `prune_linear_layer`,
keeping the base's head size; asking for more re-splits the hidden size, which the head count
must divide. Works for DistilBERT and BERT-family (e.g. MiniLM) question-answering models.

Transformers 5 dropped `PreTrainedModel.prune_heads`; its attention modules infer the head
count from the projection shapes, so pruning the projections with `prune_linear_layer` (what
`prune_heads` did) is all that a pruned model needs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForQuestionAnswering, PretrainedConfig, PreTrainedModel
from transformers.pytorch_utils import prune_linear_layer

from paretune.bert.settings import StudentAssignments
from paretune.failures import InvalidConfiguration

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class ModelFamily:
    """Where one architecture keeps what the knobs change (config names and module paths)."""

    layers_key: str
    heads_key: str
    hidden_key: str
    intermediate_key: str
    dropout_keys: dict[str, str]
    layer_prefix: str
    layers: Callable[[PreTrainedModel], nn.ModuleList]
    prune_attention: Callable[[nn.Module, torch.Tensor, int], None]


def _prune_distilbert_attention(layer: nn.Module, index: torch.Tensor, heads: int) -> None:
    attention = layer.attention
    attention.q_lin = prune_linear_layer(attention.q_lin, index)
    attention.k_lin = prune_linear_layer(attention.k_lin, index)
    attention.v_lin = prune_linear_layer(attention.v_lin, index)
    attention.out_lin = prune_linear_layer(attention.out_lin, index, dim=1)
    attention.n_heads = heads


def _prune_bert_attention(layer: nn.Module, index: torch.Tensor, heads: int) -> None:
    self_attention = layer.attention.self
    self_attention.query = prune_linear_layer(self_attention.query, index)
    self_attention.key = prune_linear_layer(self_attention.key, index)
    self_attention.value = prune_linear_layer(self_attention.value, index)
    layer.attention.output.dense = prune_linear_layer(layer.attention.output.dense, index, dim=1)
    self_attention.num_attention_heads = heads
    self_attention.all_head_size = heads * self_attention.attention_head_size


FAMILIES: dict[str, ModelFamily] = {
    "distilbert": ModelFamily(
        layers_key="n_layers",
        heads_key="n_heads",
        hidden_key="dim",
        intermediate_key="hidden_dim",
        dropout_keys={"dropout": "dropout", "attention_dropout": "attention_dropout", "qa_dropout": "qa_dropout"},
        layer_prefix="distilbert.transformer.layer.",
        layers=lambda model: model.distilbert.transformer.layer,
        prune_attention=_prune_distilbert_attention,
    ),
    # BertForQuestionAnswering has no dropout before its QA head, so `qa_dropout` does not apply.
    "bert": ModelFamily(
        layers_key="num_hidden_layers",
        heads_key="num_attention_heads",
        hidden_key="hidden_size",
        intermediate_key="intermediate_size",
        dropout_keys={"dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob"},
        layer_prefix="bert.encoder.layer.",
        layers=lambda model: model.bert.encoder.layer,
        prune_attention=_prune_bert_attention,
    ),
}


def family_of(config: PretrainedConfig) -> ModelFamily:
    try:
        return FAMILIES[config.model_type]
    except KeyError:
        raise ValueError(
            f"student model_type {config.model_type!r} is not supported; use one of {sorted(FAMILIES)} "
            "(e.g. distilbert-base-uncased or a BERT/MiniLM checkpoint)"
        ) from None


@dataclass(frozen=True)
class StudentPlan:
    """What to build: the config to instantiate, where each layer's weights come from
    (None: newly initialised), and the heads each layer keeps (None: no pruning)."""

    config: PretrainedConfig
    source_layers: tuple[int | None, ...]
    kept_heads: tuple[tuple[int, ...], ...] | None

    @property
    def heads_per_layer(self) -> int:
        if self.kept_heads is not None:
            return len(self.kept_heads[0])
        return getattr(self.config, family_of(self.config).heads_key)


def select_source_layers(strategy: str, student_layers: int, base_layers: int) -> tuple[int | None, ...]:
    """Which base layer initialises each student layer.

    `first`: layers 0, 1, ...; `last`: the top ones; `every_k`: evenly spaced from the bottom
    (0, k, 2k, ... as DistilBERT was initialised from BERT). A student deeper than its base
    gets the base's layers in order and newly initialised layers after them (`first`), before
    them (`last`), or each base layer repeated in turn (`every_k`).
    """
    if strategy == "first":
        return tuple(i if i < base_layers else None for i in range(student_layers))
    if strategy == "last":
        offset = base_layers - student_layers
        return tuple(i + offset if i + offset >= 0 else None for i in range(student_layers))
    if strategy == "every_k":
        return tuple(int(i * base_layers / student_layers) for i in range(student_layers))
    raise ValueError(f"layer_init {strategy!r} is not one of every_k, first, last")


def choose_heads(base_heads: int, keep: int, layers: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """Per layer, the sorted heads to keep: the same seed always picks the same heads."""
    generator = np.random.default_rng(seed)
    return tuple(
        tuple(sorted(int(head) for head in generator.choice(base_heads, size=keep, replace=False)))
        for _ in range(layers)
    )


def plan_student(base_config: PretrainedConfig, assignments: StudentAssignments) -> StudentPlan:
    """The student's config, layer sources and head pruning; raises InvalidConfiguration when
    the head count cannot split the hidden size."""
    family = family_of(base_config)
    config = copy.deepcopy(base_config)
    base_layers = getattr(base_config, family.layers_key)
    base_heads = getattr(base_config, family.heads_key)
    hidden = getattr(base_config, family.hidden_key)
    layers = assignments.n_layers or base_layers
    heads = assignments.n_heads or base_heads
    setattr(config, family.layers_key, layers)
    config.initializer_range = assignments.initializer_range
    dropouts = assignments.clamped_dropouts()
    for knob, key in family.dropout_keys.items():
        setattr(config, key, dropouts[knob])
    kept_heads = None
    if heads < base_heads:
        kept_heads = choose_heads(base_heads, heads, layers, assignments.pruning_seed)
    elif heads > base_heads:
        if hidden % heads:
            raise InvalidConfiguration(
                f"n_heads={heads} does not divide the hidden size {hidden} of {base_config.name_or_path or 'the student'} "
                f"(more heads than its {base_heads}, so no pruning applies)"
            )
        setattr(config, family.heads_key, heads)
    source_layers = select_source_layers(assignments.layer_init, layers, base_layers)
    return StudentPlan(config=config, source_layers=source_layers, kept_heads=kept_heads)


def load_base(name_or_path: str) -> tuple[PretrainedConfig, dict[str, torch.Tensor]]:
    """The base's config and the tensors its checkpoint really holds (not the newly
    initialised QA head of a checkpoint trained for another task)."""
    model, loading_info = AutoModelForQuestionAnswering.from_pretrained(name_or_path, output_loading_info=True)
    newly_initialised = set(loading_info["missing_keys"]) | set(loading_info["mismatched_keys"])
    state = {name: tensor for name, tensor in model.state_dict().items() if name not in newly_initialised}
    return model.config, state


def remap_layers(state: dict[str, torch.Tensor], layer_prefix: str, source_layers: tuple[int | None, ...]) -> dict[str, torch.Tensor]:
    """Base tensors renamed to the student layer they initialise; layers not chosen are dropped."""
    remapped = {name: tensor for name, tensor in state.items() if not name.startswith(layer_prefix)}
    for student_layer, base_layer in enumerate(source_layers):
        if base_layer is None:
            continue
        source = f"{layer_prefix}{base_layer}."
        target = f"{layer_prefix}{student_layer}."
        for name, tensor in state.items():
            if name.startswith(source):
                remapped[target + name[len(source) :]] = tensor
    return remapped


def heads_index(kept_heads: tuple[int, ...], head_size: int) -> torch.Tensor:
    """Rows (or columns) of the projections that belong to the kept heads."""
    return torch.cat([torch.arange(head * head_size, (head + 1) * head_size) for head in kept_heads])


def prune_student_heads(model: PreTrainedModel, kept_heads: tuple[tuple[int, ...], ...]) -> None:
    family = family_of(model.config)
    head_size = getattr(model.config, family.hidden_key) // getattr(model.config, family.heads_key)
    for layer, kept in zip(family.layers(model), kept_heads):
        family.prune_attention(layer, heads_index(kept, head_size), len(kept))


def build_student(
    plan: StudentPlan, base_state: dict[str, torch.Tensor] | None = None, device: str | torch.device = "cpu"
) -> PreTrainedModel:
    """Instantiate the plan, copy in the base tensors that fit, then prune heads.

    With device="meta" nothing is allocated: the way to count a plan's parameters for free.
    """
    family = family_of(plan.config)
    with torch.device(device):
        model = AutoModelForQuestionAnswering.from_config(plan.config)
    loaded: set[str] = set()
    if base_state is not None:
        own = model.state_dict()
        fitting = {
            name: tensor
            for name, tensor in remap_layers(base_state, family.layer_prefix, plan.source_layers).items()
            if name in own and own[name].shape == tensor.shape
        }
        model.load_state_dict(fitting, strict=False)
        loaded = set(fitting)
    if plan.config.initializer_range == 0:
        _zero_new_weights(model, loaded)
    if plan.kept_heads is not None:
        prune_student_heads(model, plan.kept_heads)
    return model


def _zero_new_weights(model: PreTrainedModel, loaded: set[str]) -> None:
    """initializer_range 0 means N(0, 0): zeros. Transformers reads 0 as "use 0.02", so the
    newly initialised linear and embedding weights are zeroed here to keep the knob's meaning."""
    with torch.no_grad():
        for module_name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and f"{module_name}.weight" not in loaded:
                module.weight.zero_()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters: the `num_parameters` metric."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def plan_parameter_count(plan: StudentPlan) -> int:
    return count_parameters(build_student(plan, device="meta"))


def estimate_training_memory(
    config: PretrainedConfig,
    batch_size: int,
    seq_len: int,
    amp: bool,
    heads_per_layer: int | None = None,
    num_parameters: int | None = None,
) -> float:
    """Megabytes one AdamW training step needs, before allocating anything.

    Weights, gradients and two Adam moments in fp32 (16 bytes per parameter, plus an fp16
    copy under AMP), and per layer the activations kept for backward as counted by
    Korthikanti et al. (2022) for a transformer layer: s*b*h*(15 + 3) + 4*s*b*ffn bytes for the
    hidden-size tensors and 5*a*s^2*b bytes for attention scores, probabilities and dropout
    masks, in fp16; twice that in fp32. Teacher logits are precomputed, so no teacher sits in
    memory. Pruned students pass `heads_per_layer` (the config still names the base's count).
    """
    family = family_of(config)
    if num_parameters is None:
        with torch.device("meta"):
            num_parameters = count_parameters(AutoModelForQuestionAnswering.from_config(config))
    layers = getattr(config, family.layers_key)
    hidden = getattr(config, family.hidden_key)
    intermediate = getattr(config, family.intermediate_key)
    heads = heads_per_layer or getattr(config, family.heads_key)
    state_bytes = num_parameters * (16 + (2 if amp else 0))
    tokens = batch_size * seq_len
    per_layer_fp16 = tokens * hidden * 18 + tokens * intermediate * 4 + 5 * heads * seq_len * tokens
    embeddings_fp16 = tokens * hidden * 4
    activation_bytes = (layers * per_layer_fp16 + embeddings_fp16) * (1 if amp else 2)
    return (state_bytes + activation_bytes) / MEGABYTE

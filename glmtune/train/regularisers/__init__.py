"""What keeps a small-data fine-tune from forgetting, in one place; the planner decides each one.

Small data trained for many epochs pulls every answer towards itself. Four terms push back, each on or off by
the planner's rule (``glmtune/train/plan_rules.py``), and the plan says why and what it costs:

- **self-replay** (``self_replay.py``, ``data.self_replay``): the base model answers general prompts before
  training and those answers are trained alongside the data. On below 1,000 samples (2 per sample). Costs the
  drafting (generation) before training and more rows per epoch.
- **base anchor** (``anchor.py``, ``training.base_anchor``): a KL term to the adapter-free base model at the
  trained positions where the base already predicts the target, so the fine-tune changes what the data asks
  for and keeps the rest. On below 1,000 samples with an adapter, unless the base answers none of its
  self-replay prompts (an untrained model). Costs one forward pass without gradients per step.
- **unlikelihood** (``unlikelihood.py``, ``identity.unlikelihood``): the old identity's name tokens lose
  probability at every trained position. On with a new ``identity.name`` and the base anchor. No extra pass.
- **identity replay** (``identity_replay.py``, ``data.identity_replay``): the base model answers the data's
  identity questions, renamed to the new identity. Opt-in: it cut leakage of the old maker but cost skills on
  the quality benchmark.
"""

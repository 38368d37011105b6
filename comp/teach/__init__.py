"""Second rounds: learning from the test images and from an ensemble (pseudo-labels, OOF soft targets,
distillation, and `comp data check --teacher`'s list of labels a teacher doubts).

`plan.Planner` turns a config's `pseudo`, `train.oof_targets` and `distill` sections into each run's
or fold's training rows (`comp.tasks.soft_targets.Teaching`), which the engine trains on like any
other targets; `teachers` opens and checks the teacher runs and predicts with them.
"""

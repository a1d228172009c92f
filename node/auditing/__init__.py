"""The validator's audits: commit / reveal of audit seeds, evidence gathering, replay, verdicts.

`node.roles.validator.ValidatorComponent` composes these parts; the pure audit core (draw,
replay, judge, score book) lives in `verification/`.
"""

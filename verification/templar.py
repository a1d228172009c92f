"""Quality scores in the manner of Templar's validators, as a pure fold over screened windows.

Per window, over the miners screened (`verification.quality`):
  - OpenSkill Plackett-Luce ratings (beta 20, tau 0.1) updated by one game whose score is each
    miner's improvement L_before - L_after divided by its stage's mean |improvement|
    (`stage_scaled`: stages differ in how far a delta moves the loss);
    `ordinal` = mu - 3 sigma (0 for a new miner);
  - gradient_ma = a_g * improvement + (1 - a_g) * gradient_ma             (a_g = 0.6)
  - binary indicator b = +1 if the improvement is > 0, else -1;
    binary_ma = (1 - a_b) * binary_ma + a_b * b                          (a_b = 0.05)
  - sync = max(0, 1 - steps_behind / sync_max_steps_behind)
  - final = ordinal * max(0, binary_ma) * sync
    final_ma = max(0, a_f * final_ma + (1 - a_f) * final)               (a_f = 0.75: the old
    value keeps a_f, as in the Templar document)
Penalties, applied to final_ma after the update: a miner that worked in the window but whose
contribution is missing loses `missing_gradient_slash_rate` (75 %); one more than
`sync_max_steps_behind` steps out of sync loses `sync_slash_rate` (75 %); a known miner that did
not work in the window loses `inactivity_slash_rate` (25 %) and, after `reset_inactivity_windows`
(25) such windows in a row, is forgotten (rating and averages reset).
Weights: power normalisation, w_m = final_ma_m ** p / sum over positive scores (p = 2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace

from openskill.models import PlackettLuce

from verification.quality import Screen

WORST = -1e9
"""The rating score of a contribution that broke the model (infinite loss)."""


@dataclass(kw_only=True, slots=True)
class TemplarParams:
    openskill_beta: float = 20.0
    openskill_tau: float = 0.1
    binary_score_ma_alpha: float = 0.05
    gradient_score_ma_alpha: float = 0.6
    final_score_ma_alpha: float = 0.75
    power_normalisation: float = 2.0
    inactivity_slash_rate: float = 0.25
    missing_gradient_slash_rate: float = 0.75
    sync_slash_rate: float = 0.75
    sync_max_steps_behind: float = 3.0
    reset_inactivity_windows: int = 25

    def __post_init__(self) -> None:
        for name in (
            "binary_score_ma_alpha", "gradient_score_ma_alpha", "final_score_ma_alpha",
            "inactivity_slash_rate", "missing_gradient_slash_rate", "sync_slash_rate",
        ):  # fmt: skip
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"validator.templar.{name} must be in [0, 1]")
        positive = ("openskill_beta", "power_normalisation", "sync_max_steps_behind")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"validator.templar.{name} must be > 0")
        if not (math.isfinite(self.openskill_tau) and self.openskill_tau >= 0):
            raise ValueError("validator.templar.openskill_tau must be >= 0")
        if self.reset_inactivity_windows < 1:
            raise ValueError("validator.templar.reset_inactivity_windows must be >= 1")


@dataclass(kw_only=True, slots=True)
class MinerScore:
    stage: int
    mu: float
    sigma: float
    gradient_ma: float = 0.0
    binary_ma: float = 0.0
    sync: float = 1.0
    final_ma: float = 0.0
    inactive: int = 0
    """Windows in a row without work."""
    screened: int = 0
    improved: int = 0

    @property
    def ordinal(self) -> float:
        return self.mu - 3.0 * self.sigma

    def to_record(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_record(cls, row: Mapping[str, float | int]) -> MinerScore:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})  # type: ignore[arg-type]


@dataclass(slots=True)
class TemplarBook:
    params: TemplarParams
    miners: dict[str, MinerScore] = field(default_factory=dict)

    def _model(self) -> PlackettLuce:
        return PlackettLuce(beta=self.params.openskill_beta, tau=self.params.openskill_tau)

    def update(self, screens: Mapping[str, Screen], worked: Iterable[str]) -> None:
        """Fold one window in: `screens` of the miners screened, `worked`: every miner with
        work in the window (a worker without a screen counts as missing)."""
        p = self.params
        worked = set(worked) | set(screens)
        model = self._model()
        for miner, screen in screens.items():
            if miner not in self.miners:
                fresh = model.rating()
                self.miners[miner] = MinerScore(stage=screen.stage, mu=fresh.mu, sigma=fresh.sigma)
            self.miners[miner].stage = screen.stage
        rated = sorted(m for m, s in screens.items() if not s.missing)
        if len(rated) >= 2:
            teams = [
                [model.rating(mu=self.miners[m].mu, sigma=self.miners[m].sigma)] for m in rated
            ]
            scores = stage_scaled({m: screens[m] for m in rated})
            new = model.rate(teams, scores=[scores[m] for m in rated])
            for m, team in zip(rated, new, strict=True):
                self.miners[m].mu, self.miners[m].sigma = team[0].mu, team[0].sigma
        for miner in sorted(self.miners):
            score = self.miners[miner]
            if miner not in worked:
                score.inactive += 1
                if score.inactive >= p.reset_inactivity_windows:
                    del self.miners[miner]
                else:
                    score.final_ma *= 1.0 - p.inactivity_slash_rate
                continue
            score.inactive = 0
            s = screens.get(miner)
            if s is None or s.missing:
                score.final_ma *= 1.0 - p.missing_gradient_slash_rate
                continue
            improvement = s.improvement if math.isfinite(s.improvement) else WORST
            score.screened += 1
            score.improved += improvement > 0
            score.gradient_ma = (
                p.gradient_score_ma_alpha * improvement
                + (1.0 - p.gradient_score_ma_alpha) * score.gradient_ma
            )
            indicator = 1.0 if improvement > 0 else -1.0
            score.binary_ma = (
                1.0 - p.binary_score_ma_alpha
            ) * score.binary_ma + p.binary_score_ma_alpha * indicator
            score.sync = sync_score(s.steps_behind, p.sync_max_steps_behind)
            final = score.ordinal * max(0.0, score.binary_ma) * score.sync
            score.final_ma = max(
                0.0,
                p.final_score_ma_alpha * score.final_ma + (1.0 - p.final_score_ma_alpha) * final,
            )
            if s.steps_behind > p.sync_max_steps_behind:
                score.final_ma *= 1.0 - p.sync_slash_rate

    def weights(self) -> dict[str, float]:
        """Power-normalised final scores over the miners with a positive one."""
        return power_normalise({m: s.final_ma for m, s in self.miners.items()}, self.params)

    def ranking(self) -> list[str]:
        """Miners best first: by final score, then by rating ordinal."""
        return sorted(
            self.miners, key=lambda m: (-self.miners[m].final_ma, -self.miners[m].ordinal, m)
        )

    def copy(self) -> TemplarBook:
        return TemplarBook(self.params, {m: replace(s) for m, s in self.miners.items()})


def stage_scaled(screens: Mapping[str, Screen]) -> dict[str, float]:
    """Each improvement divided by its stage's mean |improvement| (the game's scores): a delta
    of the first or last stage moves the loss more than one of a middle stage, so raw
    improvements would rank stages, not miners. A contribution that broke the model scores
    `WORST`."""
    scale: dict[int, list[float]] = {}
    for s in screens.values():
        if math.isfinite(s.improvement):
            scale.setdefault(s.stage, []).append(abs(s.improvement))
    out = {}
    for m, s in screens.items():
        values = scale.get(s.stage, [])
        mean = math.fsum(values) / len(values) if values else 0.0
        if not math.isfinite(s.improvement):
            out[m] = WORST
        else:
            out[m] = s.improvement / mean if mean > 0 else 0.0
    return out


def sync_score(steps_behind: float, max_steps_behind: float) -> float:
    if not math.isfinite(steps_behind):
        return 0.0
    return max(0.0, 1.0 - steps_behind / max_steps_behind)


def power_normalise(scores: Mapping[str, float], params: TemplarParams) -> dict[str, float]:
    """score ** p / sum of score ** p over the positive finite scores; others get 0."""
    powered = {
        m: (v**params.power_normalisation if math.isfinite(v) and v > 0 else 0.0)
        for m, v in scores.items()
    }
    total = math.fsum(powered.values())
    return {m: (v / total if total > 0 else 0.0) for m, v in powered.items()}

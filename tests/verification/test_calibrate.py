"""The calibration script runs end to end (on a very small pipeline) and its thresholds hold."""

from dataclasses import replace
from pathlib import Path

import pytest

from tests.verification.kit import SPEC
from training.data.dataset import Dataset
from verification.calibrate import calibrate_preset, main


def test_calibration_of_a_tiny_window(dataset: Dataset) -> None:
    spec = replace(SPEC, batches_per_window=2, accumulate=1)
    report = calibrate_preset(spec, dataset, 1)
    assert report["honest_rejected"] == 0 and report["faults_accepted"] == 0
    assert report["noise"]["threads2/forward"]["units"] == 4
    assert set(report["fault_window_min_of_max_rel_l2"]) == {
        "zeros", "random", "copycat", "nan", "stale", "passthrough",
    }  # fmt: skip
    assert all(v > 0.01 for v in report["fault_window_min_of_max_rel_l2"].values())


def test_main_parses_arguments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import verification.calibrate as module

    def fake(presets: list[str], windows: int, data_dir: Path) -> dict[str, object]:
        return {"presets": presets, "windows": windows, "data": str(data_dir)}

    monkeypatch.setattr(module, "calibrate", fake)
    main(["--presets", "tiny", "--windows", "1", "--data-dir", str(tmp_path)])
    assert '"presets": [\n    "tiny"\n  ]' in capsys.readouterr().out

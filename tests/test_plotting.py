"""`trpo-ng plot`: runs grouped by config, mean and min–max band across seeds, a PNG."""

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from trpo_ng import make_config, plot_runs, train
from trpo_ng.cli import main
from trpo_ng.config import dump_config
from trpo_ng.plotting import group_runs

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "total_steps=2048",
    "rollout.steps_per_env=128",
    "value.epochs=1",
    "eval.episodes=1",
    "eval.every=512",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def fake_run(log_dir: Path, name: str, points: dict[int, float], **overrides) -> Path:
    """A run directory with a config.yaml and eval/return_mean events, without training."""
    cfg = make_config(overrides={**overrides, "log_dir": str(log_dir), "run_name": name})
    run = log_dir / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    writer = SummaryWriter(str(run))
    for step, value in points.items():
        writer.add_scalar("eval/return_mean", value, step)
    writer.close()
    return run


def test_plot_of_two_seeded_runs_writes_a_png_with_one_group(tmp_path):
    runs = [
        train(
            ROOT / "configs" / "cartpole.yaml",
            [*FAST, f"log_dir={tmp_path / 'runs'}", f"seed={s}", f"run_name=cp-s{s}"],
            quiet=True,
        ).run_dir
        for s in (0, 1)
    ]
    output = tmp_path / "out" / "curves.png"
    code, out, err = cli("plot", *map(str, runs), "-o", str(output))
    assert code == 0, err
    assert out.strip().splitlines() == [
        f"group cp: {runs[0]}, {runs[1]}",
        f"wrote {output} (eval/return_mean, 1 group)",
    ]
    data = output.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    import matplotlib.image

    assert matplotlib.image.imread(output).shape[:2] == (500, 800)  # 8 x 5 inches at 100 dpi
    (group,) = plot_runs([tmp_path / "runs"], output=tmp_path / "again.png").groups
    assert [c.run_dir for c in group.curves] == runs  # a folder of runs works the same
    steps, mean, low, high = group.band()
    np.testing.assert_array_equal(steps, [512, 1024, 1536, 2048])
    values = np.stack([c.values for c in group.curves])
    np.testing.assert_allclose(mean, values.mean(axis=0))
    np.testing.assert_allclose(low, values.min(axis=0))
    np.testing.assert_allclose(high, values.max(axis=0))


def test_runs_are_grouped_by_config_apart_from_seed_and_name(tmp_path):
    kl01 = [fake_run(tmp_path, f"kl01-s{s}", {10: s, 20: 2 * s}, seed=s) for s in (0, 1, 2)]
    kl02 = [
        fake_run(tmp_path, f"kl02-s{s}", {10: 1.0}, seed=s, **{"policy.max_kl": 0.02})
        for s in (0, 1)
    ]
    other_log_dir = fake_run(tmp_path / "elsewhere", "kl01-s7", {10: 7.0, 20: 7.0}, seed=7)
    groups, skipped = group_runs([*kl01, *kl02, other_log_dir], "eval/return_mean")
    assert skipped == []
    assert [(g.label, [c.run_dir for c in g.curves]) for g in groups] == [
        ("kl01", [*kl01, other_log_dir]),
        ("kl02", kl02),
    ]
    steps, mean, low, high = groups[0].band()
    np.testing.assert_array_equal(steps, [10, 20])
    np.testing.assert_allclose(mean, [(0 + 1 + 2 + 7) / 4, (0 + 2 + 4 + 7) / 4])
    np.testing.assert_allclose(low, [0, 0])
    np.testing.assert_allclose(high, [7, 7])


def test_band_interpolates_within_the_steps_every_run_covers(tmp_path):
    a = fake_run(tmp_path, "x-s0", {0: 0.0, 10: 10.0, 30: 30.0})
    b = fake_run(tmp_path, "x-s1", {5: 0.0, 20: 0.0}, seed=1)
    ((group,), _) = group_runs([a, b], "eval/return_mean")
    steps, mean, low, high = group.band()
    np.testing.assert_array_equal(steps, [5, 10, 20])
    np.testing.assert_allclose(mean, [2.5, 5.0, 10.0])
    np.testing.assert_allclose(low, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(high, [5.0, 10.0, 20.0])


def test_groups_that_would_share_a_name_are_told_apart(tmp_path):
    a = fake_run(tmp_path / "a", "cartpole-s0-20260101-120000-000000", {1: 1.0})
    b = fake_run(tmp_path / "b", "cartpole-s0-20260101-120001-000000", {1: 2.0}, agent="npg")
    c = fake_run(tmp_path / "c", "mine", {1: 3.0}, agent="vpg")
    d = fake_run(tmp_path / "d", "mine", {1: 3.0}, agent="vpg", seed=1)
    groups, _ = group_runs([a, b, c, d], "eval/return_mean")
    assert [g.label for g in groups] == ["cartpole (agent=trpo)", "cartpole (agent=npg)", "mine"]


def test_runs_without_the_metric_are_left_out_and_named(tmp_path):
    a = fake_run(tmp_path, "a-s0", {1: 1.0})
    empty = fake_run(tmp_path, "b-s0", {}, agent="npg")
    code, out, err = cli("plot", str(a), str(empty), "-o", str(tmp_path / "c.png"))
    assert code == 0, err
    assert err.strip() == f"trpo-ng: left out {empty}: no 'eval/return_mean' values"
    assert out.startswith(f"group a: {a}\n")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def assert_one_line_exit_2(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch):
    run = fake_run(tmp_path, "r-s0", {1: 1.0})
    out = str(tmp_path / "c.png")
    code, _, err = cli("plot", str(run), "--metric", "eval/retrun_mean", "-o", out)
    assert_one_line_exit_2(code, err, "'eval/retrun_mean'", "did you mean 'eval/return_mean'")
    code, _, err = cli("plot", str(tmp_path / "nowhere"), "-o", out)
    assert_one_line_exit_2(code, err, "no such run directory")
    (tmp_path / "empty").mkdir()
    code, _, err = cli("plot", str(tmp_path / "empty"), "-o", out)
    assert_one_line_exit_2(code, err, "not a trpo-ng run directory")
    code, _, err = cli("plot", str(run), "-o", str(tmp_path / "c.nosuchformat"))
    assert_one_line_exit_2(code, err, "cannot write")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    code, _, err = cli("plot", str(run), "-o", out)
    assert_one_line_exit_2(code, err, "matplotlib", "pip install 'trpo-ng[plot]'")
    assert not (tmp_path / "c.png").exists()


def test_the_output_format_follows_the_file_name(tmp_path):
    run = fake_run(tmp_path, "r-s0", {1: 1.0, 2: 3.0})
    plot_runs([run], output=tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")

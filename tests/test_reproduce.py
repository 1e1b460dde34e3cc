"""`vaelab reproduce`: a shortened protocol end to end (run, kill, rerun continues), the record,
the table, --list, and one-line errors. Frey Face protocols keep it fast: an epoch is 18 steps."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli import assert_user_error, vaelab
from vaelab.reproduce import (
    FIGURES,
    Citation,
    Metric,
    Protocol,
    all_protocols,
    get_protocol,
    markdown_table,
    read_record,
    register_protocol,
    reproduce,
)
from vaelab.reproduce.figures import draw_bound_panels, draw_manifolds
from vaelab.reproduce.protocol import COST_MACHINE, PROTOCOLS

FREY = "aevb-fig2-frey-nz2"
REPO = Path(__file__).resolve().parents[1]


def _env(data_dir):
    return dict(os.environ, VAELAB_DATA_DIR=data_dir, OMP_NUM_THREADS="1")


def test_list_names_every_protocol_and_figure():
    proc = vaelab("reproduce", "--list")
    assert proc.returncode == 0, proc.stderr
    for p in all_protocols():
        assert p.name in proc.stdout
        assert p.citation.where in proc.stdout
    for name in FIGURES:
        assert name in proc.stdout
    # the paper's numbers are listed as the table gives them
    assert "86.76" in proc.stdout and "101.50" in proc.stdout
    # each protocol's cost per epoch as declared (Frey Face's 0.06 s, not rounded to 0.1), and
    # the machine it was measured on
    frey = next(line for line in proc.stdout.splitlines() if line.startswith(FREY + " "))
    assert " 0.06 " in frey and "57 min" in frey
    assert COST_MACHINE in proc.stdout


def test_every_protocol_builds_its_config_and_cites_its_paper():
    for p in all_protocols():
        cfg = p.config(p.seeds[0])
        assert cfg.train.epochs == p.epochs >= 100
        assert p.citation.row and p.citation.column and p.notes
        assert p.cpu_seconds_per_epoch and p.cpu_seconds_per_epoch > 0
    # the IWAE paper's 3280 epochs, the AEVB figure's x-axis (2.5e8 MNIST examples, 1e8 Frey Face)
    assert get_protocol("iwae-vae-1layer").epochs == 3280
    assert get_protocol("aevb-fig2-mnist-nz20").epochs * 60000 >= 2.5e8
    assert get_protocol(FREY).epochs * 1765 >= 1e8 > (get_protocol(FREY).epochs - 1) * 1765


def test_shortened_protocol_killed_and_continued(tmp_path, data_dir):
    out = tmp_path / "frey"
    cmd = [sys.executable, "-m", "vaelab", "reproduce", FREY, "--epochs", "40", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env(data_dir))
    deadline = time.monotonic() + 120
    line = ""
    while "epoch   1" not in line and time.monotonic() < deadline:  # the first epoch is always saved
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "exited before its first epoch"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    record = read_record(out)
    assert record["protocol"] == FREY and record["complete"] is False and record["value"] is None
    done_before = len((out / "seed-0" / "metrics.jsonl").read_text().splitlines())
    assert done_before >= 1

    again = subprocess.run(cmd, capture_output=True, text=True, env=_env(data_dir), timeout=300)
    assert again.returncode == 0, again.stderr
    assert "(continuing)" in again.stderr or done_before == 40
    assert "INCOMPLETE: 40 of" in again.stderr
    epochs = [json.loads(x)["epoch"] for x in (out / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 41))
    assert not list(out.rglob("*.tmp"))

    record = json.loads((out / "reproduction.json").read_text())
    assert {
        "protocol",
        "paper",
        "paper_value",
        "value",
        "values",
        "metric",
        "complete",
        "epochs_run",
        "epochs_total",
        "wall_seconds",
        "machine",
        "vaelab_version",
        "command",
    } <= set(record)
    assert record["complete"] is False and record["epochs_run"] == 40
    assert record["epochs_total"] == get_protocol(FREY).epochs
    assert record["paper"]["where"] == "Figure 2" and record["paper"]["year"] == 2014
    assert record["paper_value"] == -872.0
    assert record["metric"]["name"] == "neg_elbo" and record["metric"]["split"] == "test"
    assert len(record["values"]) == 1 and math.isfinite(record["value"]) and record["value"] < 0  # a density
    assert record["wall_seconds"] > 0 and record["command"] == f"vaelab reproduce {FREY} --out {out} --epochs 40"
    assert record["also"]["neg_elbo_train"]["paper_value"] == -935.0
    assert record["curve"]["epoch"][-1] == 40 and record["curve"]["examples"][-1] == 40 * 1765
    # the row equals a fresh evaluation of the saved run
    import vaelab as v

    assert v.evaluate(out / "seed-0", "test", device="cpu", data_dir=data_dir)["neg_elbo"] == pytest.approx(
        record["value"], rel=1e-6
    )

    # the same command once more: nothing to train, the evaluation is cached, the row unchanged
    third = subprocess.run(cmd, capture_output=True, text=True, env=_env(data_dir), timeout=300)
    assert third.returncode == 0 and "evaluating" not in third.stderr
    assert read_record(out)["value"] == record["value"]

    table = vaelab("reproduce", "--table", tmp_path)
    assert table.returncode == 0, table.stderr
    row = next(r for r in table.stdout.splitlines() if f"`{FREY}`" in r)
    assert "40 of" in row and "incomplete" in row and "-872.00" in row


def test_an_interrupted_row_records_how_far_it_got(tmp_path, data_dir):
    """Ctrl-C midway: reproduction.json says the epochs, curve and time the checkpoint holds (not
    the empty row written at the start), and the message names the command that continues it."""
    out = tmp_path / "frey"
    cmd = [sys.executable, "-m", "vaelab", "reproduce", FREY, "--epochs", "5000", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env(data_dir))
    deadline = time.monotonic() + 120
    line = ""
    while "epoch   1" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "exited before its first epoch"
    time.sleep(1.0)  # a few more epochs (18 steps each)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    done = len((out / "seed-0" / "metrics.jsonl").read_text().splitlines())
    assert 1 < done < 5000
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"vaelab: stopped at epoch {done + 1}, step ")
    assert last.endswith(
        f"; state saved in {out / 'seed-0'}; continue with `vaelab reproduce {FREY} --out {out} --epochs 5000`"
    )
    record = read_record(out)
    assert record["epochs_run"] == record["per_seed"][0]["epochs_run"] == done
    assert record["curve"]["epoch"][-1] == done and record["wall_seconds"] > 0
    assert record["complete"] is False and record["value"] is None
    row = next(r for r in markdown_table([record]).splitlines() if f"`{FREY}`" in r)
    assert f"{done} of {get_protocol(FREY).epochs} (**incomplete**)" in row


def test_seeds_give_mean_sd_and_every_value(tmp_path, data_dir):
    record = reproduce(
        FREY,
        tmp_path / "r",
        seeds=(0, 1),
        epochs=2,
        data_dir=data_dir,
        device="cpu",
        progress=False,
        log=lambda msg: None,
    )
    assert record["seeds"] == [0, 1] and len(record["values"]) == 2
    assert record["values"][0] != record["values"][1]
    assert record["value"] == pytest.approx(sum(record["values"]) / 2)
    assert record["sd"] == pytest.approx(abs(record["values"][0] - record["values"][1]) / math.sqrt(2))
    assert "--seeds 0,1" in record["command"]
    assert "2 seeds" in markdown_table([record])


def test_a_row_continued_on_another_machine_names_both(tmp_path, data_dir, monkeypatch):
    """A row begun on a GPU and finished on a CPU says so: its wall time is the two machines' sum."""
    import vaelab.reproduce.run as rr

    out, kw = tmp_path / "r", dict(data_dir=data_dir, device="cpu", progress=False, log=lambda msg: None)
    monkeypatch.setattr(rr, "_machine", lambda: "GPU box")
    assert reproduce(FREY, out, epochs=2, **kw)["machines"] == ["GPU box"]
    monkeypatch.setattr(rr, "_machine", lambda: "CPU box")
    assert reproduce(FREY, out, epochs=2, **kw)["machines"] == ["GPU box"]  # nothing computed here
    # a record written before `machines` existed names its one machine in `machine`
    old = read_record(out)
    del old["machines"]
    (out / "reproduction.json").write_text(json.dumps(old))
    record = reproduce(FREY, out, epochs=3, **kw)  # one more epoch, here
    assert record["machines"] == ["GPU box", "CPU box"] and record["machine"] == "GPU box + CPU box"
    assert "GPU box + CPU box" in markdown_table([record])


@pytest.fixture
def tiny_protocol():
    """A protocol registered from outside vaelab: a small MNIST model whose row is an nll."""
    p = register_protocol(
        Protocol(
            "test-tiny-nll",
            Citation("A. Author, B. Author, C. Author", 2020, "A test", "Table 9", "tiny", "k = 20"),
            150.0,
            Metric("nll", "test", k=20),
            "pytorch-examples",
            overrides={"model": {"hidden": [32], "latent_dim": 4}, "train": {"epochs": 2, "batch_size": 1000}},
            also=(Metric("neg_elbo"),),
            cpu_seconds_per_epoch=1.0,
            notes="for tests",
        )
    )
    yield p
    PROTOCOLS.pop(p.name)


def test_nll_row_is_the_importance_sampled_bound(tmp_path, data_dir, tiny_protocol):
    record = reproduce(
        tiny_protocol.name, tmp_path / "t", data_dir=data_dir, device="cpu", progress=False, log=lambda msg: None
    )
    assert record["complete"] is True and record["epochs_run"] == 2
    assert record["metric"]["description"] == "nll (k = 20, test)"
    nll, neg_elbo = record["value"], record["also"]["neg_elbo_test"]["value"]
    assert nll < neg_elbo  # L_20 is a tighter bound than the ELBO
    import vaelab as v

    again = v.evaluate(tmp_path / "t" / "seed-0", "test", iw_samples=20, device="cpu", data_dir=data_dir)
    assert again["nll"] == pytest.approx(nll, rel=1e-9)
    assert "Author et al. 2020, Table 9" in tiny_protocol.citation.short()


def test_user_errors_are_one_line(tmp_path, data_dir):
    assert_user_error(vaelab("reproduce", "no-such-protocol", "--out", tmp_path / "x"), "unknown protocol")
    assert_user_error(vaelab("reproduce"), "--list")
    assert_user_error(vaelab("reproduce", FREY, "--list"), "one of")
    assert_user_error(vaelab("reproduce", FREY, "--seeds", "0,x"), "seeds")
    assert_user_error(vaelab("reproduce", FREY, "--seeds", "1,1", "--out", tmp_path / "s"), "twice")
    assert_user_error(vaelab("reproduce", FREY, "--epochs", "0", "--out", tmp_path / "e"), "--epochs")
    graphs = vaelab("reproduce", FREY, "--cuda-graphs", "--device", "cpu", "--out", tmp_path / "g", data_dir=data_dir)
    assert_user_error(graphs, "needs one CUDA GPU")
    assert not (tmp_path / "g").exists()  # refused before the folder is made
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_user_error(vaelab("reproduce", FREY, "--out", a_file), "is a file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert_user_error(vaelab("reproduce", FREY, "--out", other), "other files")
    # a directory of another protocol
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "reproduction.json").write_text(
        json.dumps({"format": "vaelab-reproduction-1", "protocol": "iwae-vae-1layer"})
    )
    assert_user_error(vaelab("reproduce", FREY, "--out", theirs, data_dir=data_dir), "iwae-vae-1layer")
    assert_user_error(vaelab("reproduce", "--table", tmp_path / "missing"), "does not exist")
    assert (other / "notes.txt").read_text() == "mine"


def test_two_processes_cannot_share_a_reproduction(tmp_path, data_dir):
    from vaelab.errors import VaelabError
    from vaelab.runs import exclusive

    out = tmp_path / "busy"
    out.mkdir()
    with exclusive(out, "test"):
        proc = vaelab("reproduce", FREY, "--epochs", "1", "--out", out, data_dir=data_dir)
        assert_user_error(proc, "in use by another vaelab process", f"pid {os.getpid()}")
        with pytest.raises(VaelabError), exclusive(out):
            pass
    with exclusive(out):  # released by the first holder
        pass


def test_figures_draw_from_shortened_members(tmp_path, data_dir):
    dirs = {}
    for name in ("aevb-fig2-frey-nz2", "aevb-fig2-frey-nz5"):
        dirs[name] = tmp_path / name
        reproduce(name, dirs[name], epochs=3, data_dir=data_dir, device="cpu", progress=False, log=lambda m: None)
    import matplotlib.image as mpimg

    png = mpimg.imread(draw_bound_panels(dirs, tmp_path / "fig2.png", title="test"))
    assert png.shape[0] > 200 and png.shape[1] > 400
    png = mpimg.imread(
        draw_manifolds({"aevb-fig2-frey-nz2": dirs["aevb-fig2-frey-nz2"]}, tmp_path / "fig4.png", title="test")
    )
    assert png.shape[1] >= 10 * 20 * 2  # a 10 x 10 grid of 28 x 20 faces, each pixel drawn twice


def test_the_papers_curves_end_at_its_numbers():
    """The AEVB paper's Figure 2 curves, drawn beside ours, are keyed by protocol: each ends at
    the figure's right edge, at the numbers its protocol declares for train and test (Frey Face's
    were rounded to whole nats)."""
    from vaelab.reproduce.figures import paper_curves

    curves = paper_curves()
    members = FIGURES["aevb-figure2"].members
    assert set(curves) == set(members)
    for name in members:
        p = get_protocol(name)
        (x_test, test), (x_train, train) = curves[name]["test"][-1], curves[name]["train"][-1]
        assert 10**x_test == pytest.approx(p.figure_xlim[1], rel=0.01) and x_train == x_test
        assert -test == pytest.approx(p.paper_value, abs=0.5)
        assert -train == pytest.approx(p.paper_also["neg_elbo_train"], abs=0.5)
        lo, hi = curves[name]["ylim"]
        assert lo < test < hi and lo < train < hi


def test_draw_shows_a_figure_as_its_runs_stand_and_runs_nothing(tmp_path, data_dir):
    """`--draw` draws Figure 4 from a Frey Face run cut short and an MNIST member not begun, and
    starts nothing; with no member begun, or with a protocol's name, it is one line."""
    import matplotlib.image as mpimg

    assert_user_error(vaelab("reproduce", "aevb-figure4", "--out", tmp_path, "--draw"), "no member of aevb-figure4")
    assert_user_error(vaelab("reproduce", FREY, "--out", tmp_path, "--draw"), "is a protocol, not a figure")
    reproduce(FREY, tmp_path / FREY, epochs=2, data_dir=data_dir, device="cpu", progress=False, log=lambda m: None)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = vaelab("reproduce", "aevb-figure4", "--out", tmp_path, "--draw", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert set(after) - set(before) == {Path("aevb-figure4.png")}  # nothing run, nothing else written
    png = mpimg.imread(tmp_path / "aevb-figure4.png")
    assert png.shape[1] >= 10 * 20 * 2  # the Frey Face panel alone


def test_readme_table_is_the_generated_one():
    """The README's reproduction table is `vaelab reproduce --table reproductions/`, never typed."""
    from vaelab.reproduce.table import README_END, README_START, readme_table

    readme = (REPO / "README.md").read_text()
    shown = readme.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert shown == readme_table(REPO / "reproductions"), "regenerate with `make reproductions-table`"


def test_a_run_made_with_other_settings_is_refused_not_recorded(tmp_path, data_dir):
    """A folder kept from before a protocol changed (here: another hidden width) is neither continued
    nor evaluated as the protocol's row, even when its runs are complete; --list says why."""
    from vaelab.reproduce.table import list_protocols

    out = tmp_path / "old"
    quiet = dict(data_dir=data_dir, device="cpu", progress=False, log=lambda msg: None)
    before = reproduce(FREY, out, epochs=1, **quiet)
    config = out / "seed-0" / "config.json"
    saved = json.loads(config.read_text())
    saved["model"]["hidden"] = [17]
    config.write_text(json.dumps(saved))
    for epochs in ("1", "2"):  # complete: evaluate only; incomplete: continue
        proc = vaelab("reproduce", FREY, "--epochs", epochs, "--out", out, data_dir=data_dir)
        assert_user_error(proc, "made with other settings", "model.hidden", "give another --out")
    assert read_record(out) == before
    assert f"made with other settings than the protocol's (model.hidden)  ({out})" in list_protocols([tmp_path])
    good = tmp_path / "good"
    reproduce(FREY, good, epochs=1, **quiet)
    row = next(line for line in list_protocols([tmp_path]).splitlines() if line.startswith(FREY + " "))
    assert row.endswith(f"({good})")  # the folder made with the protocol's settings is the one shown

"""Nothing lost: failed, interrupted and killed runs leave earlier outputs, no temporaries and
no empty folders behind; output into a file is plain lines."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from synthetic import make_dataset

from phaseseg.cli import main
from phaseseg.io.files import (
    atomic_path,
    is_temporary_name,
    remove_stale_temporaries,
    temporary_name,
)

PHASESEG = [sys.executable, "-m", "phaseseg.cli"]


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temporary_name(p.name)]


def write_images(folder: Path, n: int, size: int = 192, rgb: bool = False) -> Path:
    """``n`` images: one real file and ``n - 1`` links to it (cheap, distinct ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    image = rng.integers(80, 160, (size, size), dtype=np.uint8)
    first = folder / "img000.png"
    Image.fromarray(np.stack([image] * 3, -1) if rgb else image).save(first)
    for i in range(1, n):
        (folder / f"img{i:03d}.png").symlink_to(first.name)
    return folder


# --------------------------------------------------------------------------- failed runs


def test_predict_with_every_image_failing_keeps_the_old_submission(tmp_path, capsys):
    sub = tmp_path / "submission.csv"
    sub.write_text("id,predicted\nold,1 2\n")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"not a png")
    (tmp_path / "imgs" / "b.png").write_bytes(b"nor this")
    code = main(["predict", str(tmp_path / "imgs"), "--submission", str(sub)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no image could be segmented" in err[0] and "a.png" in err[0] and "1 more" in err[0]
    assert f"{sub} left as it was" in err[0]
    assert sub.read_text() == "id,predicted\nold,1 2\n"
    assert temporaries(tmp_path) == []


def test_a_failed_train_leaves_no_config_file(tmp_path, capsys):
    out = tmp_path / "runs" / "m.pt"
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    data = make_dataset(tmp_path / "data")  # images smaller than the default 256-px crop
    assert main(["train", str(data), "--out", str(out), "--init", "bundled"]) == 2
    assert "smaller than the 256-px training crop" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "m.config.json").exists() and not out.exists()


def test_a_failed_eda_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "reports" / "eda"
    assert main(["eda", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "train.csv" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
    (tmp_path / "file").write_text("x")
    assert main(["eda", str(tmp_path / "nowhere"), "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_a_failed_measure_leaves_no_folders(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["measure", str(tmp_path / "imgs"), "--out", str(out)]) == 2
    assert "no image could be measured" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_only_submitted_scores_the_submitted_images(tmp_path, capsys):
    truth = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "annotation": ["1 4", "9 3", "5 2"],
            "width": 8,
            "height": 4,
            "cell_type": ["astro", "cort", "shsy5y"],
        }
    )
    truth.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "s.csv").write_text("id,predicted\na,1 4\n")  # image a, exactly right
    assert main(["evaluate", str(tmp_path / "train.csv"), str(tmp_path / "s.csv")]) == 0
    everything = capsys.readouterr().out
    assert (
        everything.startswith("score 0.3333  (3 images; 2 missing")
        and "--only-submitted" in everything
    )
    args = ["evaluate", str(tmp_path / "train.csv"), str(tmp_path / "s.csv"), "--only-submitted"]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("score 1.0000  (1 images)")
    (tmp_path / "s.csv").write_text("id,predicted\n")
    assert main(args) == 2
    assert "no image to score" in capsys.readouterr().err


# --------------------------------------------------------------------------- temporaries


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    stale = temporary_name(tmp_path / "s.csv")
    stale.write_text("half a submission")
    recent = temporary_name(tmp_path / "t.csv")
    recent.write_text("being written")
    unrelated = tmp_path / ".s.csv.backup"
    unrelated.write_text("not ours")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(unrelated, (old, old))
    assert remove_stale_temporaries(tmp_path, before=time.time() - 60) == [stale]
    assert recent.exists() and unrelated.exists()
    with atomic_path(tmp_path / "u.csv") as live:  # locked while its writer lives
        os.utime(live, (old, old))
        assert remove_stale_temporaries(tmp_path, before=time.time() + 60) == [recent]
        assert live.exists()
    assert unrelated.exists() and not live.exists() and (tmp_path / "u.csv").exists()


def test_unmarked_temporaries_of_earlier_versions_go_when_their_file_is_written(tmp_path):
    """Earlier versions named temporaries ``.s.csv.XXXXXXXX.csv``, too plain a name to remove
    on sight: one goes when ``s.csv`` itself is written again."""
    left = tmp_path / ".s.csv.06699805.csv"
    left.write_text("850 KB of an interrupted submission")
    old = time.time() - 3600
    os.utime(left, (old, old))
    assert remove_stale_temporaries(tmp_path) == []
    with atomic_path(tmp_path / "other.csv") as tmp:
        tmp.write_text("x")
    assert left.exists()
    with atomic_path(tmp_path / "s.csv") as tmp:
        tmp.write_text("id,predicted\n")
    assert not left.exists() and (tmp_path / "s.csv").is_file()


def test_what_a_killed_writer_left_is_removed_by_the_next_write(tmp_path):
    code = (
        "import sys, time\n"
        "from phaseseg.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('partial'); print(tmp, flush=True); time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "s.csv")], stdout=subprocess.PIPE, text=True
    )
    left = Path(proc.stdout.readline().strip())
    assert remove_stale_temporaries(tmp_path, before=time.time() + 60) == []  # alive: locked
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert left.exists()  # kill -9: nothing could clean up
    assert remove_stale_temporaries(tmp_path, before=time.time() + 60) == [left]


# --------------------------------------------------------------------------- Ctrl-C


def run_until(args, ready, tmp_path, sig=signal.SIGINT, ignore_sigint=True, timeout=180):
    """Start ``phaseseg args``, send ``sig`` once ``ready()`` holds; return (code, stderr).

    ``ignore_sigint``: start it with SIGINT ignored, as a shell does for a background job."""
    reset = signal.SIG_IGN if ignore_sigint else signal.SIG_DFL
    proc = subprocess.Popen(
        [*PHASESEG, *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, reset),
    )
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before the signal: {proc.stderr.read()}"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("ignore_sigint", [True, False])
def test_ctrl_c_during_predict_removes_its_temporaries(tmp_path, ignore_sigint):
    images = write_images(tmp_path / "imgs", 300)
    sub = tmp_path / "out" / "s.csv"
    sub.parent.mkdir()
    sub.write_text("id,predicted\nold,1 2\n")
    args = ["predict", str(images), "--submission", str(sub), "--labels-dir", "labels"]
    code, err = run_until(
        args, lambda: temporaries(tmp_path / "out"), tmp_path, ignore_sigint=ignore_sigint
    )
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "phaseseg predict: interrupted"
    assert err.count("interrupted") == 1 and "Traceback" not in err
    assert sub.read_text() == "id,predicted\nold,1 2\n"
    assert temporaries(tmp_path) == []


def test_sigterm_during_predict_is_cleaned_up_too(tmp_path):
    images = write_images(tmp_path / "imgs", 300)
    args = ["predict", str(images), "--submission", "s.csv"]
    code, err = run_until(args, lambda: temporaries(tmp_path), tmp_path, sig=signal.SIGTERM)
    assert code == 143 and err.strip().splitlines()[-1] == "phaseseg predict: interrupted (SIGTERM)"
    assert temporaries(tmp_path) == [] and not (tmp_path / "s.csv").exists()


def test_ctrl_c_during_measure(tmp_path):
    images = write_images(tmp_path / "imgs", 300)
    out = tmp_path / "out"
    code, err = run_until(
        ["measure", str(images), "--out", str(out)], lambda: temporaries(out), tmp_path
    )
    assert code == 130 and err.strip().splitlines()[-1] == "phaseseg measure: interrupted"
    assert temporaries(tmp_path) == [] and not (out / "cells.csv").exists()


def test_ctrl_c_during_make_dataset(tmp_path):
    images = write_images(tmp_path / "imgs", 400)
    labels = tmp_path / "labels"
    labels.mkdir()
    lab = np.zeros((192, 192), np.uint16)
    lab[10:30, 10:30] = 1
    Image.fromarray(lab).save(labels / "img000.png")
    for i in range(1, 400):
        (labels / f"img{i:03d}.png").symlink_to("img000.png")
    args = ["make-dataset", str(images), "--labels", str(labels), "--cell-type", "astro"]
    code, err = run_until([*args, "--out", "data"], lambda: temporaries(tmp_path), tmp_path)
    assert code == 130 and err.strip().splitlines()[-1] == "phaseseg make-dataset: interrupted"
    assert temporaries(tmp_path) == [] and not (tmp_path / "data").exists()


def test_ctrl_c_during_eda(tmp_path):
    data = make_dataset(tmp_path / "data", n_images=300)
    out = tmp_path / "report"
    code, err = run_until(["eda", str(data), "--out", str(out)], out.exists, tmp_path)
    assert code == 130 and err.strip().splitlines()[-1] == "phaseseg eda: interrupted"
    assert not out.exists()


def test_ctrl_c_during_train_saves_the_state_and_leaves_no_temporaries(tmp_path):
    data = make_dataset(tmp_path / "data")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        '{"steps": 400, "batch_size": 2, "crop_size": 64, "eval_every": 400, '
        '"checkpoint_every": 5, "warmup_steps": 2, '
        '"net": {"channels": [4, 8, 16], "convs_per_block": 1, "n_cell_types": 3}}'
    )
    out = tmp_path / "m.pt"
    state = tmp_path / "m.pt.state.pt"
    args = ["train", str(data), "--out", str(out), "--config", str(cfg)]
    code, err = run_until(args, state.exists, tmp_path)
    assert code == 130 and err.strip().splitlines()[-1] == "phaseseg train: interrupted"
    assert "continue with --resume" in err and state.exists()
    assert temporaries(tmp_path) == [] and not (tmp_path / "m.config.json").exists()


# --------------------------------------------------------------------------- plain output


ESCAPES = re.compile(r"[\r\x1b]")


def test_output_into_a_file_has_no_bars_and_whole_warning_lines(tmp_path):
    images = write_images(tmp_path / "imgs", 3, size=96, rgb=True)
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        subprocess.run(
            [*PHASESEG, "predict", str(images), "--submission", "s.csv"],
            cwd=tmp_path,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=True,
        )
    text = log.read_text()
    assert not ESCAPES.search(text) and "it/s" not in text and "img/s" not in text
    warnings = [line for line in text.splitlines() if "RGB image converted" in line]
    assert len(warnings) == 3 and all(w.startswith("WARNING: ") for w in warnings)


def test_a_training_log_file_holds_plain_progress_lines(tmp_path):
    data = make_dataset(tmp_path / "data")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        '{"steps": 40, "batch_size": 2, "crop_size": 64, "eval_every": 20, '
        '"checkpoint_every": 20, "warmup_steps": 2, '
        '"net": {"channels": [4, 8, 16], "convs_per_block": 1, "n_cell_types": 3}}'
    )
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        subprocess.run(
            [*PHASESEG, "train", str(data), "--out", "m.pt", "--config", str(cfg)],
            cwd=tmp_path,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=True,
        )
    text = log.read_text()
    assert not ESCAPES.search(text)
    progress = [line for line in text.splitlines() if line.startswith("INFO: train: step ")]
    assert len(progress) == 20 and progress[-1].startswith("INFO: train: step 40/40, loss ")


def test_on_a_terminal_log_lines_print_above_the_bar(tmp_path):
    """With a bar on a terminal, a warning starts its own line (tqdm.write), not after a bar."""
    pty = pytest.importorskip("pty")
    termios = pytest.importorskip("termios")
    import fcntl
    import struct

    images = write_images(tmp_path / "imgs", 4, size=96, rgb=True)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    proc = subprocess.Popen(
        [*PHASESEG, "predict", str(images), "--submission", "s.csv"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0 and "predict:" in text  # the bar was drawn
    assert text.count("RGB image converted") == 4
    assert not re.search(r"[^\r\n]WARNING: ", text), text

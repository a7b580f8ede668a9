"""Microscope formats: stacks frame by frame, pixel size and frame times from the metadata.

Test files are made in tmp dirs with tifffile (and bioio's / pylibCZIrw's writers when the
optional ``phaseseg[formats]`` is installed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from phaseseg import io
from phaseseg.analysis.measure import frame_time
from phaseseg.cli import main
from phaseseg.io import microscopy
from phaseseg.io.formats import write_labels

LIVECELL = Path(__file__).resolve().parents[2] / "shared" / "data" / "livecell_shsy5y_timelapse"
HAS_BIOIO = microscopy._bioio_available()
needs_bioio = pytest.mark.skipif(not HAS_BIOIO, reason="bioio not installed (phaseseg[formats])")


def _ome_stack(path: Path, n_t: int = 3, shape=(40, 50), channels=("GFP", "Phase"), **meta):
    """A TCYX OME-TIFF: channel 1 is the phase image, planes dated 0, 1.5, 3 h."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (n_t, len(channels), *shape), dtype=np.uint8)
    metadata = {
        "axes": "TCYX",
        "PhysicalSizeX": 0.65,
        "PhysicalSizeY": 0.65,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeYUnit": "µm",
        "Channel": {"Name": list(channels)},
        "Plane": {
            "DeltaT": [1.5 * t for t in range(n_t) for _ in channels],
            "DeltaTUnit": ["h"] * (n_t * len(channels)),
        },
        **meta,
    }
    tifffile.imwrite(path, data, metadata=metadata)
    return data


@pytest.fixture(params=["tifffile", "bioio"])
def reader(request, monkeypatch):
    """Read OME-TIFF with tifffile (the base install) and through bioio (the extra)."""
    if request.param == "bioio":
        if not HAS_BIOIO:
            pytest.skip("bioio not installed (phaseseg[formats])")
    else:
        monkeypatch.setattr(microscopy, "_bioio_available", lambda: False)
    return request.param


def test_image_ids():
    assert io.image_id("a/x.ome.tif") == "x"
    assert io.image_id("x.OME.TIFF") == "x"
    assert io.image_id("well.ome.zarr") == "well"
    assert io.image_id("plate.zarr") == "plate"
    assert io.image_id("a.b.png") == "a.b"
    assert io.image_id("SHSY5Y_Phase_B10_1_00d04h00m_1.tif") == "SHSY5Y_Phase_B10_1_00d04h00m_1"


def test_ome_tiff_frames_times_pixel_size_and_phase_channel(tmp_path, reader, caplog):
    data = _ome_stack(tmp_path / "x.ome.tif")
    infos = io.frame_infos(tmp_path / "x.ome.tif")
    assert [f.image_id for f in infos] == ["x_t000", "x_t001", "x_t002"]
    assert [f.time_h for f in infos] == [0.0, 1.5, 3.0]
    assert all(f.pixel_size == pytest.approx(0.65) for f in infos)
    assert [f.index for f in infos] == [{"T": 0}, {"T": 1}, {"T": 2}]
    with caplog.at_level(logging.WARNING):
        frames = list(io.iter_frames(tmp_path / "x.ome.tif"))
    assert "2 channels (GFP, Phase); segmenting channel 1" in caplog.text
    for t, (info, image) in enumerate(frames):
        assert info == infos[t]
        np.testing.assert_array_equal(image, data[t, 1])  # the channel named Phase


def test_ome_units_and_time_increment(tmp_path, reader):
    tifffile.imwrite(
        tmp_path / "y.ome.tif",
        np.zeros((4, 30, 20), np.uint16),
        metadata={
            "axes": "TYX",
            "PhysicalSizeX": 650,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 650,
            "PhysicalSizeYUnit": "nm",
            "TimeIncrement": 30,
            "TimeIncrementUnit": "min",
        },
    )
    infos = io.frame_infos(tmp_path / "y.ome.tif")
    assert [f.time_h for f in infos] == [0.0, 0.5, 1.0, 1.5]
    assert infos[0].pixel_size == pytest.approx(0.65)
    assert infos[0].shape == (30, 20)


def test_single_plane_ome_tiff_keeps_the_file_id(tmp_path, reader):
    img = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    tifffile.imwrite(tmp_path / "one.ome.tif", img, metadata={"PhysicalSizeX": 0.5})
    (info,) = io.frame_infos(tmp_path / "one.ome.tif")
    assert info.image_id == "one" and not info.in_stack and info.time_h is None
    np.testing.assert_array_equal(io.read_image(tmp_path / "one.ome.tif"), img)


def test_anisotropic_pixels_give_no_pixel_size(tmp_path, caplog):
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        np.zeros((2, 8, 8), np.uint8),
        metadata={"axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 1.0},
    )
    assert io.frame_infos(tmp_path / "a.ome.tif")[0].pixel_size is None
    with caplog.at_level(logging.WARNING):
        list(io.iter_frames(tmp_path / "a.ome.tif"))
    assert "not square" in caplog.text


def test_multi_page_tiff_is_read_frame_by_frame(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, (3, 52, 70), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", data, photometric="minisblack")
    with pytest.raises(io.PhasesegInputError, match=r"stack.tif: holds 3 frames"):
        io.read_image(tmp_path / "stack.tif")
    frames = list(io.iter_frames(tmp_path / "stack.tif"))
    assert [f.image_id for f, _ in frames] == ["stack_t000", "stack_t001", "stack_t002"]
    assert all(f.time_h is None and f.pixel_size is None for f, _ in frames)
    for t, (_, image) in enumerate(frames):
        np.testing.assert_array_equal(image, data[t])
    # pages written one at a time are frames too
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for t in range(3):
            tif.write(data[t])
    images = [image for _, image in io.iter_frames(tmp_path / "pages.tif")]
    np.testing.assert_array_equal(np.stack(images), data)


def test_imagej_hyperstack_calibration_and_frame_interval(tmp_path):
    data = np.random.default_rng(2).integers(0, 4000, (2, 3, 24, 32), dtype=np.uint16)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.325, 1 / 0.325),
        metadata={"axes": "TZYX", "unit": "um", "finterval": 900},
    )
    infos = io.frame_infos(tmp_path / "ij.tif")
    assert [f.image_id for f in infos][:4] == [
        "ij_t000_z000",
        "ij_t000_z001",
        "ij_t000_z002",
        "ij_t001_z000",
    ]
    assert [f.time_h for f in infos] == [0, 0, 0, 0.25, 0.25, 0.25]
    assert infos[0].pixel_size == pytest.approx(0.325)
    (_, last), *_ = list(io.iter_frames(tmp_path / "ij.tif"))[::-1]
    assert last.dtype == np.uint8 and last.shape == (24, 32)


@pytest.mark.parametrize(
    ("unit", "expected"),
    [("CENTIMETER", 0.5), ("INCH", None), ("NONE", None)],
)
def test_plain_tiff_resolution_tags(tmp_path, unit, expected):
    # 20,000 pixels per cm = 0.5 µm per pixel; inch resolutions are screen dpi, not taken
    tifffile.imwrite(
        tmp_path / "r.tif",
        np.zeros((10, 10), np.uint8),
        resolution=(20_000, 20_000),
        resolutionunit=unit,
    )
    assert io.frame_infos(tmp_path / "r.tif")[0].pixel_size == expected


def test_livecell_tiff_has_no_pixel_size():
    if not LIVECELL.is_dir():
        pytest.skip("real data not found at ../shared/data/livecell_shsy5y_timelapse")
    (info,) = io.frame_infos(sorted(LIVECELL.glob("*.tif"))[0])
    assert info.shape == (520, 704) and info.pixel_size is None and not info.in_stack


def test_frame_time_from_ids_metadata_or_file_name(tmp_path):
    from phaseseg.analysis.timecourse import compile_time_pattern

    f = io.FrameInfo(tmp_path / "x.ome.tif", "x_t002", (8, 8), {"T": 2}, 3.0, None)
    assert frame_time(f).well == "x" and frame_time(f).elapsed_h == 3.0
    # the frame index as hours, when the user says so
    tp = frame_time(f, compile_time_pattern(r"_t(?P<hours>\d+)$"))
    assert tp.elapsed_h == 2.0
    # a LIVECell-named stack: its well, frame times counted from the name's time
    name = "SHSY5Y_Phase_B10_1_01d00h00m_1.ome.tif"
    g = io.FrameInfo(tmp_path / name, "SHSY5Y_Phase_B10_1_01d00h00m_1_t001", (8, 8), {"T": 1}, 4.0)
    assert frame_time(g).well == "B10" and frame_time(g).elapsed_h == 28.0
    # a single image: its name only
    h = io.FrameInfo(
        tmp_path / "SHSY5Y_Phase_A1_1_00d04h00m_1.ome.tif", "SHSY5Y_Phase_A1_1_00d04h00m_1", (8, 8)
    )
    assert frame_time(h).elapsed_h == 4.0
    assert frame_time(io.FrameInfo(tmp_path / "x_t1.tif", "x", (8, 8), {"T": 1})) is None


def test_no_images_found_lists_the_accepted_endings(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(io.PhasesegInputError, match="no images found") as e:
        io.find_image_set([tmp_path])
    for suffix in (".png", ".tif", ".tiff", ".jpg", ".czi", ".nd2", ".lif", ".zarr"):
        assert suffix in str(e.value)


def test_find_images_takes_ome_zarr_folders_and_ome_ids(tmp_path):
    (tmp_path / "plate.ome.zarr").mkdir()
    (tmp_path / "plate.ome.zarr" / "zarr.json").write_text("{}")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    found = io.find_image_set([tmp_path])
    assert [p.name for p in found] == ["a.png", "plate.ome.zarr"]
    assert io.find_images([tmp_path / "plate.ome.zarr"]) == [tmp_path / "plate.ome.zarr"]
    tifffile.imwrite(tmp_path / "a.ome.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(io.PhasesegInputError, match="same image id 'a'"):
        io.find_image_set([tmp_path])


def test_microscope_formats_without_bioio_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(microscopy, "_bioio_available", lambda: False)
    (tmp_path / "x.czi").write_bytes(b"ZISRAWFILE" + bytes(100))
    with pytest.raises(
        io.PhasesegInputError,
        match=r"x.czi: reading CZI files needs bioio: pip install 'phaseseg\[formats\]'",
    ):
        io.read_image(tmp_path / "x.czi")
    # OME-TIFF does not need it
    _ome_stack(tmp_path / "s.ome.tif")
    assert len(io.frame_infos(tmp_path / "s.ome.tif")) == 3


@needs_bioio
@pytest.mark.parametrize("name", ["bad.nd2", "bad.lif", "bad.czi"])
def test_corrupt_microscope_file_is_one_line_naming_it(tmp_path, name):
    (tmp_path / name).write_bytes(b"not a microscope file" * 10)
    with pytest.raises(io.PhasesegInputError, match=rf"{name}: not a readable image") as e:
        io.frame_infos(tmp_path / name)
    assert "\n" not in str(e.value)


@needs_bioio
def test_ome_zarr_through_bioio(tmp_path):
    from bioio_ome_zarr.writers import OMEZarrWriter

    data = np.random.default_rng(3).integers(0, 255, (3, 1, 1, 40, 50), dtype=np.uint8)
    writer = OMEZarrWriter(
        str(tmp_path / "w.ome.zarr"),
        level_shapes=data.shape,
        dtype=data.dtype,
        axes_names=["t", "c", "z", "y", "x"],
        axes_types=["time", "channel", "space", "space", "space"],
        axes_units=["hour", None, "micrometer", "micrometer", "micrometer"],
        physical_pixel_size=[2.0, 1.0, 1.0, 0.5, 0.5],
    )
    writer.write_full_volume(data)
    frames = list(io.iter_frames(tmp_path / "w.ome.zarr"))
    assert [f.image_id for f, _ in frames] == ["w_t000", "w_t001", "w_t002"]
    assert [f.time_h for f, _ in frames] == [0.0, 2.0, 4.0]
    assert frames[0][0].pixel_size == pytest.approx(0.5)
    np.testing.assert_array_equal(np.stack([im for _, im in frames]), data[:, 0, 0])


@needs_bioio
def test_czi_through_bioio(tmp_path):
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    data = np.random.default_rng(4).integers(0, 255, (2, 40, 50), dtype=np.uint8)
    with pyczi.create_czi(str(tmp_path / "c.czi"), exist_ok=True) as czi:
        for t in range(2):
            czi.write(data[t][..., None], plane={"T": t, "C": 0, "Z": 0})
        czi.write_metadata(
            document_name="c", channel_names={0: "PH"}, scale_x=0.65e-6, scale_y=0.65e-6
        )
    frames = list(io.iter_frames(tmp_path / "c.czi"))
    assert [f.image_id for f, _ in frames] == ["c_t000", "c_t001"]
    assert frames[0][0].pixel_size == pytest.approx(0.65)
    np.testing.assert_array_equal(np.stack([im for _, im in frames]), data)


# --------------------------------------------------------------------------- CLI


def _labels_for_stack(lab_dir: Path, file_id: str, n: int, shape) -> None:
    lab_dir.mkdir(exist_ok=True)
    for t in range(n):
        labels = np.zeros(shape, np.int32)
        for k in range(t + 1):
            labels[4 + 10 * k : 12 + 10 * k, 5:15] = k + 1  # 80-pixel cells, one more each frame
        write_labels(lab_dir / f"{file_id}_t{t:03d}.tif", labels)


def test_cli_measure_a_stack_takes_pixel_size_and_times_from_metadata(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    _ome_stack(tmp_path / "img" / "well3.ome.tif")
    _labels_for_stack(tmp_path / "lab", "well3", 3, (40, 50))
    out = tmp_path / "out"
    argv = ["measure", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"), "--out", str(out)]
    assert main([*argv, "--rois-dir", str(tmp_path / "rois")]) == 0
    printed = capsys.readouterr().out
    assert "3 images, 6 cells" in printed and "3 with a time point" in printed
    assert "pixel size 0.65 µm (from the images' metadata)" in printed
    images = pd.read_csv(out / "images.csv")
    assert images.image_id.tolist() == ["well3_t000", "well3_t001", "well3_t002"]
    assert images.elapsed_h.tolist() == [0, 1.5, 3] and set(images.well) == {"well3"}
    assert images.pixel_size_um.tolist() == [0.65] * 3
    cells = pd.read_csv(out / "cells.csv")
    assert cells.area_um2.to_numpy() == pytest.approx(80 * 0.65**2)
    tc = pd.read_csv(out / "timecourse.csv")
    assert tc.cells_per_image.tolist() == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "rois").iterdir()) == [
        "well3_t000.zip",
        "well3_t001.zip",
        "well3_t002.zip",
    ]
    # --pixel-size overrides the metadata
    assert main([*argv[:-1], str(tmp_path / "o2"), "--pixel-size", "2"]) == 0
    assert "pixel size 2 µm (--pixel-size)" in capsys.readouterr().out
    cells = pd.read_csv(tmp_path / "o2" / "cells.csv")
    assert cells.area_um2.to_numpy() == pytest.approx(80 * 4)


def test_cli_predict_a_multi_page_tiff_frame_by_frame(tmp_path, capsys):
    if not LIVECELL.is_dir():
        pytest.skip("real data not found at ../shared/data/livecell_shsy5y_timelapse")
    files = sorted(LIVECELL.glob("*.tif"))[:3]
    stack = np.stack([io.read_image(f)[:256, :320] for f in files])
    tifffile.imwrite(tmp_path / "lapse.tif", stack, photometric="minisblack")
    sub = tmp_path / "s.csv"
    argv = ["predict", str(tmp_path / "lapse.tif"), "--submission", str(sub)]
    assert main([*argv, "--rois-dir", str(tmp_path / "rois"), "--cell-type", "shsy5y"]) == 0
    assert "3 images" in capsys.readouterr().out
    ids = io.read_submission(sub)["id"].unique().tolist()
    assert ids == ["lapse_t000", "lapse_t001", "lapse_t002"]
    assert len(list((tmp_path / "rois").glob("lapse_t00?.zip"))) == 3


def test_cli_bad_stack_is_one_line_and_exit_status(tmp_path, capsys):
    (tmp_path / "broken.ome.tif").write_bytes(b"II*\x00garbage")
    code = main(
        ["predict", str(tmp_path / "broken.ome.tif"), "--submission", str(tmp_path / "s.csv")]
    )
    err = capsys.readouterr().err
    assert code != 0 and "broken.ome.tif: not a readable image" in err

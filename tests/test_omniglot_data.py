"""Omniglot data: sources agree, polarity, splits, the on-device episode sampler, bad input."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from metax.data import omniglot as om
from metax.data.episodes import EpisodeSpec, check_episode_spec, sample_episode, sample_episodes
from metax.data.png import load_png_folders
from metax.data.splits import alphabet_split, maml_split

SHARED = Path(__file__).parents[1].parent / "shared" / "data" / "omniglot"
NPZ = SHARED / "omniglot_105.npz"
needs_data = pytest.mark.skipif(not NPZ.is_file(), reason=f"real Omniglot not found at {NPZ}")


def test_polarity_ink_is_high_for_every_source_encoding():
    white_bool = np.array([[True, False]])
    white_01 = np.array([[1, 0]], np.uint8)
    white_255 = np.array([[255, 0]], np.uint8)
    for white in (white_bool, white_01, white_255):
        np.testing.assert_array_equal(om.ink_from_white_background(white), [[0.0, 1.0]])


@pytest.fixture(scope="module")
def real():
    if not NPZ.is_file():
        pytest.skip(f"real Omniglot not found at {NPZ}")
    with np.load(NPZ) as f:
        return {
            k: f[k] for k in ("images", "char_id", "alphabet", "is_background", "alphabet_names")
        }


@needs_data
def test_npz_loads_resized_with_ink_high_and_is_cached(real, tmp_path, monkeypatch):
    monkeypatch.setenv("METAX_CACHE", str(tmp_path / "cache"))
    data = om.load_npz(NPZ)
    assert data.images.shape == (1623, 20, 28, 28) and data.images.dtype == np.uint8
    assert data.is_background.sum() == 964
    # Ink is sparse: most pixels of a character are background (0).
    assert np.median(data.images) == 0 and data.images.max() == 255
    ink_fraction = 1 - real["images"][:50].mean()
    np.testing.assert_allclose(data.images[:50].mean() / 255, ink_fraction, rtol=0.1)
    cached = list((tmp_path / "cache").glob("omniglot-*.npz"))
    assert len(cached) == 1
    again = om.load_npz(NPZ)
    np.testing.assert_array_equal(again.images, data.images)


@needs_data
def test_png_zip_equals_npz_pixel_for_pixel(real):
    zip1 = SHARED / "images_background_small1.zip"
    data = load_png_folders(zip1)
    assert data.images.shape == (136, 20, 28, 28)
    names = [data.alphabet_names[a] for a in data.alphabet]
    assert set(names) == {"Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"}
    # Map each PNG character to its npz row via the id in its file names: Greek starts at 394.
    greek = [i for i, n in enumerate(names) if n == "Greek"]
    npz = om.load_npz(NPZ)
    np.testing.assert_array_equal(data.images[greek[0]], npz.images[393])


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _fake_tree(root, chars=3, drawers=4, size=(20, 20), alphabet="Alpha"):
    rng = np.random.default_rng(0)
    for c in range(1, chars + 1):
        for d in range(1, drawers + 1):
            img = np.where(rng.random(size) < 0.1, 0, 255).astype(np.uint8)
            _write_png(root / alphabet / f"character{c:02d}" / f"{c:04d}_{d:02d}.png", img)


def test_png_folder_layout_and_its_errors(tmp_path):
    root = tmp_path / "tree"
    _fake_tree(root)
    data = load_png_folders(root, size=10)
    assert data.images.shape == (3, 4, 10, 10)
    assert data.is_background.all()

    # the original layout: characters under images_evaluation* are Lake's evaluation set
    _fake_tree(tmp_path / "original" / "images_background", chars=2)
    _fake_tree(tmp_path / "original" / "images_evaluation", chars=1, alphabet="Omega")
    both = load_png_folders(tmp_path / "original", size=10, cache_dir=tmp_path / "cache")
    assert both.is_background.tolist() == [True, True, False]
    assert alphabet_split(both).test.tolist() == [2]

    with pytest.raises(FileNotFoundError, match="no Omniglot folder or zip"):
        load_png_folders(tmp_path / "missing")
    (tmp_path / "archive.tar.gz").write_bytes(b"0123456789")
    with pytest.raises(ValueError, match=r"archive\.tar\.gz is neither a folder nor a zip"):
        load_png_folders(tmp_path / "archive.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        FileNotFoundError,
        match=r"holds no Omniglot images; expected <Alphabet>/characterNN/\*\.png",
    ):
        load_png_folders(tmp_path / "empty")

    corrupt = tmp_path / "corrupt"
    _fake_tree(corrupt)
    bad = corrupt / "Alpha" / "character02" / "0002_03.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=f"corrupt or unreadable PNG: {bad}"):
        load_png_folders(corrupt)

    mixed = tmp_path / "mixed"
    _fake_tree(mixed)
    odd = mixed / "Alpha" / "character03" / "0003_02.png"
    _write_png(odd, np.zeros((30, 20), np.uint8))
    with pytest.raises(ValueError, match=f"mixed image sizes: {odd} is \\(20, 30\\)"):
        load_png_folders(mixed)

    ragged = tmp_path / "ragged"
    _fake_tree(ragged)
    (ragged / "Alpha" / "character01" / "0001_04.png").unlink()
    with pytest.raises(ValueError, match="same number of drawings"):
        load_png_folders(ragged)


def test_npz_with_wrong_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, pictures=np.zeros((2, 2, 5, 5), bool))
    with pytest.raises(ValueError, match=r"lacks the keys \['images'"):
        om.load_npz(path)
    with pytest.raises(FileNotFoundError, match="no Omniglot npz"):
        om.load_npz(tmp_path / "nope.npz")
    good = {
        "images": np.ones((2, 2, 5, 5), bool),
        "char_id": np.arange(2),
        "alphabet": np.zeros(2, int),
        "alphabet_names": np.asarray(["A"]),
        "is_background": np.ones(2, bool),
    }
    for key, value, match in [
        (
            "alphabet",
            np.zeros(3, int),
            r"alphabet must hold one value per class \(2\), got shape \(3,\)",
        ),
        (
            "alphabet",
            np.asarray([0, 5]),
            r"alphabet indexes alphabet_names \(1 names\), got values 0\.\.5",
        ),
    ]:
        np.savez(path, **{**good, key: value})
        with pytest.raises(ValueError, match=match):
            om.load_npz(path, cache_dir=tmp_path)
    with open(path, "wb") as f:
        np.save(f, good["images"])
    with pytest.raises(ValueError, match=r"a single \.npy array, not an npz archive"):
        om.load_npz(path, cache_dir=tmp_path)


def test_lake_run_writer_refuses_a_bad_npz_with_the_loaders_message(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from lake_runs import write_lake_runs

    path = tmp_path / "bad.npz"
    np.savez(
        path,
        images=np.ones((2, 2, 5, 5), bool),
        char_id=np.arange(2),
        alphabet=np.asarray([0, 3]),
        alphabet_names=np.asarray(["A"]),
        is_background=np.zeros(2, bool),
    )
    with pytest.raises(
        ValueError, match=r"alphabet indexes alphabet_names \(1 names\), got values 0\.\.3"
    ):
        write_lake_runs(path, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@needs_data
def test_runs_like_lake2015_are_found_in_the_npz_with_lakes_alphabets_and_drawers(
    tmp_path, monkeypatch
):
    """The writer's Lake-like layout, read back by pixel match: each of Lake et al.'s 10
    alphabets in two runs, one drawer of the first 8 for training and another for test."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from lake_runs import LAKE2015_ALPHABETS, identify_runs, write_lake_runs

    alphabets = write_lake_runs(NPZ, tmp_path, seed=3, like_lake2015=True)
    found = identify_runs(NPZ, tmp_path)
    assert alphabets == [name for name in LAKE2015_ALPHABETS for _ in range(2)]
    assert [run["alphabet"] for run in found.values()] == [[name] for name in alphabets]
    for run in found.values():
        assert run["not_found"] == 0
        (train,), (test,) = run["training_drawers"], run["test_drawers"]
        assert train != test and max(train, test) < 8, run
    Image.fromarray(np.zeros((105, 105), np.uint8)).save(tmp_path / "run02" / "test" / "item01.png")
    assert identify_runs(NPZ, tmp_path)["run02"]["not_found"] == 1


@needs_data
def test_tfds_path_with_mock_data_on_real_images(real, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    classes = [0, 1, 500]
    examples = [
        {
            "image": np.repeat(
                real["images"][c, d].astype(np.uint8)[..., None], 3, -1
            ),  # 1 = white
            "label": int(real["char_id"][c]) - 1,
            "alphabet": int(real["alphabet"][c]),
            "alphabet_char_id": 0,
        }
        for c in classes
        for d in range(20)
    ]
    seen = {}

    def as_data_source(self, split, **kwargs):
        seen["split"] = split
        return examples

    monkeypatch.setattr(
        om, "_network_reachable", lambda *a, **k: True
    )  # mocked download is a no-op
    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        data = om.load_tfds("train")
    assert seen["split"] == "train"
    assert data.images.shape == (3, 20, 28, 28)
    np.testing.assert_array_equal(data.char_id, [real["char_id"][c] for c in classes])
    # TFDS's alphabet feature is an unnamed ClassLabel(50): indices kept, names are "0".."49".
    assert len(data.alphabet_names) == 50 and data.is_background.all()
    np.testing.assert_array_equal(data.alphabet, [real["alphabet"][c] for c in classes])
    npz = om.load_npz(NPZ)
    np.testing.assert_array_equal(data.images, npz.images[classes])  # same pixels, same polarity


def test_tfds_offline_and_unprepared_fails_at_once(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    import time

    monkeypatch.setattr(om, "_network_reachable", lambda *a, **k: False)
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"not prepared .* network is unreachable"):
        om.load_tfds("train", data_dir=tmp_path)
    assert time.perf_counter() - t0 < 30
    with pytest.raises(ValueError, match="unknown Omniglot TFDS split 'dev'"):
        om.load_tfds("dev")


def test_maml_split_sizes_and_disjointness():
    split = maml_split(1623)
    assert (len(split.train), len(split.val), len(split.test)) == (1100, 100, 423)
    everything = np.concatenate([split.train, split.val, split.test])
    assert len(np.unique(everything)) == 1623
    split.check_disjoint()


@needs_data
def test_alphabet_split_shares_no_alphabet():
    data = om.load_npz(NPZ)
    names = sorted({data.alphabet_names[a] for a in np.unique(data.alphabet[data.is_background])})
    split = alphabet_split(data, val_alphabets=names[:5])
    parts = [set(data.alphabet[getattr(split, p)]) for p in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(split.test) == 659 and len(parts[2]) == 20
    with pytest.raises(ValueError, match="unknown alphabets"):
        alphabet_split(data, test_alphabets=["Klingon"])


def _labelled_pool(classes=12, drawers=20):
    """Pixel (0, 0) encodes the class, pixel (0, 1) the drawer; a corner mark shows rotation."""
    pool = np.zeros((classes, drawers, 28, 28), np.uint8)
    for c in range(classes):
        for d in range(drawers):
            pool[c, d, 0, 0] = c + 1
            pool[c, d, 0, 1] = d + 1
            pool[c, d, 0, 27] = 0
    return jnp.asarray(pool)


def test_episode_shapes_labels_distinct_classes_and_disjoint_support_query():
    pool = _labelled_pool()
    spec = EpisodeSpec(ways=5, shots=2, queries=3)
    tasks = sample_episodes(jax.random.key(0), pool, spec, 50)
    assert tasks.support["x"].shape == (50, 10, 28, 28, 1) and tasks.query["x"].shape == (
        50,
        15,
        28,
        28,
        1,
    )
    orders = set()
    for t in range(50):
        sx = np.rint(np.asarray(tasks.support["x"][t, :, 0, :2, 0]) * 255).astype(int)
        qx = np.rint(np.asarray(tasks.query["x"][t, :, 0, :2, 0]) * 255).astype(int)
        sy, qy = np.asarray(tasks.support["y"][t]), np.asarray(tasks.query["y"][t])
        classes = [set(sx[sy == k, 0]) for k in range(5)]
        assert all(len(c) == 1 for c in classes)  # one class per label
        assert len(set.union(*classes)) == 5  # classes distinct in an episode
        assert all(set(qx[qy == k, 0]) == classes[k] for k in range(5))  # same label map
        for k in range(5):
            s_items = {tuple(r) for r in sx[sy == k]}
            q_items = {tuple(r) for r in qx[qy == k]}
            assert not s_items & q_items  # support and query disjoint
            assert len(s_items) == 2 and len(q_items) == 3
        orders.add(tuple(min(c) for c in classes))
    assert len(orders) > 40  # label permutations vary


def test_rotations_only_when_asked():
    pool = np.zeros((8, 20, 28, 28), np.uint8)
    pool[:, :, 0, 0] = 255  # a mark in the top-left corner
    pool = jnp.asarray(pool)
    corners = lambda x: np.asarray(x[..., [0, 0, -1, -1], [0, -1, 0, -1], 0])  # noqa: E731
    plain = sample_episodes(jax.random.key(1), pool, EpisodeSpec(5, 1, 1), 20)
    assert np.all(corners(plain.support["x"])[..., 0] == 1.0)
    rotated = sample_episodes(jax.random.key(1), pool, EpisodeSpec(5, 1, 1, rotate=True), 20)
    where = np.argmax(corners(rotated.support["x"]), axis=-1)
    assert len(np.unique(where)) == 4  # all four rotations occur


def test_affine_warp_is_exact_for_the_identity_a_quarter_turn_and_a_one_pixel_shift():
    from metax.data.distort import affine_warp

    image = jax.random.uniform(jax.random.key(0), (28, 28))
    eye, zero = jnp.eye(2), jnp.zeros(2)
    np.testing.assert_array_equal(affine_warp(image, eye, zero), image)
    turn = jnp.array([[0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(affine_warp(image, turn, zero), jnp.rot90(image), atol=1e-6)
    shifted = affine_warp(image, eye, jnp.array([0.0, 1.0]))  # one column to the right
    np.testing.assert_allclose(shifted[:, 1:], image[:, :-1], atol=1e-6)
    np.testing.assert_array_equal(shifted[:, 0], 0.0)  # no ink from outside the image
    half = affine_warp(image, 2 * eye, zero)  # scaled about the centre: corners leave
    np.testing.assert_allclose(half[13:15, 13:15], image[13:15, 13:15], atol=0.3)
    assert float(jnp.abs(half - image).max()) > 0.5


@pytest.mark.parametrize(
    "option, message",
    [
        ({"rotation": -1.0}, "rotation must be a finite number >= 0, got -1.0"),
        ({"translation": float("nan")}, "translation must be a finite number >= 0, got nan"),
        (
            {"scale": (1.2, 0.8)},
            r"scale must be \(low, high\) with 0 < low <= high, got \(1.2, 0.8\)",
        ),
        ({"probability": 1.5}, r"probability must be in \[0, 1\], got 1.5"),
    ],
)
def test_random_affine_refuses_bad_ranges_naming_them(option, message):
    from metax.data.distort import random_affine

    with pytest.raises(ValueError, match=message):
        random_affine(jax.random.key(0), jnp.zeros((2, 8, 8)), **option)


def test_distorted_episodes_keep_classes_drawers_and_labels_and_warp_each_image_anew():
    """The same key with and without ``distort``: the same labels, each image moved by its
    own affine map (ink kept within the scalings' bounds)."""
    pool = np.zeros((12, 20, 28, 28), np.uint8)
    pool[:, :, 9:19, 9:19] = 255  # a centred square of ink: its moves are measurable
    pool = jnp.asarray(pool)
    spec = EpisodeSpec(5, 2, 3, rotate=True)
    key = jax.random.key(3)
    plain = sample_episode(key, pool, spec)
    warped = jax.jit(lambda k: sample_episode(k, pool, spec._replace(distort=True)))(key)
    again = sample_episode(key, pool, spec._replace(distort=True))
    np.testing.assert_allclose(warped.query["x"], again.query["x"], atol=1e-6)  # keyed
    for part in ("support", "query"):
        (w, p) = getattr(warped, part), getattr(plain, part)
        np.testing.assert_array_equal(w["y"], p["y"])
        x, x0 = np.asarray(w["x"])[..., 0], np.asarray(p["x"])[..., 0]
        moved = np.abs(x - x0).reshape(len(x), -1).max(1) > 0.1
        assert 0.6 < moved.mean() <= 1.0, moved  # all 4 components off: 1 image in 16
        ink = x.sum((1, 2)) / x0.sum((1, 2))
        assert np.all((ink > 0.6) & (ink < 1.5)), ink  # areas 0.64-1.44 (and shears) kept
    assert len({tuple(np.round(i.ravel()[::37], 3)) for i in np.asarray(warped.query["x"])}) > 10


def test_only_meta_training_episodes_are_distorted():
    from metax.train.omniglot import Omniglot, OmniglotConfig

    family = Omniglot(OmniglotConfig(data="omniglot.npz", distortion="affine"))
    assert family.train_spec.distort and not family.eval_spec.distort
    assert not Omniglot(OmniglotConfig(data="omniglot.npz")).train_spec.distort
    with pytest.raises(ValueError, match="distortion must be one of none, affine; got 'affin'"):
        OmniglotConfig(data="omniglot.npz", distortion="affin")


def test_classes_drawers_and_labels_are_drawn_uniformly():
    """Pearson chi-square of class, drawer and first-label counts over 4,000 episodes."""
    pool = _labelled_pool()  # 12 classes x 20 drawers, marked by (class + 1, drawer + 1)
    t = sample_episodes(jax.random.key(7), pool, EpisodeSpec(5, 1, 1), 4000)
    marks = np.rint(np.asarray(t.support["x"][:, :, 0, :2, 0]) * 255).astype(int) - 1
    classes, drawers = marks[..., 0], marks[..., 1]

    def chi2(counts):
        expected = counts.sum() / len(counts)
        return float(((counts - expected) ** 2 / expected).sum())

    # 99.9% quantiles of chi-square with 11 and 19 degrees of freedom: 31.3 and 43.8.
    assert chi2(np.bincount(classes.ravel(), minlength=12)) < 31.3
    assert chi2(np.bincount(drawers.ravel(), minlength=20)) < 43.8
    assert chi2(np.bincount(classes[:, 0], minlength=12)) < 31.3  # which class gets label 0


@pytest.mark.parametrize(
    "spec, match",
    [
        (EpisodeSpec(13, 1, 1), "ways=13 is more than the 12 classes"),
        (EpisodeSpec(5, 10, 11), r"shots \+ queries = 10 \+ 11 = 21 is more than the 20 examples"),
        (EpisodeSpec(0, 1, 1), "ways must be a positive integer, got 0"),
    ],
)
def test_impossible_episodes_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        check_episode_spec(spec, 12, 20)


ALPHABET_OF_CLASS = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2])  # 3, 5 and 4 characters


@pytest.mark.parametrize("rotate", [False, True])
def test_within_alphabet_episodes_share_one_alphabet_and_skip_small_alphabets(rotate):
    """Every episode's classes are distinct characters of one alphabet; alphabet 0 (3 < 4
    characters) is never drawn, the others about equally; rotations only when asked."""
    pool = _labelled_pool()
    spec = EpisodeSpec(4, 1, 1, rotate=rotate, within_alphabet=True)
    t = sample_episodes(jax.random.key(3), pool, spec, 400, alphabet=ALPHABET_OF_CLASS)
    x = np.asarray(t.support["x"][..., 0])  # [tasks, ways, 28, 28]
    # pixel (0, 0) holds the class mark; a rotation moves it to another corner
    corner = np.stack([x[..., 0, 0], x[..., 0, -1], x[..., -1, -1], x[..., -1, 0]], -1)
    marks = np.rint(corner.max(-1) * 255).astype(int) - 1
    alphabets = ALPHABET_OF_CLASS[marks]  # [tasks, ways]
    assert np.all(alphabets == alphabets[:, :1])  # one alphabet per episode
    assert all(len(set(m)) == 4 for m in marks)  # distinct characters, even when rotated
    drawn = np.bincount(alphabets[:, 0], minlength=3)
    assert drawn[0] == 0 and 160 < drawn[1] < 240, drawn
    rotations = np.unique(np.argmax(corner, -1))
    assert len(rotations) == (4 if rotate else 1), rotations


def test_within_alphabet_error_names_the_largest_alphabet():
    spec = EpisodeSpec(6, 1, 1, within_alphabet=True)
    names = ("Alpha", "Beta", "Gamma")
    with pytest.raises(
        ValueError,
        match="ways=6 is more than the largest alphabet of the pool "
        "has classes: Beta, 5 characters",
    ):
        check_episode_spec(spec, 12, 20, alphabet=ALPHABET_OF_CLASS, alphabet_names=names)
    check_episode_spec(spec._replace(ways=5), 12, 20, alphabet=ALPHABET_OF_CLASS)
    with pytest.raises(ValueError, match="need the alphabet of each class"):
        check_episode_spec(spec, 12, 20)


def test_episode_sampling_is_one_program():
    import chex

    pool = _labelled_pool()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def draw(key):
        return sample_episode(key, pool, EpisodeSpec(5, 1, 2, rotate=True))

    for i in range(3):
        draw(jax.random.key(i))

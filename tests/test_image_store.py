import numpy as np
from PIL import Image

from unlearnable.data import manifest as mf
from unlearnable.data.image_store import build_image_store, load_square, open_image_store
from unlearnable.data.sources import read_dataset
from unlearnable.data.splits import SplitConfig, assign_split


def test_store_matches_decoded_images(shapes_root, tmp_path):
    rows, _ = read_dataset(shapes_root)
    df = mf.build_manifest(rows, assign_split(rows["image_id"].tolist(), SplitConfig(val=5, test=5))).to_pandas()
    out = build_image_store(df, shapes_root, tmp_path / "store.npy", 16)
    arr = open_image_store(out)
    assert arr.shape == (60, 16, 16, 3) and arr.dtype == np.uint8
    for _, r in df.drop_duplicates("image_index").sample(5, random_state=0).iterrows():
        assert np.array_equal(arr[r.image_index][0], load_square(shapes_root / r.image_path, 16))
    idx = np.array([5, 3, 4, 4, 59, 0])  # unsorted, repeated and consecutive rows
    assert np.array_equal(arr[idx], np.load(out)[idx])


def test_resize_and_center_crop_of_non_square(tmp_path):
    img = np.zeros((40, 80, 3), dtype=np.uint8)
    img[:, :20] = 255  # a white band in the left quarter, cropped away by the centre crop
    img[:, 20:60] = (10, 200, 30)
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = load_square(tmp_path / "wide.png", 20)
    assert out.shape == (20, 20, 3)
    assert np.abs(out[:, 2:-2].astype(int) - [10, 200, 30]).max() <= 2

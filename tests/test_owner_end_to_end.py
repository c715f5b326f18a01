"""bench/owner_end_to_end.py: the owner's folder it measures on holds train photos only (never one of the paper's
val or test photos, which every other real-photo number is read on), with every caption of each photo."""
import sys

from conftest import REPO
from layout_builders import flickr8k

from unlearnable.data.sources import LayoutConfig, read_dataset
from unlearnable.data.splits import SplitConfig, paper_lists

sys.path.insert(0, str(REPO / "bench"))
import owner_end_to_end  # noqa: E402


def test_the_owners_folder_holds_train_photos_only_with_all_their_captions(tmp_path):
    lists = paper_lists(SplitConfig(kind="paper", lists="flickr8k"))
    held_out = [f"{lists['test'][i]}.jpg" for i in range(3)] + [f"{lists['val'][i]}.jpg" for i in range(3)]
    train = [f"{1000 + i}_train.jpg" for i in range(6)]
    source = flickr8k(tmp_path / "src", held_out + train)
    original, _ = read_dataset(source, LayoutConfig(kind="flickr8k"))
    for seed in (0, 1, 2):
        dest = tmp_path / f"owner{seed}"
        captions = owner_end_to_end.owner_folder(source, dest, photos=4, seed=seed)
        rows, _ = read_dataset(dest, LayoutConfig(kind="generic"))
        assert set(rows["file"]) <= set(train) and rows["file"].nunique() == 4 and captions == len(rows) == 4 * 5
        kept = original[original["file"].isin(set(rows["file"]))]
        assert list(zip(rows["file"], rows["caption"])) == list(zip(kept["file"], kept["caption"]))  # commas too

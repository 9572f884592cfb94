"""What every job shares about its output folder: partial checkpoints of a killed save are
removed by the next start, and a lock file removed by its last holder is never shared."""
import os
import tempfile

import pytest

from dfdc_fast.errors import FolderBusy
from dfdc_fast.files import FolderLock
from dfdc_fast.models.checkpoint import remove_checkpoint_temporaries


def test_a_killed_checkpoint_saves_temporary_is_removed(tmp_path):
    fd, tmp = tempfile.mkstemp(prefix=".epoch_002.pth.", suffix=".tmp", dir=tmp_path)  # as save_checkpoint names it
    os.close(fd)
    (tmp_path / "epoch_001.pth").write_bytes(b"x")
    assert remove_checkpoint_temporaries(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == ["epoch_001.pth"]


def test_train_removes_temporaries_when_it_takes_its_folder():
    import inspect

    from dfdc_fast.train import loop

    body = inspect.getsource(loop._train)
    assert body.index('FolderLock(config.out, "train")') < body.index("remove_checkpoint_temporaries")


def test_the_lock_file_is_removed_by_its_last_holder_only(tmp_path):
    a = FolderLock(str(tmp_path), "extract", shard=0).acquire()
    b = FolderLock(str(tmp_path), "extract", shard=1).acquire()
    a.release()
    assert (tmp_path / ".lock").exists()  # shard 1 still holds it
    with pytest.raises(FolderBusy, match="in use by"):
        FolderLock(str(tmp_path), "extract").acquire()
    b.release()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".lock")]
    with FolderLock(str(tmp_path), "extract"):
        pass

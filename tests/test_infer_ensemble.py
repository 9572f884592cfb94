"""The ensemble's batched scoring equals scoring each face on its own the plain way."""
import numpy as np
import pytest
import torch

from dfdc_fast.crops import letterbox
from dfdc_fast.infer.ensemble import Ensemble, member_names
from dfdc_fast.models import create_model, normalize, save_checkpoint


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ck")
    paths = []
    for name, size, seed in (("mc3_18", 32, 0), ("efficientnet_b0", 48, 1)):
        torch.manual_seed(seed)
        p = str(folder / f"{name}.pth")
        save_checkpoint(p, create_model(name, num_classes=1), model_name=name, model_kwargs={"num_classes": 1},
                        config={"input_size": size})
        paths.append(p)
    return Ensemble(paths, torch.device("cpu"))


def test_crops_of_all_faces_in_one_call_equal_one_face_at_a_time(ensemble):
    member = ensemble.members[1]
    g = torch.Generator().manual_seed(0)
    faces = [[(int(h), int(w)) for h, w in torch.randint(20, 70, (n, 2), generator=g)] for n in (5, 1, 4)]
    crops = [[torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8) for h, w in f] for f in faces]
    H = max(h for f in faces for h, _ in f)
    W = max(w for f in faces for _, w in f)
    canvas = torch.zeros((sum(map(len, faces)), H, W, 3), dtype=torch.uint8)
    sizes, face, rank, i = [], [], [], 0
    for fi, f in enumerate(crops):
        for k, c in enumerate(f):
            canvas[i, :c.shape[0], :c.shape[1]] = c
            sizes.append(c.shape[:2]), face.append(fi), rank.append(k)
            i += 1
    ours = ensemble.score_crops(member, canvas, np.array(sizes), np.array(face), np.array(rank), len(faces) + 1)
    with torch.no_grad():
        for fi, f in enumerate(crops):
            imgs = [letterbox(c, member.input_size) for c in f]
            imgs = [im.flip(1) if k % 2 else im for k, im in enumerate(imgs)]
            x = normalize(torch.stack(imgs).permute(0, 3, 1, 2).float() / 255, member.spec)
            p = torch.sigmoid(member.model(x).reshape(-1))
            assert ours[fi].item() == pytest.approx(p.median().item(), abs=2e-3)  # letterbox rounding may differ by 1
    assert ours[-1].item() == 0.5  # a face without crops


@pytest.mark.parametrize("tta", [True, False])
def test_static_batches_give_the_same_scores(ensemble, tta):
    member = ensemble.members[0]
    g = torch.Generator().manual_seed(1)
    clips = [torch.randint(0, 256, (t, 48, 48, 3), generator=g, dtype=torch.uint8) for t in (8, 8, 12, 8, 5)]
    dynamic = ensemble.score_clips(member, clips, tta=tta)
    ensemble.static_batch, ensemble.max_batch = True, 4
    try:
        static = ensemble.score_clips(member, clips, tta=tta)
    finally:
        ensemble.static_batch, ensemble.max_batch = False, 16
    torch.testing.assert_close(static, dynamic, atol=1e-5, rtol=0)
    with torch.no_grad():  # and each equals the clip scored alone
        from dfdc_fast.augment import medics_clip_eval

        t = medics_clip_eval(member.input_size)
        for c, s in zip(clips, dynamic):
            x = t(c[None].permute(0, 4, 1, 2, 3).float() / 255)
            xs = torch.cat([x, x.flip(-1)]) if tta else x
            p = torch.sigmoid(member.model(normalize(xs, member.spec)).reshape(-1)).mean()
            assert s.item() == pytest.approx(p.item(), abs=1e-5)


def test_member_names_say_architecture_and_run():
    paths = ["runs/i3d_a/epoch_002.pth", "runs/i3d_b/epoch_002.pth", "x/mc3_18.pth", "y/mc3_18.pth"]
    assert member_names(paths, ["i3d", "i3d", "mc3_18", "mc3_18"]) == [
        "i3d_a/epoch_002", "i3d_b/epoch_002", "mc3_18", "mc3_18#2"]
    assert member_names(["runs/r1/last.pth"], ["r2plus1d_18"]) == ["r2plus1d_18:r1/last"]

"""Contact sheet of an extraction: one tile per face track, made of what was written.

A tile shows a few frames of the track's face clip side by side and one of its 2D crops,
under a label with the video's name, REAL/FAKE, the track and person ids, the chunk's
frames, the clip's status (``ok`` / ``too_short``) and its scores. Tiles are square face
images, so portrait and landscape videos take the same room. Videos without clips
(``no_face``, ``decode_error``, ``missing``, ``error``) are listed compactly, one line each,
in the space the last row of tiles leaves or in a band below.

Each recipe's sheet shows what that recipe wrote (``settings.json`` says which): the
Medics' face clips and a crop per track; Selim's PNG crops of a track with their five
landmarks, each fake's SSIM diff mask beside its crop; NTechLab's REAL/FAKE pair clips, the
REAL frame beside the FAKE one, at the start and the end of the pair.

Everything is read back from an extraction's output folder (``index.csv``, the per-video
JSON records, the clips and crops), so a resumed run draws a complete sheet too.

    layout = write_contact_sheet("extract_out", "extract_out/contact_sheet.png", videos=12)
    layout["tiles"][0]["text"]   # 'ccfoszqabv.mp4  REAL  ok | track 0  person 0  chunk 0  frames 0-150  det 0.999'
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)

#: Colours (RGB). BACKGROUND is what the sheet shows where nothing is drawn.
BACKGROUND = (22, 22, 26)
TILE = (44, 44, 50)
PANEL = (36, 36, 42)
TEXT = (235, 235, 235)
DIM = (160, 160, 170)
LABEL_COLOURS = {"REAL": (90, 200, 120), "FAKE": (235, 85, 85)}
STATUS_COLOURS = {"ok": (90, 200, 120), "too_short": (240, 180, 60)}
BAD = (235, 110, 90)
LANDMARK = (80, 220, 255)
#: what each recipe's tiles hold: (a video's outputs, the legend's line for the squares)
RECIPE_WORDS = {"medics": ("clips", "{frames} frames of the face clip (fN: frame of the video), then a 2D crop"),
                "selim": ("crops", "PNG crops of the track with their 5 landmarks (dots); a FAKE's SSIM diff mask "
                                   "beside each crop"),
                "ntech": ("pairs", "REAL frame beside the FAKE frame of a pair clip, at its first and last frame")}


@dataclass
class Tile:
    """One face track of one video, as the sheet draws it."""

    video: str
    label: str
    status: str
    track: int
    person: Optional[int]
    chunk: int
    start: int
    stop: int
    score: Optional[float]  # mean detector score of the track
    clip: Optional[str]  # path of the face clip
    crop: Optional[str] = None  # path of one 2D crop of the track
    crop_frame: Optional[int] = None
    fake_score: Optional[float] = None  # a model's P(FAKE) for the video, where known
    part: Optional[str] = None
    #: what the tile shows instead of clip frames and a crop (recipes selim and ntech)
    panels: Optional[list] = None  # Panel
    note: Optional[str] = None  # the second label line's middle, instead of the chunk

    def lines(self) -> tuple[str, str]:
        person = "?" if self.person is None else self.person
        what = self.note if self.note is not None else f"chunk {self.chunk}"
        second = f"track {self.track}  person {person}  {what}  frames {self.start}-{self.stop}"
        if self.score is not None:
            second += f"  det {self.score:.3f}"
        if self.fake_score is not None:
            second += f"  P(fake) {self.fake_score:.3f}"
        return f"{self.video}  {self.label}  {self.status}", second


@dataclass
class Panel:
    """One square of a tile: an image file, or one frame of a clip, with a caption."""

    path: str
    caption: str
    frame: Optional[int] = None  # a clip's frame (0-based within the clip); None: an image file
    landmarks: Optional[list] = None  # five points in the image's pixels (flat x, y, x, y, ... or pairs), as dots


@dataclass
class Missing:
    """A video without face clips: one line on the sheet."""

    video: str
    label: str
    status: str
    error: Optional[str] = None

    def line(self) -> str:
        why = f": {self.error}" if self.error else ""
        return f"{self.video}  {self.label}  {self.status}{why}"


@dataclass
class SheetInput:
    tiles: list = field(default_factory=list)  # Tile
    missing: list = field(default_factory=list)  # Missing
    counts: dict = field(default_factory=dict)  # status -> videos
    videos: int = 0
    people: int = 0
    more_videos: int = 0  # videos with clips beyond the ones shown
    no_clips: int = 0  # videos without clips (listed in ``missing`` up to a limit)
    recipe: str = "medics"  # whose outputs: what a tile shows and what the header calls them


# ---- reading an extraction's outputs ------------------------------------------------------


def _int(v) -> Optional[int]:
    return None if v in (None, "") else int(float(v))


def _float(v) -> Optional[float]:
    return None if v in (None, "") else float(v)


def _overlap(crop_box, clip_box) -> float:
    """Share of the crop's (face) box inside the clip's union box."""
    x0, y0 = max(crop_box[0], clip_box[0]), max(crop_box[1], clip_box[1])
    x1, y1 = min(crop_box[2], clip_box[2]), min(crop_box[3], clip_box[3])
    area = max(1e-6, (crop_box[2] - crop_box[0]) * (crop_box[3] - crop_box[1]))
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) / area


def pick_crop(crops: list[dict], start: int, stop: int, box) -> Optional[dict]:
    """The crop of a clip: inside its frames, its face mostly inside the clip's box (a fake's
    crops may come from its original's tracks, so track ids need not match), nearest the
    middle of the clip."""
    middle = (start + stop) / 2
    fits = [c for c in crops if start <= c["frame"] < stop and (box is None or _overlap(c["box"], box) >= 0.5)]
    return min(fits, key=lambda c: abs(c["frame"] - middle)) if fits else None


def read_sheet_input(out_dir: str, index: str = "index.csv", videos: int = 12,
                     fake_scores: Optional[dict] = None, max_missing: Optional[int] = None) -> SheetInput:
    """The tiles of the first ``videos`` videos with clips in ``index`` (order of the index),
    and every video without clips (up to ``max_missing``, default ``3 * videos``)."""
    index_path = index if os.path.isabs(index) else os.path.join(out_dir, index)
    with open(index_path, newline="") as f:
        rows = list(csv.DictReader(f))
    fake_scores = fake_scores or {}
    max_missing = 3 * videos if max_missing is None else max_missing
    by_video: dict = {}
    for r in rows:
        by_video.setdefault((r.get("part") or "", r["video"], r.get("json") or ""), []).append(r)
    recipe = _recipe(out_dir)
    if recipe != "medics":
        return _read_recipe(out_dir, recipe, by_video, videos, fake_scores, max_missing)
    out = SheetInput(videos=len(by_video))
    shown = 0
    for (part, video, rel), vrows in by_video.items():
        with_clips = [r for r in vrows if r.get("clip")]
        status = with_clips[0]["status"] if with_clips else vrows[0]["status"]
        status = "ok" if any(r["status"] == "ok" for r in with_clips) else status
        out.counts[status] = out.counts.get(status, 0) + 1
        persons = {r.get("person") if r.get("person") not in (None, "") else ("track", r["track"]) for r in with_clips}
        out.people += len(persons)
        label = vrows[0].get("label") or "?"
        if not with_clips:
            out.no_clips += 1
            if len(out.missing) < max_missing:
                out.missing.append(Missing(video, label, vrows[0]["status"] or "?", vrows[0].get("error") or None))
            continue
        if shown >= videos:
            out.more_videos += 1
            continue
        shown += 1
        crops = []
        if rel:
            try:
                with open(os.path.join(out_dir, rel)) as f:
                    crops = json.load(f).get("crops") or []
            except (OSError, ValueError) as exc:
                log.warning("contact sheet: cannot read %s (%s); no crops for it", rel, exc)
        for r in with_clips:
            start, stop = _int(r["start"]), _int(r["stop"])
            box = [_float(r[k]) for k in ("x0", "y0", "x1", "y1")] if r.get("x0") not in (None, "") else None
            crop = pick_crop(crops, start, stop, box)
            out.tiles.append(Tile(
                video=video, label=label, status=r["status"], track=_int(r["track"]), person=_int(r.get("person")),
                chunk=_int(r["chunk"]) or 0, start=start, stop=stop, score=_float(r.get("score")),
                clip=os.path.join(out_dir, r["clip"]), part=part or None,
                crop=os.path.join(out_dir, crop["path"]) if crop else None, crop_frame=crop["frame"] if crop else None,
                fake_score=fake_scores.get(video)))
    return out


def _recipe(out_dir: str) -> str:
    try:
        with open(os.path.join(out_dir, "settings.json")) as f:
            return json.load(f).get("recipe") or "medics"
    except (OSError, ValueError):
        return "medics"


def _evenly(items: list, k: int) -> list:
    """``k`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)] if k > 1 else [items[len(items) // 2]]


def selim_panels(out_dir: str, crops: list, squares: int) -> tuple[list, int]:
    """A track's squares for recipe selim: its crops with their landmarks, each crop that has
    an SSIM diff (a fake's) followed by the diff. Returns (panels, crops shown)."""
    crops = sorted(crops, key=lambda c: c["frame"])
    with_diff = any(c.get("diff") for c in crops)
    picked = _evenly(crops, squares // 2 if with_diff else squares)
    panels = []
    for c in picked:
        panels.append(Panel(os.path.join(out_dir, c["path"]), f"crop f{c['frame']}", landmarks=c.get("landmarks")))
        if with_diff:
            panels.append(Panel(os.path.join(out_dir, c["diff"]), f"diff f{c['frame']}") if c.get("diff") else
                          Panel("", f"no diff f{c['frame']}"))
    return panels, len(picked)


def ntech_panels(out_dir: str, pair: dict, label: str) -> list:
    """A pair's squares for recipe ntech: REAL beside FAKE at the pair's first and last frame
    (a REAL video's own window: its first and last frame)."""
    start, stop = pair["start"], pair["stop"]
    last = max(0, stop - start - 1)
    if pair.get("real_path"):
        real, fake = os.path.join(out_dir, pair["real_path"]), os.path.join(out_dir, pair["path"])
        return [Panel(real, f"REAL f{start}", frame=0), Panel(fake, f"FAKE f{start}", frame=0),
                Panel(real, f"REAL f{stop - 1}", frame=last), Panel(fake, f"FAKE f{stop - 1}", frame=last)]
    own = os.path.join(out_dir, pair["path"])
    return [Panel(own, f"{label} f{start}", frame=0), Panel(own, f"{label} f{stop - 1}", frame=last)]


def _read_recipe(out_dir: str, recipe: str, by_video: dict, videos: int, fake_scores: dict,
                 max_missing: int, squares: int = 4) -> SheetInput:
    """The tiles of recipes selim (one per track: its crops, landmarks and diffs) and ntech
    (one per REAL/FAKE pair; a REAL video none of whose windows is paired shows its own)."""
    out = SheetInput(videos=len(by_video), recipe=recipe)
    records = []
    for (part, video, rel), vrows in by_video.items():
        rec = None
        if rel:
            try:
                with open(os.path.join(out_dir, rel)) as f:
                    rec = json.load(f)
            except (OSError, ValueError) as exc:
                log.warning("contact sheet: cannot read %s (%s)", rel, exc)
        records.append((part, video, vrows[0], rec))
    paired = set()  # REAL windows shown beside a fake: (json path of the REAL's pairs, track, window)
    for _, _, _, rec in records:
        for p in (rec or {}).get("pairs") or []:
            if p.get("real_path"):
                paired.add(p["real_path"])
    shown = 0
    for part, video, row, rec in records:
        status = (rec or {}).get("status") or row.get("status") or "?"
        label = row.get("label") or "?"
        out.counts[status] = out.counts.get(status, 0) + 1
        tracks = (rec or {}).get("tracks") or []
        out.people += len({t.get("person") if t.get("person") is not None else ("track", t.get("track_id"))
                           for t in tracks})
        tiles = []
        by_track = {t.get("track_id"): t for t in tracks}
        if recipe == "selim":
            crops: dict = {}
            for c in (rec or {}).get("crops") or []:
                crops.setdefault(c["track"], []).append(c)
            for track, items in sorted(crops.items()):
                panels, n = selim_panels(out_dir, items, squares)
                t = by_track.get(track, {})
                diffs = sum(1 for c in items if c.get("diff"))
                note = f"{len(items)} crops" + (f", {diffs} diffs" if diffs else "") + f" (showing {n})"
                tiles.append(Tile(video=video, label=label, status=status, track=track, person=items[0].get("person"),
                                  chunk=0, start=t.get("start", min(c["frame"] for c in items)),
                                  stop=t.get("stop", max(c["frame"] for c in items) + 1),
                                  score=t.get("score"), clip=None, part=part or None, fake_score=fake_scores.get(video),
                                  panels=panels, note=note))
        else:
            for p in (rec or {}).get("pairs") or []:
                if not p.get("real_path") and p["path"] in paired:
                    continue  # shown beside its fake
                t = by_track.get(p["track"], {})
                note = f"pair window {p['window']}" + (f", fake track {p['fake_track']}" if p.get("real_path") else
                                                       ", not paired here")
                tiles.append(Tile(video=video, label=label, status=status, track=p["track"], person=t.get("person"),
                                  chunk=0, start=p["start"], stop=p["stop"], score=t.get("score"), clip=None,
                                  part=part or None, fake_score=fake_scores.get(video),
                                  panels=ntech_panels(out_dir, p, label), note=note))
        paired_only = recipe == "ntech" and not tiles and any(p["path"] in paired for p in (rec or {}).get("pairs") or [])
        if paired_only:
            continue  # a REAL whose every window is shown beside its fakes
        if not tiles:
            out.no_clips += 1
            if len(out.missing) < max_missing:
                why = (rec or {}).get("error") or row.get("error") or None
                if status == "ok" and not why:
                    why = "no crop" if recipe == "selim" else \
                        "no pair: no FAKE of it is in the dataset" if label == "REAL" else \
                        "no pair: its REAL original is not in the dataset, or no track of it lines up"
                out.missing.append(Missing(video, label, status, why))
            continue
        if shown >= videos:
            out.more_videos += 1
            continue
        shown += 1
        out.tiles += tiles
    return out


# ---- drawing ------------------------------------------------------------------------------


def _fonts(size: int):
    from PIL import ImageFont

    try:  # matplotlib ships DejaVu; every character used here is ASCII anyway
        from matplotlib import font_manager

        regular = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
        bold = ImageFont.truetype(font_manager.findfont("DejaVu Sans:bold"), size)
        small = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), max(8, size - 3))
        return regular, bold, small
    except Exception:  # noqa: BLE001 - no matplotlib: Pillow's own font
        return ImageFont.load_default(size), ImageFont.load_default(size), ImageFont.load_default(max(8, size - 3))


def _clip_frames(path: str, k: int, square: int) -> list:
    """``k`` evenly spaced frames of a clip as PIL images of ``square`` px, with their numbers."""
    from PIL import Image

    from dfdc_fast.io import Evenly, read_video

    video = read_video(path, Evenly(k), device="cpu", decoder="pyav")
    frames = video.frames.numpy()
    return [(Image.fromarray(np.ascontiguousarray(f)).resize((square, square), Image.Resampling.LANCZOS), int(i))
            for f, i in zip(frames, video.indices.tolist())]


def _letterbox(image, square: int, fill):
    from PIL import Image

    w, h = image.size
    scale = square / max(w, h)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (square, square), fill)
    canvas.paste(image, ((square - image.size[0]) // 2, (square - image.size[1]) // 2))
    return canvas


def _draw_panels(sheet, draw, tile, x0: int, top: int, squares: int, square: int, inner: int, font) -> None:
    """A recipe tile's squares: images (with their landmarks as dots) or frames of clips."""
    from PIL import Image

    from dfdc_fast.io import Indices, read_video

    frames: dict = {}
    for path in {p.path for p in tile.panels if p.frame is not None}:
        wanted = sorted({p.frame for p in tile.panels if p.path == path and p.frame is not None})
        try:
            video = read_video(path, Indices(wanted), device="cpu", decoder="pyav")
            frames[path] = {int(i): f for i, f in zip(video.indices.tolist(), video.frames.numpy())}
        except Exception as exc:  # noqa: BLE001 - an unreadable clip is shown as such
            log.warning("contact sheet: cannot read %s (%s)", path, exc)
            frames[path] = {}
    for j in range(squares):
        box = (x0 + j * (square + inner), top, x0 + j * (square + inner) + square - 1, top + square - 1)
        panel = tile.panels[j] if j < len(tile.panels) else None
        if panel is None:
            _placeholder(draw, box, "", font)
            continue
        try:
            if panel.frame is not None:
                image = Image.fromarray(np.ascontiguousarray(frames[panel.path][panel.frame]))
            else:
                with Image.open(panel.path) as im:
                    image = im.convert("RGB")
        except Exception:  # noqa: BLE001 - missing or unreadable: said so in the square
            _placeholder(draw, box, panel.caption if not panel.path else "unreadable", font)
            continue
        w, h = image.size
        sheet.paste(_letterbox(image, square, TILE), box[:2])
        if panel.landmarks:
            scale = square / max(w, h)
            ox, oy = box[0] + (square - round(w * scale)) // 2, box[1] + (square - round(h * scale)) // 2
            points = np.asarray(panel.landmarks, dtype=np.float64).reshape(-1, 2)  # flat x0, y0, x1, ... as written
            for x, y in points:
                cx, cy = ox + x * scale, oy + y * scale
                draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=LANDMARK, outline=(0, 0, 0))
        _caption(draw, box[:2], panel.caption, font)


def _caption(draw, xy, text, font):
    x, y = xy
    l, t, r, b = draw.textbbox((x + 3, y + 2), text, font=font)
    draw.rectangle([l - 3, t - 2, r + 3, b + 2], fill=(0, 0, 0))
    draw.text((x + 3, y + 2), text, fill=TEXT, font=font)


def _placeholder(draw, box, text, font):
    draw.rectangle(box, fill=PANEL)
    draw.text((box[0] + 6, (box[1] + box[3]) // 2 - 6), text, fill=DIM, font=font)


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def choose_columns(tiles: int, most: int) -> int:
    """Tiles per row: at most ``most``, at least half of it, leaving the fewest empty cells
    in the last row (ties: more columns)."""
    if tiles <= most:
        return max(1, tiles)
    options = range(max(1, -(-most // 2)), most + 1)
    return min(options, key=lambda c: (-tiles % c, -c))


def render_contact_sheet(data: SheetInput, *, title: str = "contact sheet", frames: int = 3, square: int = 128,
                         columns: int = 3, font_size: int = 13):
    """(PIL image, layout) of a sheet. ``layout`` has the sheet's ``size``, each tile's
    ``rect`` (x0, y0, x1, y1) and ``text``, and the ``panel`` rects holding the lines of the
    videos without clips and the totals."""
    from PIL import Image, ImageDraw

    regular, bold, small = _fonts(font_size)
    gap, inner, line = 6, 2, font_size + 6
    band = 2 * line + 4  # a tile's label
    tile_w = (frames + 1) * square + frames * inner
    tile_h = band + square
    n = len(data.tiles)
    cols = choose_columns(n, columns)
    rows = -(-n // cols) if n else 0
    width = gap + cols * (tile_w + gap)
    header_h = 2 * line + 8

    counts = "  ".join(f"{k} {v}" for k, v in sorted(data.counts.items(), key=lambda kv: (kv[0] != "ok", kv[0])))
    too_short = sum(t.status == "too_short" for t in data.tiles)
    shown_videos = len({(t.part, t.video) for t in data.tiles})
    outputs, squares_line = RECIPE_WORDS.get(data.recipe, RECIPE_WORDS["medics"])
    shows = {"medics": f"the {n} tracks", "selim": f"the crops of {n} tracks", "ntech": f"{n} pair" + "s" * (n != 1)}.get(data.recipe)
    header = [title, f"{data.videos} videos ({counts}), {data.people} people; showing {shows} of the first "
                     f"{shown_videos} videos with {outputs}" + (f", {too_short} too_short" if too_short else "")
              + (f"; {data.more_videos} more videos in the index" if data.more_videos else "")]
    missing = [m.line() for m in data.missing]
    missing_lines = {m.line() for m in data.missing if m.status != "ok"}  # failures in red; ok ones are dim
    if data.missing:
        listed = f"{len(data.missing)} listed" if len(data.missing) == data.no_clips else \
            f"the first {len(data.missing)} of {data.no_clips}"
        missing.insert(0, f"videos without {outputs} ({listed}):")
    else:
        missing.append(f"all {data.videos} videos have {outputs}" if data.recipe != "medics" else
                       f"all {data.videos} videos have face clips")
    legend = ["legend:", "label line: name  REAL/FAKE  clip status (ok / too_short)" if data.recipe == "medics" else
              "label line: name  REAL/FAKE  video status",
              "track: the clip's track; person: the same person across chunks" if data.recipe == "medics" else
              "track: the face track; person: its person",
              squares_line.format(frames=frames), "det: mean detector score of the track"]

    # Two blocks of text: the videos without clips and the legend. The empty cells of the
    # last row hold what fits there (the legend first); the rest goes in a band below, the
    # videos without clips in columns, the legend in the last one.
    empty = rows * cols - n
    in_cells = (square + band - 10) // line if empty else 0
    cell_blocks, below_blocks = [], []
    if in_cells >= len(missing) + 1 + len(legend):
        cell_blocks = [missing + [""] + legend]
    elif in_cells >= len(legend):
        cell_blocks, below_blocks = [legend], [missing]
    else:
        below_blocks = [missing, legend]
    text_cols = max(1, width // 520)
    columns_below: list = []
    if below_blocks:
        if len(below_blocks) == 2 and text_cols >= 2:  # missing in all columns but the last, legend in it
            per = max(len(legend), -(-len(missing) // (text_cols - 1)))
            columns_below = [missing[i:i + per] for i in range(0, len(missing), per)] + [legend]
        else:
            lines_below = [t for b in below_blocks for t in b + [""]][:-1]
            per = -(-len(lines_below) // text_cols) if len(lines_below) > 8 else len(lines_below)
            columns_below = [lines_below[i:i + per] for i in range(0, len(lines_below), per)]
    per_below = max((len(c) for c in columns_below), default=0)
    below_h = (gap + line * per_below + 10) if columns_below else 0
    height = header_h + gap + rows * (tile_h + gap) + below_h
    sheet = Image.new("RGB", (width, max(height, header_h + 2 * gap)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    # header
    draw.rectangle([0, 0, width - 1, header_h - 1], fill=PANEL)
    draw.text((gap + 2, 4), _fit(draw, header[0], bold, width - 2 * gap), fill=TEXT, font=bold)
    draw.text((gap + 2, 4 + line), _fit(draw, header[1], regular, width - 2 * gap), fill=DIM, font=regular)

    layout = {"size": sheet.size, "tiles": [], "panels": [], "header": (0, 0, width, header_h), "header_lines": header}
    for k, tile in enumerate(data.tiles):
        r, c = divmod(k, cols)
        x0 = gap + c * (tile_w + gap)
        y0 = header_h + gap + r * (tile_h + gap)
        rect = (x0, y0, x0 + tile_w, y0 + tile_h)
        draw.rectangle([rect[0], rect[1], rect[2] - 1, rect[3] - 1], fill=TILE)
        first, second = tile.lines()
        # first line: name, then REAL/FAKE and the status in their colours
        x = x0 + 6
        name = _fit(draw, tile.video, bold, tile_w - 200)
        draw.text((x, y0 + 3), name, fill=TEXT, font=bold)
        x += draw.textlength(name, font=bold) + 10
        draw.text((x, y0 + 3), tile.label, fill=LABEL_COLOURS.get(tile.label, DIM), font=bold)
        x += draw.textlength(tile.label, font=bold) + 10
        draw.text((x, y0 + 3), tile.status, fill=STATUS_COLOURS.get(tile.status, BAD), font=bold)
        draw.text((x0 + 6, y0 + 3 + line), _fit(draw, second, regular, tile_w - 12), fill=DIM, font=regular)
        top = y0 + band
        if tile.panels is not None:
            _draw_panels(sheet, draw, tile, x0, top, frames + 1, square, inner, small)
            layout["tiles"].append({"rect": rect, "text": f"{first} | {second}", "video": tile.video,
                                    "track": tile.track, "person": tile.person, "status": tile.status,
                                    "label": tile.label, "panels": [p.caption for p in tile.panels]})
            continue
        try:
            images = _clip_frames(tile.clip, frames, square)
        except Exception as exc:  # noqa: BLE001 - an unreadable clip is shown as such
            log.warning("contact sheet: cannot read %s (%s)", tile.clip, exc)
            images = []
        for j in range(frames):
            box = (x0 + j * (square + inner), top, x0 + j * (square + inner) + square - 1, top + square - 1)
            if j < len(images):
                sheet.paste(images[j][0], box[:2])
                _caption(draw, box[:2], f"f{tile.start + images[j][1]}", small)
            else:
                _placeholder(draw, box, "clip unreadable" if not images else "", small)
        box = (x0 + frames * (square + inner), top, x0 + tile_w - 1, top + square - 1)
        try:
            if tile.crop is None:
                raise FileNotFoundError("no crop")
            with Image.open(tile.crop) as im:
                sheet.paste(_letterbox(im.convert("RGB"), square, TILE), box[:2])
            _caption(draw, box[:2], f"crop f{tile.crop_frame}", small)
        except Exception:  # noqa: BLE001 - crops off, or unreadable
            _placeholder(draw, box, "no crop", small)
        layout["tiles"].append({"rect": rect, "text": f"{first} | {second}", "video": tile.video,
                                "track": tile.track, "person": tile.person, "status": tile.status,
                                "label": tile.label})

    def panel(rect, lines):
        draw.rectangle([rect[0], rect[1], rect[2] - 1, rect[3] - 1], fill=PANEL)
        for i, text in enumerate(lines):
            colour = BAD if text in missing_lines else DIM
            draw.text((rect[0] + 8, rect[1] + 5 + i * line), _fit(draw, text, regular, rect[2] - rect[0] - 16),
                      fill=colour, font=regular)
        layout["panels"].append({"rect": rect, "lines": list(lines)})

    if cell_blocks:
        y0 = header_h + gap + (rows - 1) * (tile_h + gap)
        x0 = gap + (cols - empty) * (tile_w + gap)
        panel((x0, y0, width - gap, y0 + tile_h), cell_blocks[0])
    if columns_below:
        y0 = header_h + gap + rows * (tile_h + gap)
        col_w = (width - gap) // len(columns_below)
        for c, lines in enumerate(columns_below):
            panel((gap + c * col_w, y0, (c + 1) * col_w, y0 + line * per_below + 10), lines)
    return sheet, layout


def write_contact_sheet(out_dir: str, path: str, *, index: str = "index.csv", videos: int = 12, frames: int = 3,
                        square: int = 128, columns: int = 3, fake_scores: Optional[dict] = None) -> Optional[dict]:
    """Draw the sheet of the extraction in ``out_dir`` to ``path`` (PNG, written atomically);
    returns its layout (see :func:`render_contact_sheet`), or None when the index lists no
    video at all."""
    from dfdc_fast.files import verify_image, write_bytes

    data = read_sheet_input(out_dir, index, videos, fake_scores)
    if not data.videos:
        return None
    title = f"dfdc_fast extraction: {os.path.abspath(out_dir)}"
    sheet, layout = render_contact_sheet(data, title=title, frames=frames, square=square, columns=columns)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    write_bytes(path, buf.getvalue(), verify_image)
    layout["path"] = path
    return layout

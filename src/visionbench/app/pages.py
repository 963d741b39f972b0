"""The app's two pages, drawn with Streamlit: *Predict* (drop images, read the model's
answer, see what it looked at) and *Leaderboard* (every model of the run, and the full
report). Every number comes from the same `Predictor` as `visionbench predict`.

Names that come from files or the run (upload names, classes, models) are shown as plain
text: they never reach Markdown unescaped.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from visionbench import display
from visionbench.app.launch import REPORT_URL, AppSettings
from visionbench.app.uploads import UploadLimits, screen_uploads
from visionbench.data.decode import as_shown
from visionbench.errors import UserError
from visionbench.evaluate.leaderboard import board_table, recommendation_sentence
from visionbench.predict import Explanation, Prediction, Predictor, load
from visionbench.predict.shift import FEWEST
from visionbench.predict.stream import RowWriter
from visionbench.readers import read_raster
from visionbench.rundir import Leaderboard, RunFolder, ShiftDocument, Status
from visionbench.schemas.data import PreprocessConfig

LIMITS = UploadLimits()
# The session-state key under which the predict page keeps the predictions it shows.
SHOWN = "predictions"


def plain(text: str) -> str:
    """`text` with Markdown's special characters escaped, so it shows as written.

    Example:
        >>> print(plain("[x](javascript:alert) *bold*"))
        \\[x\\]\\(javascript\\:alert\\) \\*bold\\*
    """
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~$:])", r"\\\1", text)


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _predictor(run_dir: str, model: str) -> Predictor:
    return load(run_dir, model)


@st.cache_data(show_spinner=False, max_entries=4)
def _predictions(run_dir: str, model: str, images: tuple[bytes, ...]) -> list[Prediction]:
    return _predictor(run_dir, model).predict([io.BytesIO(data) for data in images])


# The side of the picture shown beside each prediction: the upload itself (up to 20 MB)
# is never handed to Streamlit, which would keep it in memory and open it with Pillow's
# every plugin (Ghostscript included) to learn its format.
THUMBNAIL = 384


def thumbnail(image: bytes, settings: PreprocessConfig) -> np.ndarray | None:
    """The dropped image as visionbench's own readers decode it and the run sees it (a
    DICOM through its window, MONOCHROME1 inverted), at most THUMBNAIL pixels a side (uint8
    RGB), or None when it is not an image visionbench reads."""
    try:
        with read_raster(io.BytesIO(image), frame=settings.frame) as raster:
            picture = as_shown(raster, settings, "RGB")
    except (UserError, OSError, ValueError):
        return None
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    return np.asarray(picture)


@st.cache_data(show_spinner=False, max_entries=256)
def _explanation(run_dir: str, model: str, image: bytes) -> Explanation | str:
    try:
        return _predictor(run_dir, model).explain(io.BytesIO(image))
    except UserError as exc:
        return str(exc)


@st.cache_data(show_spinner=False, max_entries=4)
def _batch_shift(run_dir: str, model: str, images: tuple[bytes, ...]
                 ) -> tuple[bool, str] | None:
    """Whether the dropped batch has shifted from the training images, and the sentence
    (None: the run holds no training sample to compare with)."""
    predictor = _predictor(run_dir, model)
    if predictor.run is None or not predictor.run.has(ShiftDocument):
        return None
    try:
        found, sentence = predictor.check_shift([io.BytesIO(data) for data in images])
    except UserError as exc:
        return False, str(exc)
    return found.shifted, sentence


def _board(run_dir: Path) -> Leaderboard | None:
    return RunFolder(run_dir).read(Leaderboard)


def predict_page(settings: AppSettings) -> None:
    """Drop images; for each one the class, its probabilities as bars, the positive reading
    at the validation threshold, the uncertainty flag, whether it copies a training image,
    and an explanation overlay by the run's most faithful method."""
    run_dir = str(settings.run_dir)
    board = _board(settings.run_dir)
    recommended = board.recommended if board else None
    models = [row.model for row in board.rows if row.status == Status.OK] if board else []
    default = settings.model or recommended or (models[0] if models else None)
    if default is None:
        st.error("This run has no trained model to predict with.")
        return
    models = models if default in models else [default, *models]
    with st.sidebar:
        model = st.selectbox("Model", models, index=models.index(default),
                             format_func=lambda m: f"{m} (recommended)" if m == recommended
                             else m)
        explain = st.toggle("Explain each prediction", value=True,
                            help="A heat map of what the model used, by the method that "
                            "was most faithful on the run's test images.")
    try:
        predictor = _predictor(run_dir, model)
    except UserError as exc:
        st.error(plain(str(exc)))
        return
    st.title("Predict")
    st.caption("  \n".join(plain(line) for line in _about(predictor)))
    uploads = st.file_uploader(
        "Images", accept_multiple_files=True, key="images",
        type=LIMITS.formats,
        max_upload_size=LIMITS.megabytes,
        help=f"Up to {LIMITS.files} images at a time, {LIMITS.megabytes} MB each, in "
        f"{', '.join(LIMITS.formats)}.")
    if not uploads:
        st.info("Drop one or more images above: each gets the model's class, its "
                "probabilities and what the model looked at.")
        st.session_state[SHOWN] = []
        return
    accepted, refused = screen_uploads([(u.name, u.size) for u in uploads], LIMITS)
    for message in refused:
        st.error(plain(message))
    chosen = [uploads[i] for i in accepted]
    images = tuple(upload.getvalue() for upload in chosen)
    with st.spinner("Predicting…"):
        predictions = _predictions(run_dir, model, images)
    for upload, prediction in zip(chosen, predictions, strict=True):
        prediction.source = upload.name
    st.session_state[SHOWN] = predictions
    if predictions:
        st.download_button("Download these predictions (CSV)", _csv(predictor, predictions),
                           file_name="visionbench-predictions.csv", mime="text/csv")
    if sum(p.error is None for p in predictions) >= FEWEST:
        with st.spinner("Comparing these images with the training images…"):
            shift = _batch_shift(run_dir, model, images)
        if shift is not None:
            (st.warning if shift[0] else st.caption)(plain(f"Shift: {shift[1]}."))
    for position, (image, prediction) in enumerate(zip(images, predictions, strict=True)):
        with st.container(border=True):
            _show(predictor, prediction, image, position,
                  _explanation(run_dir, model, image) if explain else None)


def _about(predictor: Predictor) -> list[str]:
    size = predictor.decode_settings.size
    shape = f"{size[1]}×{size[0]}" if size else "their own size"
    lines = [f"Model {predictor.name}: classes {display.names(predictor.classes)}; images "
             f"are read at {shape}, as in training."]
    if predictor.positive:
        lines.append(f"Positive reading: {display.names(predictor.positive)}, at the "
                     f"threshold {predictor.threshold:.3f} chosen on validation.")
    lines.append(predictor.margin_note[:1].upper() + predictor.margin_note[1:] + ".")
    if predictor.temperature is not None:
        lines.append(f"Probabilities are calibrated on validation (temperature "
                     f"{predictor.temperature:.2f}).")
    if predictor.conformal is not None:
        lines.append(f"Each image gets the set of classes that holds the true one "
                     f"{predictor.conformal.coverage:.0%} of the time (on average over "
                     "images; calibrated on validation).")
    lines += [note[:1].upper() + note[1:] + "." for note in predictor.notes]
    return lines


def _csv(predictor: Predictor, predictions: list[Prediction]) -> str:
    """The rows `visionbench predict` writes, for these images."""
    buffer = io.StringIO()
    writer = RowWriter(buffer, predictor, as_json=False)
    for prediction in predictions:
        writer.write(prediction)
    writer.close()
    return buffer.getvalue()


def _show(predictor: Predictor, prediction: Prediction, image: bytes, position: int,
          explanation: Explanation | str | None) -> None:
    if prediction.error is not None:
        st.error(plain(f"{prediction.source}: not read: {prediction.error}"))
        return
    probabilities = prediction.probabilities or {}
    top = probabilities[prediction.predicted or ""]
    if prediction.unfamiliar and predictor.unfamiliar is not None:
        # Above the answer: whatever class it names, the model never learnt images like it.
        st.error(plain(f"{prediction.source}: this image does not look like the images this "
                       f"model was trained on (unfamiliarity {prediction.unfamiliar_score:.3g}"
                       f", above {predictor.unfamiliar.threshold:.3g}, which "
                       f"{predictor.unfamiliar.keep:.0%} of validation images stay under): "
                       "do not rely on the answer below."))
    st.subheader(plain(f"{prediction.source}: {prediction.predicted} ({top:.1%})"))
    left, middle, right = st.columns([1, 2, 1])
    shown = thumbnail(image, predictor.decode_settings)
    if shown is not None:
        left.image(shown, caption="as dropped", width="stretch")
    middle.plotly_chart(_bars(predictor, probabilities), key=f"probabilities-{position}",
                        config={"displayModeBar": False})
    if isinstance(explanation, Explanation):
        caution = (" It did no better than a random map on the run's test images: read it "
                   "with care." if explanation.faithful is False else "")
        right.image(explanation.overlay(), width="stretch",
                    caption=plain(f"{explanation.method}: where the model looked to say "
                                  f"{explanation.target} (red: most).{caution}"))
    elif isinstance(explanation, str):
        right.caption(plain(explanation))
    if prediction.positive is not None:
        verdict = "POSITIVE" if prediction.positive else "negative"
        comparison = "≥" if prediction.positive else "<"
        positive = predictor.positive or []
        either = " or ".join([", ".join(positive[:-1]), positive[-1]] if len(positive) > 1
                             else positive)
        middle.markdown(plain(
            f"Reading: {verdict} — probability of {either} {prediction.positive_probability:.3f}"
            f" {comparison} {predictor.threshold:.3f}, the threshold chosen on validation."))
    if prediction.prediction_set is not None and predictor.conformal is not None:
        middle.markdown(plain(
            f"{predictor.conformal.coverage:.0%} prediction set: "
            f"{', '.join(prediction.prediction_set)}"))
    if prediction.uncertain:
        st.warning(plain(f"{prediction.source} is uncertain: its top probability {top:.3f} "
                         f"is below the margin "
                         f"{predictor.margin:.3f} ({predictor.margin_note}). Have it "
                         "checked by a person."))
    if prediction.duplicate:
        st.warning(plain(f"{prediction.source} copies a training image "
                         f"({prediction.duplicate}): "
                         "the model learnt from it, so its answer here says nothing about "
                         "new images."))


def _bars(predictor: Predictor, probabilities: dict[str, float]) -> go.Figure:
    """Horizontal bars, one per class; positive classes in red when the run reads them."""
    classes = list(probabilities)
    positive = set(predictor.positive or [])
    figure = go.Figure(go.Bar(
        x=[probabilities[c] for c in classes], y=[display.plotly_text(c) for c in classes],
        orientation="h",
        text=[f"{probabilities[c]:.3f}" for c in classes], textposition="auto",
        marker_color=["#c0392b" if c in positive else "#2e6f9e" for c in classes]))
    figure.update_layout(xaxis={"range": [0, 1], "title": "probability"},
                         yaxis={"autorange": "reversed"}, height=60 + 32 * len(classes),
                         margin={"l": 10, "r": 10, "t": 10, "b": 40})
    return figure


def _static_table(header: list[str], rows: list[list[str]]) -> None:
    """`rows` under `header` as a static table, not st.dataframe: that grid keeps each
    column one line wide and cuts what does not fit (the "vs recommended" column was hidden
    past the right edge). Here cells wrap, and names may break after `_` (a zero-width
    space). Every cell is Markdown in st.table, hence `plain`."""
    def wrappable(text: str) -> str:
        return plain(text).replace("\\_", "\\_\u200b")

    st.table([dict(zip(map(wrappable, header), map(wrappable, cells), strict=True))
              for cells in rows], hide_index=True)


def leaderboard_page(settings: AppSettings) -> None:
    """Every model of the run with its test metrics and intervals, how the recommended one
    was chosen, and a link that opens the full report."""
    st.title("Leaderboard")
    board = _board(settings.run_dir)
    if board is None:
        st.error(plain(f"{settings.run_dir} has no leaderboard: run `visionbench evaluate "
                       f"{settings.run_dir}` first."))
        return
    st.caption(plain(recommendation_sentence(board)))
    header, rows = board_table(board)
    # Two tables, so that every column fits beside the sidebar at 1400 px: the scores, then
    # the comparison with the recommended model and the cost (references have neither).
    scores = header.index(f"validation {board.primary_metric}") + 1
    _static_table(header[:scores], [cells[:scores] for cells in rows])
    st.caption("Against the recommended model, and what each model costs")
    _static_table(header[:1] + header[scores:], [cells[:1] + cells[scores:] for cells in rows
                                                if cells[1] != "reference"])
    if settings.report:
        st.link_button("Open the full report", REPORT_URL)
    else:
        st.info(plain(f"{settings.run_dir} has no report.html: `visionbench report "
                      f"{settings.run_dir}` writes it."))


def main(settings_file: Path) -> None:
    """The app: its settings from `settings_file` (written by `launch`), two pages."""
    settings = AppSettings.model_validate_json(settings_file.read_text(encoding="utf-8"))
    st.set_page_config(page_title=f"visionbench · {settings.run_dir.name}", layout="wide")

    def predict() -> None:
        predict_page(settings)

    def leaderboard() -> None:
        leaderboard_page(settings)

    st.navigation([st.Page(predict, title="Predict", default=True),
                   st.Page(leaderboard, title="Leaderboard")]).run()

"""The web app of a run (`visionbench app RUN_DIR`): drop images, read the model's answer.

`uploads` screens what was dropped (count, size, format), `pages` draws the two pages with
Streamlit (predict, leaderboard) through the same `Predictor` as `visionbench predict`, and
`launch` starts Streamlit offline on 127.0.0.1. Streamlit is an optional extra: only
`pages` imports it, and only the server runs `pages`.
"""

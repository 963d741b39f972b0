"""The self-contained HTML report of a run: charts, tables, pictures, explanations.

`build` draws the page from a run folder; `page` is the framework (the page, its assets);
`markup` the one escaping layer; `run` the documents read and the registry of sections;
`sections` one module per section; `charts` the plotly figures; `pictures` inlined images.
"""

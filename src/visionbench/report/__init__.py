"""The self-contained HTML report of a run: charts, tables, pictures, explanations."""

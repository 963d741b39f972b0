"""Typed config sections: the bottom layer, imported by every other one and importing none.

Names that select a registry entry (a metric, an optimizer, a corruption...) are checked
against the registry itself when a config is validated (`base.Registered`), so the valid
set is never written twice.
"""

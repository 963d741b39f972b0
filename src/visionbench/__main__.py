"""`python -m visionbench ...`: the same commands as the `visionbench` script.

For machines where the package sits on PYTHONPATH without being installed, so no script
was made (a GPU box reached over a copied source tree, a read-only environment).
"""

from visionbench.cli import run

run()

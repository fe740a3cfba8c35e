"""The values of a ``--color`` option: ``never``, ``always``, ``auto``.

Apart from ``terminal.py`` (which checks them and draws the colours) so that a command's
parser can offer them without importing the terminal code and ``typing``: ``--help``
builds the parser alone.
"""

COLOR_CHOICES = ("never", "always", "auto")

"""Order of the examples in the gallery: the quickstart first, then by file name."""


class QuickstartFirst:
    """Sort key for sphinx-gallery's ``within_subsection_order``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        return (filename != "quickstart.py", filename)

"""py_trees behaviours and trees (installed as ``aseptic_cell.behaviors``)."""
